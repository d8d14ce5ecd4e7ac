"""Where the training step's time goes: forward+backward of each block, timed alone.

Each block of the architecture (docs/paper.md eqs 1-16 at the paper's shapes) is built as a
sub-model and its forward + backward pass (gradients for inputs and weights) is timed,
round-robin across blocks so the shared machine's load hits all of them alike. Alternative
implementations are timed side by side: cimha_tf.model's BiLSTM with its "keras" and
"unrolled" LSTMs and with the fused BlockLSTM prototype (bench/fused_lstm.py), with and
without XLA; Keras MultiHeadAttention vs a plain 4-Dense + 2-matmul attention. Gradients
are taken for every float input too (a block inside the model needs them; the first
projection does not, so its cost here is ~1.5x its cost in the model).

  python -m bench.profile_layers [--quick] [--output=bench/results/profile_layers.json]
"""

import sys
import time

from absl import app
import numpy as np

from absl import flags

from bench import common

BLOCKS = flags.DEFINE_list("blocks", None, "only blocks whose name starts with one of these")


def _attention_plain(heads, key_dim):
  """Multi-head attention as 4 Dense + 2 batched matmuls (the alternative measured)."""
  import keras
  import tensorflow as tf

  class PlainMHA(keras.layers.Layer):

    def build(self, query_shape, value_shape=None):
      d = query_shape[-1]
      self.q = keras.layers.Dense(heads * key_dim)
      self.k = keras.layers.Dense(heads * key_dim)
      self.v = keras.layers.Dense(heads * key_dim)
      self.o = keras.layers.Dense(d)

    def call(self, query, value, attention_mask=None):
      b = tf.shape(query)[0]

      def split(x):
        return tf.transpose(tf.reshape(x, [b, -1, heads, key_dim]), [0, 2, 1, 3])

      q, k, v = split(self.q(query)), split(self.k(value)), split(self.v(value))
      logits = tf.matmul(q, k, transpose_b=True) / float(np.sqrt(key_dim))
      if attention_mask is not None:
        logits += (1.0 - tf.cast(attention_mask[:, None], logits.dtype)) * -1e9
      ctx = tf.matmul(tf.nn.softmax(logits, -1), v)
      ctx = tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [b, -1, heads * key_dim])
      return self.o(ctx)

  return PlainMHA()


def blocks(s):
  """name -> (build() -> callable(*inputs), [input arrays], jit)."""
  import keras

  b, n, l, dv, d = s["batch_size"], s["max_video_len"], s["max_query_len"], s["feature_dim"], s["width"]
  heads = 4 if d % 4 == 0 else 1
  rng = np.random.default_rng(0)
  nv = rng.integers(n // 4, n + 1, b)
  nq = rng.integers(max(1, l // 3), l + 1, b)
  vmask = np.arange(n)[None] < nv[:, None]
  qmask = np.arange(l)[None] < nq[:, None]
  x = lambda *shape: rng.standard_normal(shape).astype(np.float32)
  out = {}

  def bilstm(units, impl, jit=False):
    from bench.fused_lstm import model_uses_fused_lstm
    from cimha_tf.model.bilstm import BiLSTM

    def build():
      if impl == "fused":
        with model_uses_fused_lstm():
          layer = BiLSTM(units, "keras")
      else:
        layer = BiLSTM(units, impl)
      return lambda a, valid: layer(a, valid)
    return build

  out["video_proj Dense(Dv->D)"] = (lambda: keras.layers.Dense(d), [x(b, n, dv)], False)
  forms = [("keras", False), ("unrolled", False), ("fused", False), ("keras", True),
           ("unrolled", True)]
  for impl, jit in (forms[::2][:2] if common.QUICK.value else forms):  # quick: keras, fused
    for name, t, din, m in (("query", l, 300, qmask), ("start", n, 2 * d, vmask),
                            ("end", n, d, vmask)):
      if jit and name != "start":
        continue
      label = impl + (", jit_compile" if jit else "")
      out[f"{name} BiLSTM [{label}]"] = (bilstm(d // 2, impl, jit),
                                         [x(b, t, din), m.astype(np.float32)], jit)
  for impl in ("keras", "plain"):
    for name, tq, tk, mq, mk_ in (("video self-MHA", n, n, vmask, vmask),
                                  ("query self-MHA", l, l, qmask, qmask),
                                  ("cross MHA v->q", l, n, qmask, vmask),
                                  ("cross MHA q->v", n, l, vmask, qmask)):
      am = (mq[:, :, None] & mk_[:, None, :])

      def build(impl=impl):
        layer = (keras.layers.MultiHeadAttention(heads, d // heads) if impl == "keras"
                 else _attention_plain(heads, d // heads))
        return lambda q, v, a: layer(q, v, attention_mask=a)

      out[f"{name} [{impl}]"] = (build, [x(b, tq, d), x(b, tk, d), am], False)
  for name, t in (("video FFN", n), ("query FFN", l)):
    out[name] = ((lambda: (lambda f1, f2: lambda a: f2(f1(a)))(
        keras.layers.Dense(2 * d, activation="relu"), keras.layers.Dense(d))),
        [x(b, t, d)], False)
  out["3 MLP heads"] = ((lambda: (lambda hs: lambda a, c, e: sum(
      h2(h1(i)) for (h1, h2), i in zip(hs, (a, c, e))))(
          [(keras.layers.Dense(d, activation="relu"), keras.layers.Dense(1)) for _ in range(3)])),
      [x(b, n, 3 * d), x(b, n, 3 * d), x(b, n, 2 * d)], False)
  if BLOCKS.value:
    out = {k: v for k, v in out.items() if k.startswith(tuple(BLOCKS.value))}
  if common.QUICK.value:  # CI checks the script: one block of each kind
    keep = ("video_proj", "start BiLSTM", "video self-MHA [keras]", "video FFN")
    out = {k: v for k, v in out.items() if k.startswith(keep)}
  return out


def main(argv):
  del argv
  import tensorflow as tf

  s = common.shapes()
  steps = {}
  notes = ["forward+backward of each block alone, batch %d; round-robin medians" % s["batch_size"]]
  for name, (build, arrays, jit) in blocks(s).items():
    fn = build()
    ins = [tf.constant(a) for a in arrays]
    float_ins = [i for i in ins if i.dtype == tf.float32]
    fn(*ins)  # builds weights

    @tf.function(jit_compile=jit)
    def step(*a, fn=fn):
      with tf.GradientTape() as tape:
        tape.watch([t for t in a if t.dtype == tf.float32])
        y = fn(*a)
        loss = tf.reduce_sum(tf.square(y))
      watched = tape.watched_variables()
      return tape.gradient(loss, list(watched))

    try:
      t0 = time.perf_counter()
      step(*ins)
      steps[name] = (step, ins, time.perf_counter() - t0)
    except Exception as e:  # an implementation that cannot run here is a finding too
      notes.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
  times = common.round_robin(
      {k: lambda step=step, ins=ins: [g.numpy() for g in step(*ins) if g is not None]
       for k, (step, ins, _) in steps.items()})
  results = {}
  for k, t in times.items():
    st = common.stats(t)
    results[k] = {"fwd_bwd_ms": 1e3 * st["median_s"], "spread_ms": [1e3 * st["min_s"], 1e3 * st["max_s"]],
                  "trace_s": steps[k][2]}
  common.report("profile_layers", results, notes, extra={"shapes": s})


if __name__ == "__main__":
  app.run(main)

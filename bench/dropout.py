"""The dropout mask, Keras's against cimha_tf.model.dropout's: alone, and in the training step.

Keras's mask is one float32 uniform per element (32 random bits) applied by a select;
ours is 16 random bits per element against an integer threshold, applied by a multiply.
- alone: forward+backward of one dropout (rate 0.1) at each dropout shape of the model
  at batch B: the video self-attention's probabilities (B, heads, N, N), a cross
  attention's (B, heads, N, L), the activations (B, N, D) and the FFN's hidden (B, N, 2D);
  round-robin.
- whole step: the model with model.private_fast_path twice, the same weights, one with
  every dropout Keras's (bench.models.build(dropout="keras")), trained in turn (time_steps), who goes first
  alternating by round; per-round paired ratios as in bench/peers.py.

  python -m bench.dropout [--quick] [--output=bench/results/dropout.json]
"""

from absl import app
import numpy as np

from bench import common
from bench import models
from bench import train_throughput

_RATE = 0.1
SYSTEMS = ("ours", "keras")


def shapes(s):
  b, n, l, d = s["batch_size"], s["max_video_len"], s["max_query_len"], s["width"]
  heads = 4 if d % 4 == 0 else 1
  return {"video self-attention probs": (b, heads, n, n), "cross attention probs": (b, heads, n, l),
          "activations (B, N, D)": (b, n, d), "FFN hidden (B, N, 2D)": (b, n, 2 * d)}


def alone(s):
  import keras
  import tensorflow as tf
  from cimha_tf.model.dropout import Dropout
  steps = {}
  for name, shape in shapes(s).items():
    x = tf.constant(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    for system, cls in zip(SYSTEMS, (Dropout, keras.layers.Dropout)):
      layer = cls(_RATE, seed=1)

      @tf.function
      def step(x, layer=layer):
        with tf.GradientTape() as tape:
          tape.watch(x)
          loss = tf.reduce_sum(tf.square(layer(x, training=True)))
        return tape.gradient(loss, x)

      steps[(name, system)] = lambda step=step, x=x: step(x).numpy()
  times = common.round_robin(steps, n_warmup=common.warmup() + 1)  # + the trace
  out = {}
  for name in shapes(s):
    ms = {system: 1e3 * common.stats(times[(name, system)])["median_s"] for system in SYSTEMS}
    out[name] = {"shape": list(shapes(s)[name]), "ours_ms": ms["ours"], "keras_ms": ms["keras"],
                 "keras_over_ours": ms["keras"] / ms["ours"]}
  return out


def whole_step(s):
  import tensorflow as tf
  from cimha_tf.model import compile_model
  b = s["batch_size"]
  x, y = common.synthetic_batch(b, s["max_video_len"], s["max_query_len"], s["feature_dim"],
                                s["vocab_size"])
  ds = tf.data.Dataset.from_tensors((x, y)).repeat()
  runs = {}
  for system in SYSTEMS:
    model, cfg = models.build(s, dropout=system, private_fast_path=True)
    compile_model(model, cfg, 1e-4)
    model.fit(ds, steps_per_epoch=common.train_warmup(), epochs=1, verbose=0, shuffle=False)
    runs[system] = model
  times = {system: {"train": []} for system in SYSTEMS}
  for r in range(common.reps()):
    for system in SYSTEMS[::1 if r % 2 == 0 else -1]:
      times[system]["train"].append(train_throughput.time_steps(runs[system], ds))
  out = {system: common.rate(common.stats(sum(times[system]["train"], [])), b)
         for system in SYSTEMS}
  out["ours_over_keras_by_round"] = common.paired_ratios(times, "ours", "keras")["train"]
  return out


def main(argv):
  del argv
  s = common.shapes()
  results = {"alone_fwd_bwd": alone(s), "training_samples_per_s": whole_step(s)}
  for name, r in results["alone_fwd_bwd"].items():
    print(f"{name}: ours {r['ours_ms']:.1f} ms, Keras {r['keras_ms']:.1f} ms "
          f"({r['keras_over_ours']:.2f}x)")
  t = results["training_samples_per_s"]
  print(f"training: ours {t['ours']['median']:.1f}, Keras {t['keras']['median']:.1f} "
        f"samples/s; per round {t['ours_over_keras_by_round']}")
  common.report("dropout", results,
                [f"rate {_RATE}; batch {s['batch_size']}; alone: forward+backward medians, "
                 "round-robin; training: time_steps in turn, order alternating by round"],
                extra={"shapes": s})


if __name__ == "__main__":
  app.run(main)

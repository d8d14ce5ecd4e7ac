"""The model under KERAS_BACKEND=jax (jit): training and batch-100 inference samples/s.

For a GPU machine with JAX and without TensorFlow: this script never imports TensorFlow
(tests/test_backend_jax.py runs it with TensorFlow made unimportable); bench.common.report
names the framework under Keras, and this script adds JAX's devices. The model is
bench.models' at the paper's shapes (common.PAPER_SHAPES), the same weights in each LSTM
form (--lstms): "keras" (Keras's LSTM, a lax.scan on JAX), "scan" (the model's own
cell in ops.scan), "unrolled" (plain ops over the 128 steps; long to compile, so not by
default). Its outputs equal TensorFlow's (tests/test_backend_jax.py).

Training: one full step (forward with dropout, losses.py's loss as compile_model weighs
it, backward, Adam) as a jax.jit of model.stateless_call + jax.value_and_grad +
optimizer.stateless_apply (Keras 3's JAX training loop) with the state donated and the
batch on the device, so only the step is timed (fit would add a host-to-device copy of
each batch). Inference: a jax.jit of stateless_call(training=False). A timed call is
--steps_per_call steps then one block_until_ready, so dispatch overlaps as in a loop.
Forms are timed round-robin (common.round_robin) after the first call (compilation).

  python -m bench.jax_speed [--quick] [--lstms=keras,scan] [--output=bench/results/jax_speed.json]
"""

import os
import time

from absl import app
from absl import flags
import numpy as np

from bench import common
from bench import models

LSTMS = flags.DEFINE_list("lstms", None, "LSTM forms: keras, scan, unrolled "
                          "(default keras,scan; scan with --quick)")
STEPS_PER_CALL = flags.DEFINE_integer(
    "steps_per_call", None, "steps per timed call, one sync at its end (default 10, 1 with --quick)")


def _steps_per_call():
  return STEPS_PER_CALL.value or (1 if common.QUICK.value else 10)


def build(s, lstms):
  """{form: (model, config)}: bench.models' model in each LSTM form, the same weights (the
  config is only read for the losses, which do not depend on the form)."""
  from cimha_tf.model import with_lstm_implementation
  model, cfg = models.build(s, "keras")
  return {lstm: (model if lstm == "keras" else with_lstm_implementation(model, lstm), cfg)
          for lstm in lstms}


def train_step(model, cfg, learning_rate=1e-4):
  """-> (step(state, x, y) -> (loss, state), initial state): jitted, state donated."""
  import jax
  import keras
  from keras import ops
  from cimha_tf.model import losses
  fns, weights = losses.losses_and_weights(cfg)
  optimizer = keras.optimizers.Adam(learning_rate)
  optimizer.build(model.trainable_variables)

  def loss_fn(trainable, non_trainable, x, y):
    out, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
    # As compile_model: each output's per-sample loss averaged, weighted, summed.
    loss = sum(weights[k] * ops.mean(fn(y[k], out[k])) for k, fn in fns.items())
    return loss, non_trainable

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(state, x, y):
    trainable, non_trainable, opt_vars = state
    (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
    trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
    return loss, (trainable, non_trainable, opt_vars)

  # Copies: the step donates (frees) its state, and the model's own arrays stay usable.
  state = tuple([jax.numpy.array(v.value) for v in vs] for vs in (
      model.trainable_variables, model.non_trainable_variables, optimizer.variables))
  return jax.jit(step, donate_argnums=0), state


def _device_batch(s, batch_size, seed=0):
  import jax
  x, y = common.synthetic_batch(batch_size, s["max_video_len"], s["max_query_len"],
                                s["feature_dim"], s["vocab_size"], seed=seed)
  return jax.device_put(x), jax.device_put(y)


def training_calls(s, batch_size, forms):
  """{form: timed call} of training steps, compiled and run once; and their records."""
  import jax
  x, y = _device_batch(s, batch_size)
  calls, records = {}, {}
  for lstm, (model, cfg) in forms.items():
    step, state = train_step(model, cfg)
    holder = {"state": state, "loss": None}

    def call(step=step, holder=holder):
      for _ in range(_steps_per_call()):
        holder["loss"], holder["state"] = step(holder["state"], x, y)
      jax.block_until_ready(holder["loss"])
    t0 = time.perf_counter()
    loss, holder["state"] = step(holder["state"], x, y)
    first = float(loss)  # blocks: compilation and the first step
    records[lstm] = {"first_call_s": time.perf_counter() - t0, "first_loss": first,
                     "holder": holder}
    calls[lstm] = call
  return calls, records


def inference_calls(s, batch_size, forms):
  """{form: timed call} of jitted inference, compiled and run once; and their records."""
  import jax
  x, _ = _device_batch(s, batch_size, seed=1)
  calls, records = {}, {}
  for lstm, (model, _) in forms.items():
    state = ([v.value for v in model.trainable_variables],
             [v.value for v in model.non_trainable_variables])
    fn = jax.jit(lambda t, n, x, model=model: model.stateless_call(t, n, x, training=False)[0])

    def call(fn=fn, state=state):
      for _ in range(_steps_per_call()):
        out = fn(*state, x)
      jax.block_until_ready(out)
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*state, x))
    records[lstm] = {"first_call_s": time.perf_counter() - t0}
    calls[lstm] = call
  return calls, records


def timed(calls, records, batch_size, n_warmup):
  times = common.round_robin(calls, n_warmup)
  out = {}
  for lstm, seconds in times.items():
    t = common.stats([sec / _steps_per_call() for sec in seconds])
    r = {k: v for k, v in records[lstm].items() if k != "holder"}
    out[lstm] = {"batch_size": batch_size, "samples_per_s": common.rate(t, batch_size),
                 "step_ms": 1e3 * t["median_s"], "timing": t, **r}
  return out


def device_info():
  """JAX's devices, for the machine block beside bench.common.machine_info's."""
  import jax
  dev = jax.devices()[0]
  mem = dev.memory_stats() if hasattr(dev, "memory_stats") else None
  return {"jax_backend": jax.default_backend(), "device_kind": dev.device_kind,
          "devices": len(jax.devices()),
          "device_memory_gib": (mem or {}).get("bytes_limit", 0) / 2**30 or None}


def peak_device_mb():
  import jax
  stats = jax.devices()[0].memory_stats() if hasattr(jax.devices()[0], "memory_stats") else None
  return stats["peak_bytes_in_use"] / 2**20 if stats and "peak_bytes_in_use" in stats else None


def main(argv):
  del argv
  import keras
  if keras.backend.backend() != "jax":
    raise SystemExit(f"Keras backend is {keras.backend.backend()!r}: run as "
                     "`python -m bench.jax_speed` (it sets KERAS_BACKEND=jax)")
  s = common.shapes()
  lstms = LSTMS.value or (["scan"] if common.QUICK.value else ["keras", "scan"])
  bad = sorted(set(lstms) - {"keras", "scan", "unrolled"})
  if bad:
    raise SystemExit(f"--lstms: unknown {bad}; expected keras, scan, unrolled")
  forms = build(s, lstms)
  batch = s["batch_size"]
  calls, records = training_calls(s, batch, forms)
  train = timed(calls, records, batch, common.train_warmup() - 1)
  for lstm, r in train.items():
    r["last_loss"] = float(records[lstm]["holder"]["loss"])
    r["parameters"] = int(forms[lstm][0].count_params())
    print(f"train {lstm}@batch{batch}: {r['samples_per_s']['median']:.1f} samples/s", flush=True)
  calls, records = inference_calls(s, batch, forms)
  infer = timed(calls, records, batch, common.warmup())
  for lstm, r in infer.items():
    print(f"inference {lstm}@batch{batch}: {r['samples_per_s']['median']:.1f} samples/s",
          flush=True)
  results = {"train": train, "inference": infer, "peak_device_mb": peak_device_mb()}
  if not all(np.isfinite(r["last_loss"]) for r in train.values()):
    raise SystemExit(f"non-finite training loss: {train}")
  notes = [f"one timed call = {_steps_per_call()} steps then one sync; step_ms per step",
           "training: the jitted stateless step with device-resident batches (no input "
           "pipeline, no host-to-device copy); first_call_s includes XLA compilation",
           "same weights in every LSTM form (cimha_tf.model.with_lstm_implementation)"]
  common.report("jax_speed", results, notes, {"shapes": s}, machine=device_info())


if __name__ == "__main__":
  os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported; bench/__init__ defaults to TF
  app.run(main)

"""Figure 1: training throughput (samples/s) of one full step: forward, loss, backward, Adam.

The step is Keras's own (compile_model + fit: no Python in the step), fed from an
in-memory repeated batch so only the step is timed. Variants: LSTM form (keras /
unrolled), jit_compile (XLA), steps_per_execution, and "+private": model.private_fast_path
(the private-API attention and dropout) against the public default; batch 100 and 16.
Variants are timed round-robin (--interleave, default): every model is built and warmed
first, then each round times two executions of each, so load drift on the shared machine
hits all alike; --nointerleave times each variant's fit per execution
(on_train_batch_end) one variant after another.

Length buckets (--bucket_widths): the pipeline's length buckets (cimha_tf.data.pipeline,
config data.bucket_width) against plain batches of the same synthetic examples, timed
round-robin, each round one full pass over a fixed cycle of batches (their widths vary, so
a per-step median would not be a throughput): samples/s = cycle samples / cycle time.

  python -m bench.train_throughput [--quick] [--output=bench/results/train_throughput.json]
"""

import time

from absl import app
from absl import flags
import keras

from bench import common
from bench import models

VARIANTS = flags.DEFINE_list(
    "variants", None, "subset of variant names to run (default: all of the mode's)")
INTERLEAVE = flags.DEFINE_bool(
    "interleave", True, "time the variants in turn (round-robin) instead of one after another")
BATCHES = flags.DEFINE_list("batches", None, "batch sizes (default 100,16; 4 with --quick)")

# (name, lstm, jit_compile, steps_per_execution)
FULL = [("keras", "keras", False, 1), ("keras+jit", "keras", True, 1),
        ("unrolled", "unrolled", False, 1), ("unrolled+jit", "unrolled", True, 1),
        ("keras+spe4", "keras", False, 4), ("keras+private", "keras", False, 1)]
PRIVATE = "+private"  # a variant name ending so is built with model.private_fast_path
# --quick: the cheapest-to-trace forms only (CI checks the script, not the numbers).
QUICK = [("keras+spe2", "keras", False, 2)]
BUCKET_WIDTHS = flags.DEFINE_list(
    "bucket_widths", None, "length-bucket widths to time against unbucketed batches of the "
    "same examples (default: the configs' data.bucket_width, 8; 4 with --quick; 'none' skips)")
_PER_ROUND = 2  # timed executions per variant and round


class _Timer(keras.callbacks.Callback):

  def on_train_begin(self, logs=None):
    self.marks = [time.perf_counter()]

  def on_train_batch_end(self, batch, logs=None):
    self.marks.append(time.perf_counter())

  def first_execution_s(self):
    """Trace/compile + the first execution: only the first of a warm-up fit's executions."""
    return self.marks[1] - self.marks[0]


def measure(s, batch_size, lstm, jit, spe, private=False):
  import tensorflow as tf
  from cimha_tf.model import compile_model
  model, cfg = models.build(s, lstm, private_fast_path=private)
  compile_model(model, cfg, 1e-4, jit_compile=jit, steps_per_execution=spe)
  x, y = common.synthetic_batch(batch_size, s["max_video_len"], s["max_query_len"],
                                s["feature_dim"], s["vocab_size"])
  ds = tf.data.Dataset.from_tensors((x, y)).repeat()
  n_warm, n_reps = common.train_warmup(), common.reps()
  timer = _Timer()
  model.fit(ds, steps_per_epoch=spe * (n_warm + n_reps), epochs=1, verbose=0, shuffle=False,
            callbacks=[timer])
  gaps = [b - a for a, b in zip(timer.marks, timer.marks[1:])]
  first = gaps[0]  # trace/compile + first execution
  t = common.stats([g / spe for g in gaps[n_warm:]])
  return {"lstm": lstm, "jit_compile": jit, "steps_per_execution": spe,
          "private_fast_path": private,
          "batch_size": batch_size, "samples_per_s": common.rate(t, batch_size),
          "step_ms": 1e3 * t["median_s"], "step_timing": t, "first_execution_s": first,
          "parameters": int(model.count_params())}


def time_steps(model, ds, spe=1, n=_PER_ROUND):
  """Seconds per training step of n executions of a compiled, warm model on ds."""
  # Timed between on_train_batch_end marks inside one fit: fit's own start-up (epoch
  # iterator, callbacks: ~0.5 s at batch 100) is not a training step.
  timer = _Timer()
  model.fit(ds, steps_per_epoch=spe * (n + 1), epochs=1, verbose=0, shuffle=False,
            callbacks=[timer])
  marks = timer.marks[1:]
  return [(b - a) / spe for a, b in zip(marks, marks[1:])]


def time_cycle(model, cycle, num_batches):
  """Seconds of one full pass over `cycle` (num_batches training steps), compiled, warm:
  time_steps' untimed first step is one of the repeated cycle's, so the timed ones are
  exactly one pass."""
  return sum(time_steps(model, cycle.repeat(), n=num_batches))


def measure_interleaved(s, batch_size, variants):
  """All variants' models built first, then timed in turn, _PER_ROUND executions each
  per round: load drift on the shared machine then hits every variant alike."""
  import tensorflow as tf
  from cimha_tf.model import compile_model
  x, y = common.synthetic_batch(batch_size, s["max_video_len"], s["max_query_len"],
                                s["feature_dim"], s["vocab_size"])
  ds = tf.data.Dataset.from_tensors((x, y)).repeat()
  runs, out = {}, {}
  for name, lstm, jit, spe in variants:
    model, cfg = models.build(s, lstm, private_fast_path=name.endswith(PRIVATE))
    compile_model(model, cfg, 1e-4, jit_compile=jit, steps_per_execution=spe)
    timer, t0 = _Timer(), time.perf_counter()
    model.fit(ds, steps_per_epoch=spe * common.train_warmup(), epochs=1, verbose=0, shuffle=False,
              callbacks=[timer])
    warm = {"first_execution_s": timer.first_execution_s(),
            "warmup_s": time.perf_counter() - t0}
    runs[name] = (model, spe, warm, [], lstm, jit)
  for _ in range(common.reps()):
    for name, (model, spe, _, times, _, _) in runs.items():
      times.extend(time_steps(model, ds, spe))
  for name, (model, spe, warm, times, lstm, jit) in runs.items():
    t = common.stats(times)
    out[name] = {"lstm": lstm, "jit_compile": jit, "steps_per_execution": spe,
                 "private_fast_path": name.endswith(PRIVATE),
                 "batch_size": batch_size, "samples_per_s": common.rate(t, batch_size),
                 "step_ms": 1e3 * t["median_s"], "step_timing": t, **warm,
                 "parameters": int(model.count_params()), "interleaved": True}
  return out


def measure_buckets(s, batch_size, bucket_widths, num_batches):
  """Round-robin: each round times one full pass over every variant's cycle."""
  from cimha_tf.model import compile_model
  runs = {}
  for bw in [0] + bucket_widths:
    name = f"keras+buckets{bw}" if bw else "keras(same examples)"
    cycle, widths = common.bucket_cycle(s, batch_size, bw, num_batches)
    model, cfg = models.build(s, "keras")
    compile_model(model, cfg, 1e-4)
    timer, t0 = _Timer(), time.perf_counter()
    # Every width executes once before timing (a new shape's first run is slower).
    model.fit(cycle.repeat(), steps_per_epoch=num_batches + common.train_warmup(), epochs=1,
              verbose=0, shuffle=False, callbacks=[timer])
    warm = {"first_execution_s": timer.first_execution_s(),
            "warmup_s": time.perf_counter() - t0}
    runs[name] = (model, cycle, widths, warm, [])
  for _ in range(common.reps()):
    for name, (model, cycle, _, _, times) in runs.items():
      times.append(time_cycle(model, cycle, num_batches))
  out, ref = {}, None
  for name, (model, _, widths, warm, times) in runs.items():
    t = common.stats(times)
    rate = common.rate(t, batch_size * num_batches)
    ref = ref or rate["median"]
    out[f"{name}@batch{batch_size}"] = {
        "lstm": "keras", "batch_size": batch_size, "samples_per_s": rate,
        "cycle_timing": t, "cycle_batches": num_batches, "time_axis_widths": widths,
        "mean_time_axis": sum(widths) / len(widths), **warm,
        "speedup_vs_unbucketed_same_examples": rate["median"] / ref, "interleaved": True}
  return out


def main(argv):
  del argv
  s = common.shapes()
  variants = QUICK if common.QUICK.value else FULL
  if VARIANTS.value:
    variants = [v for v in variants if v[0] in VARIANTS.value]
  batches = [s["batch_size"], 16] if not common.QUICK.value else [s["batch_size"]]
  if BATCHES.value:
    batches = [int(b) for b in BATCHES.value]
  results, notes = {}, []
  for bs in batches:
    if INTERLEAVE.value:
      for name, r in measure_interleaved(s, bs, variants).items():
        results[f"{name}@batch{bs}"] = r
        print(f"{name}@batch{bs}: {r['samples_per_s']['median']:.1f} samples/s", flush=True)
      continue
    for name, lstm, jit, spe in variants:
      key = f"{name}@batch{bs}"
      try:
        results[key] = measure(s, bs, lstm, jit, spe, name.endswith(PRIVATE))
        print(f"{key}: {results[key]['samples_per_s']['median']:.1f} samples/s", flush=True)
      except Exception as e:  # e.g. a form XLA cannot compile: record, go on
        notes.append(f"{key}: {type(e).__name__}: {str(e)[:300]}")
  from cimha_tf.experiment.config import BUCKET_WIDTH
  widths = BUCKET_WIDTHS.value or [str(4 if common.QUICK.value else BUCKET_WIDTH)]
  if widths != ["none"]:
    for name, r in measure_buckets(s, s["batch_size"], [int(w) for w in widths],
                                   common.cycle_batches()).items():
      results[name] = r
      print(f"{name}: {r['samples_per_s']['median']:.1f} samples/s "
            f"(mean time axis {r['mean_time_axis']:.0f})", flush=True)
  for bs in batches:  # ratios within one run are what survives the shared machine's noise
    ref = results.get(f"keras@batch{bs}")
    for k, r in results.items():
      if k.endswith(f"@batch{bs}"):
        r["speedup_vs_keras_same_batch"] = (
            r["samples_per_s"]["median"] / ref["samples_per_s"]["median"] if ref else None)
  notes.append("synthetic inputs with real masks (random valid lengths); frozen embeddings")
  notes.append("length buckets: valid lengths uniform in [N/4, N] (common.synthetic_batch); "
               "the gain depends on the dataset's lengths and is nil when all fill N")
  common.report("train_throughput", results, notes, extra={"shapes": s, "target": {
      "samples_per_s_at_batch100": 120, "peers": {"VSLNet": 50, "ExCL": 80}}})


if __name__ == "__main__":
  app.run(main)

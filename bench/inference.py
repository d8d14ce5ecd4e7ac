"""Figure 2: inference batch-1 latency (ms) and batch-100 throughput (samples/s).

Engines, same weights: the Keras model under tf.function (fixed shapes; also with
jit_compile), the SavedModel's `serving_tokens` signature
(input checks + model + top-k decoding, cimha_tf.deploy.saved_model), and TFLite in the
LiteRT interpreter (cimha_tf.deploy.tflite: fused LSTM ops; float32, float16 weights,
dynamic-range int8) with num_threads = the machine's cores. `keras_buckets`: batch-100
throughput of an evaluation pass with length buckets (runner.evaluate_split's default),
against plain batches of the same examples, one full cycle of batches per round.

  python -m bench.inference [--quick] [--output=bench/results/inference.json]
"""

import os
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

from bench import common
from bench import models

ENGINES = flags.DEFINE_list(
    "engines", None, "subset to run: keras, keras_jit, saved_model, tflite_float32, "
    "tflite_float32_fixed, tflite_float16, tflite_dynamic_int8, keras_buckets (default: all)")

# TFLite engines: (quantization, free time axis). "_fixed": the video inputs fixed at
# max_video_len steps, the form before the free axis.
QUANTS = {"tflite_float32": ("none", True), "tflite_float32_fixed": ("none", False),
          "tflite_float16": ("float16", True), "tflite_dynamic_int8": ("dynamic_int8", True)}
MIXED_QUERIES = 20  # batch-1 latency over queries of mixed lengths: this many per round


# --quick: the engines the targets are about, tiny (CI checks the script).
QUICK_ENGINES = ("keras", "tflite_float32", "keras_buckets")


def _want(name):
  if ENGINES.value:
    return name in ENGINES.value
  return name in QUICK_ENGINES if common.QUICK.value else True


def _batches(s):
  return (1,) if common.QUICK.value else (1, s["batch_size"])


def _inputs(s, batch):
  x, _ = common.synthetic_batch(batch, s["max_video_len"], s["max_query_len"],
                                s["feature_dim"], s["vocab_size"], seed=1)
  return x


def _time(fn, batch):
  return _record(common.time_calls(fn), batch)


def _record(t, batch):
  """Latency, rate and the timing statistics t (common.stats) of one call of `batch`."""
  return {"latency_ms": 1e3 * t["median_s"], "samples_per_s": common.rate(t, batch),
          "timing": t}


def keras_engine(model, s, jit):
  import tensorflow as tf
  fn = tf.function(lambda x: model(x, training=False), jit_compile=jit)
  out = {}
  for batch in _batches(s):
    x = {k: tf.constant(v) for k, v in _inputs(s, batch).items()}
    t0 = time.perf_counter()
    fn(x)["start_probs"].numpy()
    first_call_s = time.perf_counter() - t0  # the trace's call alone, not the timed ones
    r = _time(lambda: fn(x)["start_probs"].numpy(), batch)
    r["first_call_s"] = first_call_s
    out[f"batch{batch}"] = r
  return out


def keras_buckets_engine(model, s, num_batches):
  """Evaluation-style throughput over a cycle of batches: plain (max_video_len steps) and
  length-bucketed (cut to the longest video) batches of the same examples, timed in turn."""
  import tensorflow as tf
  from cimha_tf.evaluation.runner import EVAL_BUCKET_WIDTH
  batch = s["batch_size"]
  fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
  cycles = {}
  for name, bw in (("plain", 0), (f"buckets{EVAL_BUCKET_WIDTH}", EVAL_BUCKET_WIDTH)):
    cycle, widths = common.bucket_cycle(s, batch, bw, num_batches)
    inputs = [x for x, _ in cycle]
    for x in inputs:  # every width once (traces, then a free time axis)
      fn(x)["start_probs"].numpy()
    cycles[name] = (inputs, widths, [])
  for _ in range(common.reps()):
    for inputs, _, times in cycles.values():
      t0 = time.perf_counter()
      for x in inputs:
        fn(x)["start_probs"].numpy()
      times.append(time.perf_counter() - t0)
  out, ref = {}, None
  for name, (inputs, widths, times) in cycles.items():
    t = common.stats(times)
    rate = common.rate(t, batch * len(inputs))
    ref = ref or rate["median"]
    out[f"batch{batch}_{name}"] = {"samples_per_s": rate, "cycle_timing": t,
                                   "mean_time_axis": sum(widths) / len(widths),
                                   "time_axis_widths": widths,
                                   "speedup_vs_plain_same_examples": rate["median"] / ref}
  return out


def saved_model_engine(model, cfg, s, tmp):
  import tensorflow as tf
  from cimha_tf.deploy import saved_model
  vocab = ["<pad>", "<unk>"] + [f"w{i}" for i in range(2, s["vocab_size"])]
  path = saved_model.export(model, vocab, os.path.join(tmp, "sm"), cfg, top_k=5)
  loaded = tf.saved_model.load(path)
  sig = loaded.signatures[saved_model.SIGNATURE_TOKENS]
  out = {}
  for batch in _batches(s):
    x = _inputs(s, batch)
    feeds = {"query_tokens": tf.constant(x["query_tokens"]),
             "video_features": tf.constant(x["video_features"]),
             "video_length": tf.constant(x["video_mask"].sum(1).astype(np.int32)),
             "duration": tf.constant(np.full(batch, 30.0, np.float32))}
    out[f"batch{batch}"] = _time(lambda: sig(**feeds)["scores"].numpy(), batch)
  return out


def tflite_engines(model, s, names):
  """TFLiteModel.run_batch on the padded inputs (a free time axis cuts them after the last
  valid step). Batch 1, all engines round-robin (one call each per round, each input on
  its own interpreter): the example; `latency_128_valid`, a query whose video has all
  max_video_len steps; `latency_mixed_lengths`, MIXED_QUERIES queries in turn with valid
  lengths uniform in N/4..N as the other inputs, the mean per query (a free axis resizes
  the interpreter whenever the length changes, and that is included)."""
  from cimha_tf.deploy import tflite
  out = {n: {} for n in names}
  for batch in _batches(s):
    t0 = time.perf_counter()
    blobs = {}
    for free in (True, False):
      quants = sorted({QUANTS[n][0] for n in names if QUANTS[n][1] == free})
      if quants:
        for q, blob in tflite.convert_many(model, s["max_video_len"], s["max_query_len"], quants,
                                           lstm="fused", batch_size=batch,
                                           free_length=free).items():
          blobs[(q, free)] = blob
    convert_s = time.perf_counter() - t0
    inputs = {f"batch{batch}": [_inputs(s, batch)]}
    if batch == 1 and not common.QUICK.value:
      full, _ = common.synthetic_batch(1, s["max_video_len"], s["max_query_len"],
                                       s["feature_dim"], s["vocab_size"], seed=1, full=True)
      mixed, _ = common.synthetic_batch(MIXED_QUERIES, s["max_video_len"], s["max_query_len"],
                                        s["feature_dim"], s["vocab_size"], seed=2)
      inputs["latency_128_valid"] = [full]
      inputs["latency_mixed_lengths"] = [{k: v[i:i + 1] for k, v in mixed.items()}
                                         for i in range(MIXED_QUERIES)]
    calls = {}
    for name in names:
      for kind, xs in inputs.items():
        runner = tflite.TFLiteModel(blobs[QUANTS[name]], num_threads=os.cpu_count())
        calls[(name, kind)] = (lambda r, xs: lambda: [
            r.run_batch(x["video_features"], x["video_mask"], x["query_tokens"])
            for x in xs])(runner, xs)
    rounds = common.reps() * (5 if batch == 1 else 1)
    times = common.round_robin(calls, common.warmup(), rounds)
    for (name, kind), seconds in times.items():
      per_query = [t / len(inputs[kind]) for t in seconds]
      r = _record(common.stats(per_query), batch)
      if kind == f"batch{batch}":
        r["valid_steps"] = inputs[kind][0]["video_mask"].sum(1).astype(int).tolist()[:8]
        r["convert_s_all_quantizations"] = convert_s
        r["bytes"] = len(blobs[QUANTS[name]])
      if kind == "latency_mixed_lengths":
        r["mean_valid_steps"] = float(mixed["video_mask"].sum(1).mean())
      out[name][kind] = r
  return out


def main(argv):
  del argv
  s = common.shapes()
  results, notes = {}, []
  model, cfg = models.build(s, "keras")
  for name, jit in (("keras", False), ("keras_jit", True)):
    if _want(name):
      try:
        results[name] = keras_engine(model, s, jit)
      except Exception as e:
        notes.append(f"{name}: {type(e).__name__}: {str(e)[:300]}")
  if _want("keras_buckets"):
    results["keras_buckets"] = keras_buckets_engine(model, s, common.cycle_batches())
  with tempfile.TemporaryDirectory() as tmp:
    if _want("saved_model"):
      try:
        results["saved_model"] = saved_model_engine(model, cfg, s, tmp)
      except Exception as e:
        notes.append(f"saved_model: {type(e).__name__}: {str(e)[:300]}")
    names = [n for n in QUANTS if _want(n)]
    if names:
      try:
        results.update(tflite_engines(model, s, names))
      except Exception as e:
        notes.append(f"tflite: {type(e).__name__}: {str(e)[:300]}")
  notes.append("saved_model times include its input checks and top-5 decoding; TFLite runs "
               f"with num_threads={os.cpu_count()}; batch-1 = latency, batch-{s['batch_size']}"
               " = throughput")
  common.report("inference", results, notes, extra={"shapes": s, "target": {
      "tflite_float32_batch1_ms": 3.5, "batch100_samples_per_s": 400,
      "peers_batch1_ms": {"VSLNet": 12, "ExCL": 7},
      "peers_batch100_samples_per_s": {"VSLNet": 200, "ExCL": 270}}})


if __name__ == "__main__":
  app.run(main)

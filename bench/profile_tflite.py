"""Where TFLite's batch-1 latency goes: the LSTM ops against the rest.

LiteRT's Python interpreter has no per-op profiler, so this measures by parts, all
interpreters timed round-robin (one call each per round):
- the default float32 model with LiteRT's XNNPACK delegate and without it, the same
  model at the example's valid length (as TFLiteModel runs a free time axis), its
  fixed-shape form, and its form without the per-query LSTM weights of
  cimha_tf/deploy/runtime_kernels.py (their speed-up, round by round);
- the LSTM-int8 form;
- each UNIDIRECTIONAL_SEQUENCE_LSTM op of those models alone, in a one-op model of the
  same shapes (read from the converted models), float32 and int8 weights.
Except the one row, every model runs at max_video_len steps. XNNPACK takes every op but
the LSTMs, SELECT_V2, REVERSE_SEQUENCE, GATHER and comparisons; the LSTM ops run in
TFLite's own kernel, one step after the other, on one thread.

  python -m bench.profile_tflite [--quick] [--output=bench/results/profile_tflite.json]
"""

import collections
import os
import tempfile

from absl import app
import numpy as np

from bench import common
from bench import models


def one_lstm_model(steps, input_dim, units, seed=0):
  """A float32 model of one fused LSTM op (cimha_tf.deploy.tflite's composite path)."""
  import tensorflow as tf
  from cimha_tf.deploy import tflite
  rng = np.random.default_rng(seed)
  k, rk = (tf.constant(rng.standard_normal(s).astype(np.float32) * 0.1)
           for s in ((input_dim, 4 * units), (units, 4 * units)))
  b = tf.zeros([4 * units])
  lstm = tflite._composite_lstm()

  @tf.function(input_signature=[tf.TensorSpec([1, steps, input_dim], tf.float32, "x")],
               autograph=False)
  def serve(x):
    z = tf.zeros([1, units])
    return {"y": lstm(x, z, z, k, rk, b)[1]}

  module = tf.Module()
  module.serve = serve
  with tempfile.TemporaryDirectory() as d:
    tf.saved_model.save(module, d, signatures={"serving_default": serve.get_concrete_function()})
    return tflite._convert_saved_model(d, "none", "fused")


def _runner(flatbuffer, feeds, delegate=True):
  from ai_edge_litert.interpreter import Interpreter, OpResolverType
  kw = {} if delegate else {
      "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
  it = Interpreter(model_content=flatbuffer, num_threads=os.cpu_count(), **kw)
  it.allocate_tensors()
  run = it.get_signature_runner()

  def call():
    it.reset_all_variables()  # fresh LSTM state per query, as TFLiteModel does
    return run(**feeds)
  return call


def main(argv):
  del argv
  from cimha_tf.deploy import quantization
  from cimha_tf.deploy import tflite
  s = common.shapes()
  model, _ = models.build(s, "keras")
  whole = tflite.convert_many(model, s["max_video_len"], s["max_query_len"],
                              ("none", "dynamic_int8"))
  # The same float32 model with constant LSTM weights (no runtime_kernels.py rewrites),
  # and with its video inputs fixed at max_video_len steps.
  plain = tflite.convert(model, s["max_video_len"], s["max_query_len"], runtime_kernels=False)
  fixed = tflite.convert(model, s["max_video_len"], s["max_query_len"], free_length=False)
  x, _ = common.synthetic_batch(1, s["max_video_len"], s["max_query_len"], s["feature_dim"],
                                s["vocab_size"], seed=1)
  n = int(x["video_mask"].sum())
  cut = {k: v[:, :n] if k != "query_tokens" else v for k, v in x.items()}
  calls = {"model float32 (XNNPACK)": _runner(whole["none"], x),
           f"model float32, run at the example's {n} valid steps (XNNPACK)":
               _runner(whole["none"], cut),
           "model float32 fixed shapes (XNNPACK)": _runner(fixed, x),
           "model float32 constant LSTM weights (XNNPACK)": _runner(plain, x),
           "model float32 (no delegate)": _runner(whole["none"], x, delegate=False),
           "model LSTM-int8 (XNNPACK)": _runner(whole["dynamic_int8"], x)}
  # A free time axis reads as None: the runs here take max_video_len steps.
  counts = {form: collections.Counter((t or s["max_video_len"], d, u)
                                      for t, d, u in tflite.lstm_shapes(whole[q]))
            for form, q in (("float32", "none"), ("int8", "dynamic_int8"))}
  rng = np.random.default_rng(0)
  for steps, dim, units in set(counts["float32"]) | set(counts["int8"]):
    one = one_lstm_model(steps, dim, units)
    feeds = {"x": rng.standard_normal((1, steps, dim)).astype(np.float32)}
    calls[f"lstm {steps}x{dim}->{units} float32"] = _runner(one, feeds)
    int8, _ = quantization.lstm_int8_rest_float16(one)
    calls[f"lstm {steps}x{dim}->{units} int8"] = _runner(int8, feeds)
  # One call each per round: cheap, so many rounds.
  times = common.round_robin(calls, common.warmup() + 1, 5 * common.reps())
  results = {k: {"timing": common.stats(t)} for k, t in times.items()}
  for r in results.values():
    r["latency_ms"] = 1e3 * r["timing"]["median_s"]
  for form in ("float32", "int8"):
    lstm_ms = sum(n * results[f"lstm {t}x{d}->{u} {form}"]["latency_ms"]
                  for (t, d, u), n in counts[form].items())
    name = "model float32 (XNNPACK)" if form == "float32" else "model LSTM-int8 (XNNPACK)"
    total = results[name]["latency_ms"]
    results[f"summary {form}"] = {"model_ms": total, "lstm_ops_alone_ms": lstm_ms,
                                  "lstm_share": lstm_ms / total, "rest_ms": total - lstm_ms}
  ratio = common.spread(np.asarray(times["model float32 constant LSTM weights (XNNPACK)"]) /
                        np.asarray(times["model float32 (XNNPACK)"]))
  print("constant / runtime LSTM weights, per round:", ratio)
  for k, r in results.items():
    print(k, {a: round(b, 3) for a, b in r.items() if isinstance(b, float)}, flush=True)
  common.report("profile_tflite", results, [
      f"num_threads={os.cpu_count()}, batch 1, medians of {5 * common.reps()} round-robin calls",
      "lstm_ops_alone_ms: the model's LSTM ops (shapes and counts read from it) timed alone "
      "in one-op models; rest_ms = model - that (XNNPACK part and non-delegated ops)"],
      extra={"runtime_weights_speedup": ratio, "shapes": s,
             "lstm_ops": {form: [list(k) + [n] for k, n in c.items()]
                          for form, c in counts.items()}})


if __name__ == "__main__":
  app.run(main)

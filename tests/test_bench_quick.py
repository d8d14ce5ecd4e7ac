"""Benchmarks stay runnable (their --quick mode, well-formed JSON) and their parts are
right: the FLOP counter equals hand-counted matmuls, timing statistics equal numpy's, the
report renders the committed figures. No timing assertions."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_stats_match_numpy():
  from bench import common
  t = [0.3, 0.1, 0.2, 0.5, 0.4, 0.9]
  s = common.stats(t)
  assert s["median_s"] == pytest.approx(np.median(t))
  assert s["iqr_s"] == pytest.approx(np.percentile(t, 75) - np.percentile(t, 25))
  assert (s["min_s"], s["max_s"], s["reps"]) == (0.1, 0.9, 6)
  r = common.rate(s, 100)
  assert r["low"] == pytest.approx(100 / 0.9) and r["high"] == pytest.approx(1000)
  with pytest.raises(ValueError, match="at least one"):
    common.stats([])


def test_round_robin_warms_then_times_each_call_once_per_round():
  from bench import common
  order = []
  calls = {k: (lambda k=k: order.append(k)) for k in "ab"}
  times = common.round_robin(calls, n_warmup=2, n_rounds=3)
  assert order == list("aabb") + list("ababab")  # warm-up untimed, then in turn
  assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
  assert all(t >= 0 for v in times.values() for t in v)


def test_synthetic_batch_follows_the_model_contract():
  from bench import common
  x, y = common.synthetic_batch(7, 12, 5, 3, 20, seed=3)
  assert x["video_features"].shape == (7, 12, 3) and x["video_features"].dtype == np.float32
  assert x["query_tokens"].dtype == np.int32 and x["video_mask"].dtype == np.float32
  n = x["video_mask"].sum(1).astype(int)
  for b in range(7):  # valid steps first, padding zero, labels inside the valid part
    assert (x["video_mask"][b, :n[b]] == 1).all() and (x["video_mask"][b, n[b]:] == 0).all()
    assert not x["video_features"][b, n[b]:].any()
    assert 0 <= y["start_probs"][b] <= y["end_probs"][b] < n[b]
    inside = y["inside_probs"][b]
    assert (inside[n[b]:] == -1).all()
    assert inside[:n[b]].sum() == y["end_probs"][b] - y["start_probs"][b] + 1
    words = x["query_tokens"][b] != 0
    assert words[0] and not (words[1:] & ~words[:-1]).any()
    assert (x["query_tokens"][b][words] >= 2).all()


def test_op_flops_counts_matmul_batchmatmul_and_einsum():
  import tensorflow as tf
  from bench.flops import _MATMULS, op_flops

  @tf.function
  def f(a, b, c, d, e):
    return (tf.matmul(a, b), tf.matmul(b, a, transpose_a=True, transpose_b=True),
            tf.matmul(c, d), tf.einsum("bnd,de->bne", c, e))

  graph = f.get_concrete_function(
      tf.TensorSpec([3, 4]), tf.TensorSpec([4, 5]), tf.TensorSpec([2, 6, 4]),
      tf.TensorSpec([2, 4, 7]), tf.TensorSpec([4, 9])).graph
  counted = sorted(op_flops(op) for op in graph.get_operations() if op.type in _MATMULS)
  # (3x4)(4x5); (5x4)(4x3) via transposes; batch 2 of (6x4)(4x7); einsum over b,n,d,e
  expected = sorted([2 * 3 * 4 * 5, 2 * 5 * 4 * 3, 2 * 2 * 6 * 4 * 7, 2 * 2 * 6 * 4 * 9])
  assert counted == expected


def test_flop_count_of_blocks_equals_their_formula():
  # Figure 5's per-block counts against hand counts (2 FLOPs per multiply-add).
  from bench import common, flops, models
  s = dict(common.QUICK_SHAPES)
  c = models.model_config(s)
  _, per_block, unknown, _ = flops.count_forward(s)
  n, l, d, u = s["max_video_len"], s["max_query_len"], c.width, c.query_lstm_units
  assert unknown == 0
  # Bi-LSTM: 2 directions x L steps x [x, h] (E + U) x 4 gates of U
  assert per_block["query_encoder"] == 2 * 2 * l * (c.embedding_dim + u) * 4 * u
  # self-attention: Q, K, V, O projections and the two N x N products
  assert per_block["video_self"] == 2 * (4 * n * d * d + 2 * n * n * d)
  assert per_block["video_projection"] == 2 * n * s["feature_dim"] * d
  assert per_block["video_ffn"] == 2 * 2 * n * d * c.ffn_width


EXPECTED_FIGURES = ("train_throughput", "inference", "input_pipeline", "memory", "flops",
                    "profile_step", "profile_inference", "profile_tflite")


# Issue 7: CI runs every benchmark's quick mode, to keep the scripts working: ~1.5 min on
# an idle 2-core CPU. Mostly TF tracing, which keeps one core busy, so the figures run as
# two run_all processes side by side (~45% less wall time than one after the other).
_QUICK_HALVES = (("train_throughput", "inference", "input_pipeline", "memory"),
                 ("flops", "profile_step", "profile_inference", "profile_tflite",
                  "peers"))  # peers: skipped without PyTorch (tests/test_bench_peers.py)


def test_quick_halves_cover_every_figure_once():
  from bench import run_all
  assert sorted(sum(_QUICK_HALVES, ())) == sorted(run_all.FIGURES)


def test_every_figure_quick_mode_writes_well_formed_json(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
             CUDA_VISIBLE_DEVICES="")
  commands = [["bench.run_all", "--quick", f"--output_dir={tmp_path}",
               "--figures=" + ",".join(half)] for half in _QUICK_HALVES]
  # Figure 3 as the training binary reads it (op determinism: a whole-process setting).
  commands.append(["bench.input_pipeline", "--quick", "--deterministic",
                   f"--output={tmp_path / 'input_pipeline_deterministic.json'}"])
  runs = [subprocess.Popen([sys.executable, "-m", *command], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for command in commands]
  errors = [run.communicate(timeout=3000)[1] for run in runs]
  for run, err in zip(runs, errors):
    assert run.returncode == 0, err[-3000:]
  docs = {}
  for name in EXPECTED_FIGURES:
    with open(tmp_path / f"{name}.json") as f:
      d = json.load(f)
    assert d["figure"] == name and d["quick"] is True
    assert {"cpu", "cpu_simd", "cores", "tensorflow", "keras", "time_utc"} <= set(d["machine"])
    assert d["peak_rss_mb"] > 0 and isinstance(d["notes"], list) and d["results"]
    docs[name] = d["results"]
  for key, r in docs["train_throughput"].items():
    assert r["batch_size"] == 4 and r["samples_per_s"]["median"] > 0
    assert r["samples_per_s"]["low"] <= r["samples_per_s"]["median"] <= r["samples_per_s"]["high"]
  buckets = docs["train_throughput"]["keras+buckets4@batch4"]
  assert buckets["mean_time_axis"] < 16 and len(buckets["time_axis_widths"]) == 4
  assert docs["train_throughput"]["keras(same examples)@batch4"]["mean_time_axis"] == 16
  for engine in ("keras", "tflite_float32"):
    assert docs["inference"][engine]["batch1"]["latency_ms"] > 0
  assert set(docs["inference"]["keras_buckets"]) == {"batch4_plain", "batch4_buckets8"}
  for k in ("pipeline_cached", "pipeline_uncached", "pipeline_cached_buckets8",
            "pipeline_uncached_buckets8"):
    assert docs["input_pipeline"][k]["ratio_to_training"] > 0
  with open(tmp_path / "input_pipeline_deterministic.json") as f:
    det = json.load(f)
  assert any("--deterministic" in note for note in det["notes"])
  assert det["results"]["pipeline_uncached"]["ratio_to_training"] > 0
  assert {"import_only", "inference_keras"} <= set(docs["memory"])
  assert all(v["peak_rss_mb"] > 0 for v in docs["memory"].values())
  fl = docs["flops"]
  assert fl["ops_with_unknown_shapes"] == 0
  assert fl["forward_flops_per_sample"] == sum(fl["forward_flops_by_block"].values()) > 0
  assert fl["forward_flops_per_sample"] < fl["train_flops_per_sample"] < 3 * fl["forward_flops_per_sample"]
  assert all(a["fraction_of_matmul_rate"] > 0 for a in fl["achieved"].values())
  prof = docs["profile_step"]
  assert prof["op_s_per_step"] > 0 and prof["wall_s_per_step"] > 0
  assert sum(v["share"] for v in prof["by_op_type"].values()) <= 1 + 1e-9
  assert any(k.startswith("gradient: ") for k in prof["by_block"])
  inf = docs["profile_inference"]  # the forward pass alone: no gradient, no optimizer
  assert inf["op_s_per_step"] > 0 and sum(v["share"] for v in inf["by_block"].values()) <= 1 + 1e-9
  assert all(k.startswith("forward: ") for k in inf["by_block"])
  assert any("lstm" in k for k in inf["by_block"])
  lite = docs["profile_tflite"]
  for form in ("float32", "int8"):
    summary = lite[f"summary {form}"]
    assert 0 < summary["lstm_ops_alone_ms"] and summary["model_ms"] > 0
  # peers.json (PyTorch installed) is checked by tests/test_bench_peers.py


def test_profile_step_names_the_block_of_an_op():
  from bench.profile_step import block_of
  assert block_of("gradient_tape/cimha_cimha_1/span_head_1/start_lstm_1/while/MatMul") == (
      "gradient: span_head/start_lstm")
  assert block_of("cimha_cimha_1/video_self_1/mha_1/value_1/MatMul") == "forward: video_self/mha"
  assert block_of("adam/Cast_12/ReadVariableOp") == "optimizer and other"


def test_lstm_shapes_reads_every_lstm_op_shape_from_the_converted_model():
  import keras
  from cimha_tf.deploy import tflite
  from cimha_tf.model import build_model
  from tests.helpers import tiny_model_config
  keras.utils.set_random_seed(0)
  c = tiny_model_config()
  model = build_model(c, 5, 30)
  shapes = tflite.lstm_shapes(tflite.convert(model, c.max_video_len, c.max_query_len,
                                             runtime_kernels=False, free_length=False))
  # Independently: every LSTM's (input dim, units) from its kernels in the Keras model.
  ws = {v.path: tuple(v.shape) for v in model.weights}
  expected = sorted((ws[p[:-len("recurrent_kernel")] + "kernel"][0], shape[0])
                    for p, shape in ws.items() if p.endswith("/recurrent_kernel"))
  assert len(expected) == 6  # query, start and end Bi-LSTMs
  assert sorted((d, u) for _, d, u in shapes) == expected
  assert sorted(t for t, _, _ in shapes) == [c.max_query_len] * 2 + [c.max_video_len] * 4


def test_report_renders_every_committed_figure():
  # docs/benchmarks.md's tables come from bench/results through bench.report; a key
  # renamed in a figure's JSON must not break it (it once did: train_step_fused_lstm).
  from bench import report
  results = REPO / "bench" / "results"
  text = report.render(results)
  load = lambda name: json.loads((results / f"{name}.json").read_text())
  r = load("train_throughput")["results"]["keras@batch100"]["samples_per_s"]
  assert f"| keras | 100 | {r['median']:.1f} ({r['low']:.1f}-{r['high']:.1f}) |" in text
  assert f"| {load('peers')['ratio_ours_over_peer']['train']:.2f}x (1.5x) |" in text
  b = load("peers")["ratio_ours_over_peer_by_round"]["train_mixed"]
  assert f"| {b['median']:.2f}x ({b['low']:.2f}-{b['high']:.2f}) |" in text
  share = load("profile_tflite")["results"]["summary float32"]["lstm_share"]
  assert f"({100 * share:.0f}%) |" in text
  for k, v in load("input_pipeline")["results"].items():
    if k.startswith("pipeline_"):
      assert f"| {k} | " in text and f"| {v['ratio_to_training']:.1f} |" in text
  # The bucketed evaluation pass's row shows the bucketed rate, not only the plain one.
  eb = load("inference")["results"]["keras_buckets"]["batch100_buckets8"]
  row = next(l for l in text.splitlines() if l.startswith("| keras_buckets |"))
  assert f"buckets8 {eb['samples_per_s']['median']:.1f} (" in row
  assert f"{eb['speedup_vs_plain_same_examples']:.2f}x" in row


class _FakeFitModel:
  """fit() runs its executions as sleeps (the first 0.3 s: the trace) and calls the
  callbacks as Keras does; enough for the timing code around it."""

  def __init__(self, spe):
    self.spe, self.executions = spe, 0

  def fit(self, ds, steps_per_epoch, epochs, verbose, shuffle, callbacks=()):
    import time
    for c in callbacks:
      c.on_train_begin()
    for i in range(steps_per_epoch // self.spe):
      time.sleep(0.3 if self.executions == 0 else 0.1)
      self.executions += 1
      for c in callbacks:
        c.on_train_batch_end(i)

  def count_params(self):
    return 1


def test_train_throughput_first_execution_is_only_the_first(monkeypatch):
  # It once held the whole warm-up fit (trace + 3 executions), in a column that said
  # "first execution": 15 s for steps_per_execution=4 was 12 steps.
  import cimha_tf.model
  from bench import common, models, train_throughput
  monkeypatch.setattr(common, "train_warmup", lambda: 3)
  monkeypatch.setattr(common, "reps", lambda: 1)
  monkeypatch.setattr(models, "build", lambda s, lstm, **kw: (_FakeFitModel(spe=2), None))
  monkeypatch.setattr(cimha_tf.model, "compile_model", lambda *a, **k: None)
  r = train_throughput.measure_interleaved(common.QUICK_SHAPES, 4, [("x", "keras", False, 2)])
  r = r["x"]
  assert 0.3 <= r["first_execution_s"] < 0.4  # the trace's execution alone
  assert r["warmup_s"] >= 0.5  # and the other two warm-up executions
  assert r["step_timing"]["median_s"] == pytest.approx(0.05, abs=0.02)  # 0.1 s / spe 2


def test_inference_first_call_is_only_the_first(monkeypatch):
  # It once also held the warm-up and every timed call.
  import time
  from bench import common, inference
  monkeypatch.setattr(inference, "_batches", lambda s: (1,))

  def slow_time_calls(fn):
    time.sleep(0.5)
    return common.stats([0.01])

  monkeypatch.setattr(common, "time_calls", slow_time_calls)
  model = lambda x, training: {"start_probs": x["video_mask"]}
  r = inference.keras_engine(model, common.QUICK_SHAPES, jit=False)["batch1"]
  assert 0 < r["first_call_s"] < 0.5 and r["latency_ms"] == pytest.approx(10)


def test_memory_interpreter_alone_loads_no_tensorflow():
  # Its figure once ran the interpreter through cimha_tf.deploy.tflite, which imports
  # TensorFlow and Keras: the "interpreter alone" was TensorFlow's import (664 MiB).
  from bench import common, memory
  r = memory.run_role("tflite_float32", dict(common.QUICK_SHAPES))
  assert r["detail"]["interpreter_process_peak_rss_mb"] < 300


def test_bench_model_with_the_private_path_is_the_same_model():
  """train_throughput's "+private" variant: the same model in the fast path's layers."""
  import keras
  from bench import common, models
  from cimha_tf.model import attention
  s = dict(common.QUICK_SHAPES)
  public, _ = models.build(s)
  private, cfg = models.build(s, private_fast_path=True)
  assert cfg.private_fast_path
  mhas = lambda m: [type(l) for l in m._flatten_layers(include_self=False, recursive=True)  # noqa: E731
                    if isinstance(l, keras.layers.MultiHeadAttention)]
  assert mhas(public) == [keras.layers.MultiHeadAttention] * 4
  assert mhas(private) == [attention.MultiHeadAttention] * 4
  x, _ = common.synthetic_batch(2, s["max_video_len"], s["max_query_len"], s["feature_dim"],
                                s["vocab_size"])
  # Its subclasses draw one more seed each, so the same seed initializes other weights.
  private.set_weights(public.get_weights())
  a, b = public(x, training=False), private(x, training=False)
  for k in a:
    np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6)

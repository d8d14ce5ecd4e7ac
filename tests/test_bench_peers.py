"""bench/peers.py: the ExCL-style PyTorch peer computes what its docstring says (masked
softmax over valid steps, sentence vector read at each query's own length) and the ratios
point the right way. Needs PyTorch, which cimha-tf does not depend on: skipped without it
(CI), except the ratio arithmetic."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO_PATH as REPO


def _fake(samples_per_s):
  return {"samples_per_s": {"median": samples_per_s}}


def test_ratios_are_ours_over_peer_with_latency_inverted():
  from bench.peers import TARGETS, TASKS, ratios
  out = {"cimha-tf": {"train": _fake(150.0), "latency_batch1": _fake(250.0),
                      "throughput": _fake(400.0), "train_mixed": _fake(90.0),
                      "throughput_mixed": _fake(300.0)},
         "ExCL": {"train": _fake(100.0), "latency_batch1": _fake(125.0),
                  "throughput": _fake(200.0), "train_mixed": _fake(60.0),
                  "throughput_mixed": _fake(400.0)}}
  # samples/s at batch 1 = 1 / latency: 4 ms vs 8 ms is 2x faster
  assert ratios(out) == pytest.approx({"train": 1.5, "latency_batch1": 2.0, "throughput": 2.0,
                                       "train_mixed": 1.5, "throughput_mixed": 0.75})
  assert set(TARGETS) < set(ratios(out)) == set(TASKS)
  del out["ExCL"]["train_mixed"]  # a task one side lacks (e.g. an older file) is left out
  assert "train_mixed" not in ratios(out)


def test_paired_ratios_compare_each_round_with_itself():
  from bench.common import paired_ratios
  # Round 2 ran on a machine twice as slow for both: per-round ratios stay 2.0 and 3.0.
  times = {"cimha-tf": {"train": [[1.0, 1.0], [2.0, 2.0], [1.0, 3.0]]},
           "ExCL": {"train": [[2.0, 2.0], [4.0, 4.0], [6.0, 6.0]]}}
  r = paired_ratios(times, "cimha-tf", "ExCL")["train"]
  assert (r["median"], r["low"], r["high"], r["rounds"]) == (2.0, 2.0, 3.0, 3)


def _toy_batch(torch, seed):
  """Two videos of 7 steps x 6 features (the second valid for 4) and two queries."""
  feats = torch.from_numpy(
      np.random.default_rng(seed).standard_normal((2, 7, 6)).astype(np.float32))
  mask = torch.tensor([[1.0] * 7, [1.0] * 4 + [0.0] * 3])
  toks = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 0, 0, 0]], dtype=torch.int32)
  return feats, mask, toks


def test_excl_peer_masks_padding_and_reads_each_query_at_its_length():
  torch = pytest.importorskip("torch")
  from bench.peers import build_excl
  model = build_excl(dv=6, vocab_size=20, embedding_dim=5, units=3).eval()
  feats, mask, toks = _toy_batch(torch, 0)
  with torch.no_grad():
    start, end = model(feats, mask, toks)
    # The same queries padded to 9 words: the sentence vector is read at each length.
    wide = torch.nn.functional.pad(toks, (0, 4))
    start_w, end_w = model(feats, mask, wide)
  np.testing.assert_allclose(start_w.numpy(), start.numpy(), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(end_w.numpy(), end.numpy(), rtol=1e-6, atol=1e-6)
  p = torch.softmax(start, -1).numpy()
  assert (p[1, 4:] == 0).all() and p[1, :4].sum() == pytest.approx(1.0, abs=1e-6)
  # One word changed inside the second query's length moves its scores; the first's stay.
  toks2 = toks.clone()
  toks2[1, 1] = 9
  with torch.no_grad():
    start2, _ = model(feats, mask, toks2)
  np.testing.assert_allclose(start2[0].numpy(), start[0].numpy(), rtol=1e-6)
  assert not np.allclose(start2[1, :4].numpy(), start[1, :4].numpy())


@pytest.mark.slow
def test_peers_quick_mode_writes_well_formed_json(tmp_path):
  pytest.importorskip("torch")
  from bench.peers import TASKS
  out = tmp_path / "peers.json"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
             CUDA_VISIBLE_DEVICES="")
  r = subprocess.run([sys.executable, "-m", "bench.peers", "--quick", f"--output={out}"],
                     cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
  assert r.returncode == 0, r.stderr[-3000:]
  d = json.loads(out.read_text())
  assert d["figure"] == "peers" and d["quick"] is True
  for system in ("cimha-tf", "ExCL"):
    for task in TASKS:
      rate = d["results"][system][task]["samples_per_s"]
      assert 0 < rate["low"] <= rate["median"] <= rate["high"]
  assert set(d["ratio_ours_over_peer"]) == set(TASKS)
  for r in d["ratio_ours_over_peer_by_round"].values():
    assert 0 < r["low"] <= r["median"] <= r["high"] and r["rounds"] == 2


def test_mixed_length_tasks_time_the_same_examples_on_both_sides():
  # The peer's batches (NumPy) are bucket_cycle's plain batches; ours, length-bucketed, hold
  # pool examples cut to their batch's width, never anything else.
  from bench import common
  from bench.peers import mixed_pool
  s = dict(common.QUICK_SHAPES, cycle_batches=6)
  b = s["batch_size"]
  pool = mixed_pool(s, b)
  assert len(pool) == 6 and all(len(x["video_mask"]) == b for x, _ in pool)
  plain, _ = common.bucket_cycle(s, b, 0, 6)
  for (x, y), (px, py) in zip(pool, plain.as_numpy_iterator()):
    for k in x:
      np.testing.assert_array_equal(x[k], px[k])
    np.testing.assert_array_equal(y["start_probs"], py["start_probs"])
  by_query = {tuple(x["query_tokens"][i]): (x, i) for x, _ in pool for i in range(b)}
  assert len(by_query) == 6 * b  # query tokens identify the examples
  bucketed, widths = common.bucket_cycle(s, b, 4, 6)
  assert max(widths) <= s["max_video_len"] and min(widths) < s["max_video_len"]
  for x, _ in bucketed.as_numpy_iterator():
    for i, q in enumerate(x["query_tokens"]):
      px, j = by_query[tuple(q)]
      w = x["video_mask"].shape[1]
      assert x["video_mask"][i].sum() == px["video_mask"][j].sum() <= w
      np.testing.assert_array_equal(x["video_features"][i], px["video_features"][j, :w])


def test_packed_peer_ignores_padding_the_plain_one_reads():
  torch = pytest.importorskip("torch")
  from bench.peers import build_excl
  feats, mask, toks = _toy_batch(torch, 1)
  noisy = feats.clone()
  noisy[1, 4:] += 5.0  # only padded steps change
  plain = build_excl(dv=6, vocab_size=20, embedding_dim=5, units=3).eval()
  packed = build_excl(dv=6, vocab_size=20, embedding_dim=5, units=3, packed=True).eval()
  packed.load_state_dict(plain.state_dict())
  with torch.no_grad():
    a, b = packed(feats, mask, toks)[0], packed(noisy, mask, toks)[0]
    c, d = plain(feats, mask, toks)[0], plain(noisy, mask, toks)[0]
  np.testing.assert_allclose(a[:, :4].numpy(), b[:, :4].numpy(), rtol=1e-6, atol=1e-6)
  assert not np.allclose(c[1, :4].numpy(), d[1, :4].numpy())  # its backward LSTM reads them
  # A video without padding is read the same either way.
  np.testing.assert_allclose(a[0].numpy(), c[0].numpy(), rtol=1e-5, atol=1e-6)

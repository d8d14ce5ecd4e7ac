"""decode_spans vs brute force (random, ties, length-1 videos, max_span, k > pairs)."""

import numpy as np
import pytest
import tensorflow as tf

from cimha_tf.common import timeline
from cimha_tf.model import decode_spans, spans_to_seconds


def brute_force(ps, pe, n_valid, k, max_span=None, fraction=None):
  """All (i, j), i <= j < n_valid, sorted by (-score, i, j); padded to k with (-1,-1,0)."""
  pairs = []
  if fraction is not None:
    limit = max(1, int(np.ceil(round(fraction * n_valid, 6))))
    max_span = limit if max_span is None else min(max_span, limit)
  for i in range(n_valid):
    for j in range(i, n_valid):
      if max_span is None or j - i + 1 <= max_span:
        pairs.append((-(np.float32(ps[i]) * np.float32(pe[j])), i, j))
  pairs.sort()
  out = [(i, j, -s) for s, i, j in pairs[:k]]
  return out + [(-1, -1, 0.0)] * (k - len(out))


def probs(rng, b, n, lengths):
  mask = (np.arange(n)[None] < np.array(lengths)[:, None]).astype(np.float32)
  p = rng.random((b, n)).astype(np.float32) * mask
  return p / p.sum(1, keepdims=True), mask


def check(ps, pe, mask, k, max_span=None, fraction=None):
  start, end, score = decode_spans(ps, pe, mask, k, max_span=max_span, max_span_fraction=fraction)
  assert start.dtype == tf.int32 and end.dtype == tf.int32 and score.dtype == tf.float32
  assert start.shape == (ps.shape[0], k)
  for b in range(ps.shape[0]):
    ref = brute_force(ps[b], pe[b], int(mask[b].sum()), k, max_span, fraction)
    np.testing.assert_array_equal(start[b].numpy(), [r[0] for r in ref])
    np.testing.assert_array_equal(end[b].numpy(), [r[1] for r in ref])
    np.testing.assert_array_equal(score[b].numpy(), np.array([r[2] for r in ref], np.float32))


@pytest.mark.parametrize("seed", range(4))
def test_random_vs_brute_force(seed):
  rng = np.random.default_rng(seed)
  ps, mask = probs(rng, 5, 9, [9, 5, 1, 2, 7])
  pe, _ = probs(rng, 5, 9, [9, 5, 1, 2, 7])
  for k in (1, 5, 12):
    check(ps, pe, mask, k)
  check(ps, pe, mask, 4, max_span=3)
  for fraction in (0.1, 0.4, 0.5, 1.0):  # per video: ceil(fraction * its valid steps)
    check(ps, pe, mask, 6, fraction=fraction)


def test_max_span_fraction_bounds_each_video_by_its_own_length():
  """Start probabilities halving from the first step, end ones rising to the last valid one: the
  all-pairs argmax is the whole video; bounded at half of each video's valid steps (10 and
  6 here) it is the first 5 and the first 3 steps."""
  n = 10
  mask = np.ones((2, n), np.float32)
  mask[1, 6:] = 0
  ps = 0.5 ** np.arange(n, dtype=np.float32)[None].repeat(2, 0) * mask
  pe = np.arange(1, n + 1, dtype=np.float32)[None].repeat(2, 0) * mask
  ps, pe = ps / ps.sum(1, keepdims=True), pe / pe.sum(1, keepdims=True)
  start, end, _ = decode_spans(ps, pe, mask, 1)
  np.testing.assert_array_equal(np.stack([start[:, 0], end[:, 0]], 1), [[0, 9], [0, 5]])
  start, end, _ = decode_spans(ps, pe, mask, 1, max_span_fraction=0.5)
  np.testing.assert_array_equal(np.stack([start[:, 0], end[:, 0]], 1), [[0, 4], [0, 2]])
  with pytest.raises(ValueError, match="max_span_fraction"):
    decode_spans(ps, pe, mask, 1, max_span_fraction=0.0)


def test_ties_are_deterministic():
  n = 6
  ps = np.full((2, n), 1.0 / n, np.float32)  # every valid pair ties
  pe = ps.copy()
  mask = np.ones((2, n), np.float32)
  mask[1, 4:] = 0
  ps[1], pe[1] = ps[1] * mask[1] * 1.5, pe[1] * mask[1] * 1.5
  check(ps, pe, mask, 21)
  start, end, _ = decode_spans(ps, pe, mask, 3)
  np.testing.assert_array_equal(start.numpy()[0], [0, 0, 0])
  np.testing.assert_array_equal(end.numpy()[0], [0, 1, 2])


def test_length_one_video_and_k_beyond_pairs():
  ps = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
  mask = np.array([[1, 0, 0], [1, 0, 0]], np.float32)
  start, end, score = decode_spans(ps, ps, mask, 12)  # 12 > 3*3 flat entries
  np.testing.assert_array_equal(start.numpy()[:, 0], [0, 0])
  np.testing.assert_array_equal(score.numpy()[:, 0], [1.0, 1.0])
  assert np.all(start.numpy()[:, 1:] == -1) and np.all(end.numpy()[:, 1:] == -1)
  assert np.all(score.numpy()[:, 1:] == 0.0)
  one = np.ones((1, 1), np.float32)
  check(one, one, one, 3)


def test_pairs_touching_padding_or_reversed_never_returned():
  rng = np.random.default_rng(7)
  ps, mask = probs(rng, 3, 8, [3, 8, 5])
  pe, _ = probs(rng, 3, 8, [3, 8, 5])
  start, end, score = decode_spans(ps, pe, mask, 36)
  s, e, sc = start.numpy(), end.numpy(), score.numpy()
  found = s >= 0
  assert np.all(s[found] <= e[found])
  assert np.all(e < mask.sum(1, keepdims=True))
  assert found.sum(1).tolist() == [6, 36, 15]
  assert np.all(np.diff(sc, axis=1) <= 0)


def test_works_in_tf_function_with_dynamic_shapes():
  fn = tf.function(lambda a, b, m: decode_spans(a, b, m, 4),
                   input_signature=[tf.TensorSpec([None, None])] * 3)
  rng = np.random.default_rng(8)
  for n in (1, 4, 10):
    ps, mask = probs(rng, 2, n, [n, max(1, n - 2)])
    pe, _ = probs(rng, 2, n, [n, max(1, n - 2)])
    got = fn(ps, pe, mask)
    ref = decode_spans(ps, pe, mask, 4)
    for g, r in zip(got, ref):
      np.testing.assert_array_equal(g.numpy(), r.numpy())


def test_spans_to_seconds_matches_timeline():
  start = np.array([[0, 3], [1, -1]], np.int32)
  end = np.array([[2, 3], [1, -1]], np.int32)
  duration = np.array([30.0, 12.5], np.float32)
  steps = np.array([10, 4], np.int32)
  s, e = spans_to_seconds(start, end, duration, steps)
  for b in range(2):
    for k in range(2):
      rs, re = timeline.steps_to_seconds(int(start[b, k]), int(end[b, k]),
                                         float(duration[b]), int(steps[b]))
      assert s.numpy()[b, k] == pytest.approx(rs, rel=1e-6)
      assert e.numpy()[b, k] == pytest.approx(re, rel=1e-6)
  np.testing.assert_allclose(s.numpy()[0], [0.0, 9.0], rtol=1e-6)
  np.testing.assert_allclose(e.numpy()[0], [9.0, 12.0], rtol=1e-6)


def test_bad_top_k():
  with pytest.raises(ValueError, match="top_k=0"):
    decode_spans(np.ones((1, 2)), np.ones((1, 2)), np.ones((1, 2)), 0)


def test_max_span_from_train_is_the_longest_training_moment_and_is_saved_resolved(tmp_path):
  """eval.max_span_from_train: the bound is the training split's longest moment as a
  fraction of its video (rounded up to 0.01), computed here from the ground-truth file;
  once resolved the config carries the number (what config.json saves) and evaluation's
  windows obey it."""
  import json
  from cimha_tf.evaluation import runner
  from tests import helpers
  prepared = helpers.write_tiny_prepared(str(tmp_path))
  with open(tmp_path / "prepared" / "annotations" / "train.jsonl") as f:
    rows = [json.loads(line) for line in f]
  longest = max((r["relevant_windows"][0][1] - r["relevant_windows"][0][0]) / r["duration"]
                for r in rows)
  c = helpers.tiny_config(prepared)
  assert runner.resolve_max_span(c) is None  # default: every pair, the paper's decoding
  c.eval.max_span_from_train = True
  fraction = runner.resolve_max_span(c)
  assert longest <= fraction < longest + 0.01 and fraction < 1.0
  assert (c.eval.max_span_fraction, c.eval.max_span_from_train) == (fraction, False)
  import keras
  from cimha_tf.data import pipeline
  from cimha_tf.model import build_model
  keras.utils.set_random_seed(0)
  model = build_model(c.model, video_dim=8, vocab_size=pipeline.read_metadata(prepared)["vocab_size"])
  _, bounded = runner.evaluate_split(model, prepared, "test", 4, 5, progress=False,
                                     max_span_fraction=fraction)
  lengths = {r["qid"]: len(r["pred_saliency_scores"]) for r in bounded}
  for r in bounded:
    steps = lengths[r["qid"]]
    d = {g["qid"]: g["duration"] for g in runner.read_ground_truth(prepared, "test")}[r["qid"]]
    for s, e, _ in r["pred_relevant_windows"]:
      assert (e - s) / d * steps <= np.ceil(fraction * steps) + 1e-6

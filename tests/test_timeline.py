"""The step/second mapping shared by labels and decoding."""

import numpy as np
import pytest

from cimha_tf.common import timeline


@pytest.mark.parametrize("n,duration", [(1, 3.0), (7, 30.0), (128, 123.4), (33, 0.5)])
def test_step_windows_round_trip(n, duration):
  rng = np.random.default_rng(n)
  for _ in range(50):
    i, j = np.sort(rng.integers(0, n, size=2))
    s, e = timeline.steps_to_seconds(i, j, duration, n)
    assert timeline.seconds_to_steps(s, e, duration, n) == (i, j)


def test_windows_stay_inside_the_video_in_float32():
  """A window ending on the last step ends at exactly the duration, in float32 as served
  (it was 1 ulp past it for ~4% of (duration, n) pairs), and every window is inside
  [0, duration] and within float32 rounding of the interval definition."""
  import tensorflow as tf
  from cimha_tf.model import spans_to_seconds
  rng = np.random.default_rng(0)
  durations = rng.uniform(0.5, 300, 2000).astype(np.float32)
  n = rng.integers(1, 129, 2000).astype(np.int32)
  start = (rng.uniform(size=2000) * n).astype(np.int32)
  other = np.maximum(start, (rng.uniform(size=2000) * n).astype(np.int32))
  end = np.where(rng.uniform(size=2000) < 0.5, n - 1, other)
  s, e = spans_to_seconds(tf.constant(start[:, None]), tf.constant(end[:, None]), durations, n)
  s, e = np.asarray(s)[:, 0], np.asarray(e)[:, 0]
  last = end == n - 1
  assert last.sum() > 500 and np.all(e[last] == durations[last])
  assert np.all(0 <= s) and np.all(s <= e) and np.all(e <= durations)
  step = durations.astype(np.float64) / n
  np.testing.assert_allclose(s, start * step, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(e, (end + 1) * step, rtol=1e-5, atol=1e-4)


def test_matches_interval_definition():
  # Independent reading of docs/paper.md: step i covers [i*T/n, (i+1)*T/n]; a window covers
  # the steps whose interval it overlaps with positive length.
  rng = np.random.default_rng(0)
  n, duration = 20, 40.0
  for _ in range(200):
    s, e = np.sort(rng.uniform(0, duration, size=2))
    if e - s < 1e-3:
      continue
    lo = np.arange(n) * duration / n
    hi = lo + duration / n
    overlap = np.minimum(hi, e) - np.maximum(lo, s)
    steps = np.nonzero(overlap > 1e-9)[0]
    assert timeline.seconds_to_steps(s, e, duration, n) == (steps[0], steps[-1])


def test_zero_length_and_edges():
  assert timeline.seconds_to_steps(5.0, 5.0, 10.0, 10) == (5, 5)
  assert timeline.seconds_to_steps(10.0, 10.0, 10.0, 10) == (9, 9)  # at the very end
  assert timeline.seconds_to_steps(0.0, 10.0, 10.0, 10) == (0, 9)


def test_inside_mask():
  labels = timeline.inside_mask(2, 4, 6, 8)
  np.testing.assert_array_equal(labels, [0, 0, 1, 1, 1, 0, -1, -1])
  assert labels.dtype == np.float32

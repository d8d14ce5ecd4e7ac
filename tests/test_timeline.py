"""The step/second mapping shared by labels and decoding."""

import numpy as np
import pytest

from cimha_tf import timeline


@pytest.mark.parametrize("n,duration", [(1, 3.0), (7, 30.0), (128, 123.4), (33, 0.5)])
def test_step_windows_round_trip(n, duration):
  rng = np.random.default_rng(n)
  for _ in range(50):
    i, j = np.sort(rng.integers(0, n, size=2))
    s, e = timeline.steps_to_seconds(i, j, duration, n)
    assert timeline.seconds_to_steps(s, e, duration, n) == (i, j)


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

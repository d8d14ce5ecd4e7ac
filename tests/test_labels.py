"""Labels on the step grid: seconds -> steps -> seconds round trip, windows, union rule."""

import numpy as np
import pytest

from cimha_tf.common import timeline
from cimha_tf.data import labels


def _brute_steps(s, e, duration, n):
  """Steps whose interval [i*T/n, (i+1)*T/n) overlaps [s, e] by more than rounding."""
  step = duration / n
  hit = [i for i in range(n) if min(e, (i + 1) * step) - max(s, i * step) > 1e-9]
  if not hit:  # zero-length window: the step containing s
    i = min(int(s // step), n - 1)
    return i, i
  return hit[0], hit[-1]


def test_round_trip_on_boundaries():
  rng = np.random.default_rng(1)
  for _ in range(200):
    n = int(rng.integers(1, 129))
    duration = float(rng.uniform(1.0, 300.0))
    i = int(rng.integers(0, n))
    j = int(rng.integers(i, n))
    s, e = timeline.steps_to_seconds(i, j, duration, n)
    lab = labels.query_labels([(s, e)], duration, n, 128)
    assert (lab.start_step, lab.end_step) == (i, j)
    np.testing.assert_allclose(timeline.steps_to_seconds(lab.start_step, lab.end_step, duration, n), (s, e))


def test_random_windows_match_brute_force():
  rng = np.random.default_rng(2)
  for _ in range(300):
    n = int(rng.integers(1, 40))
    duration = float(rng.uniform(1.0, 100.0))
    s, e = sorted(rng.uniform(0, duration, size=2))
    lab = labels.query_labels([(s, e)], duration, n, 40)
    assert (lab.start_step, lab.end_step) == _brute_steps(s, e, duration, n)
    # the decoded window always contains the annotated one
    ds, de = timeline.steps_to_seconds(lab.start_step, lab.end_step, duration, n)
    assert ds <= s + 1e-9 and de >= e - 1e-9


def test_inside_and_padding():
  lab = labels.query_labels([(2.0, 4.0)], 10.0, 5, 8)  # steps of 2 s: step 1 only
  assert (lab.start_step, lab.end_step) == (1, 1)
  np.testing.assert_array_equal(lab.inside, [0, 1, 0, 0, 0, -1, -1, -1])
  lab = labels.query_labels([(3.0, 3.0)], 10.0, 5, 5)  # zero-length: one step
  assert (lab.start_step, lab.end_step) == (1, 1)


def test_multiple_windows_first_for_start_end_union_for_inside():
  lab = labels.query_labels([(6.0, 8.0), (0.0, 2.0), (1.0, 3.9)], 10.0, 5, 6)
  assert (lab.start_step, lab.end_step) == (3, 3)
  np.testing.assert_array_equal(lab.window_steps, [[3, 3], [0, 0], [0, 1]])
  np.testing.assert_array_equal(lab.inside, [1, 1, 0, 1, 0, -1])


def test_bad_input():
  with pytest.raises(ValueError, match="at least one"):
    labels.query_labels([], 10.0, 5, 8)
  with pytest.raises(ValueError, match="num_steps"):
    labels.query_labels([(0, 1)], 10.0, 9, 8)
  with pytest.raises(ValueError, match="duration"):
    labels.query_labels([(0, 1)], 0.0, 5, 8)

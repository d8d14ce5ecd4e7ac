"""pool_to_max_len against an independent per-bin loop."""

import numpy as np
import pytest

from cimha_tf.data.pooling import pool_to_max_len


def _reference(x, n):
  t = len(x)
  out = []
  for k in range(n):
    lo, hi = int(np.floor(k * t / n)), int(np.floor((k + 1) * t / n))
    out.append(np.mean(x[lo:hi], axis=0, dtype=np.float64))
  return np.array(out, np.float32)


@pytest.mark.parametrize("t,n", [(129, 128), (256, 128), (1000, 128), (7, 3), (10, 4), (5, 1)])
def test_pooling_matches_reference(t, n):
  x = np.random.default_rng(t).normal(size=(t, 6)).astype(np.float32)
  got = pool_to_max_len(x, n)
  assert got.shape == (n, 6) and got.dtype == np.float32
  np.testing.assert_allclose(got, _reference(x, n), rtol=1e-6, atol=1e-6)


def test_exact_bins_by_hand():
  x = np.arange(10, dtype=np.float32)[:, None]  # bins of 10 rows into 4: [0,2) [2,5) [5,7) [7,10)
  np.testing.assert_allclose(pool_to_max_len(x, 4)[:, 0], [0.5, 3.0, 5.5, 8.0])


@pytest.mark.parametrize("t", [1, 5, 128])
def test_short_kept(t):
  x = np.random.default_rng(0).normal(size=(t, 3))
  got = pool_to_max_len(x, 128)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, x.astype(np.float32))


def test_bad_input():
  with pytest.raises(ValueError, match=r"\(T, D\)"):
    pool_to_max_len(np.zeros(5), 4)
  with pytest.raises(ValueError, match="max_len"):
    pool_to_max_len(np.zeros((5, 2)), 0)

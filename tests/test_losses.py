"""Losses vs numpy, and compile_model wiring (per-output losses, weights, variants)."""

import numpy as np
import pytest

from cimha_tf import model as M


def test_span_nll_vs_numpy():
  rng = np.random.default_rng(0)
  p = rng.random((4, 6)).astype(np.float32)
  p /= p.sum(1, keepdims=True)
  p[3, 2] = 0.0  # a zero probability is clipped, not inf
  y = np.array([0, 5, 2, 2], np.int32)
  got = np.asarray(M.span_nll(y, p))
  ref = -np.log(np.maximum(p[np.arange(4), y], 1e-7))
  np.testing.assert_allclose(got, ref, rtol=1e-6)
  assert np.isfinite(got).all()
  np.testing.assert_allclose(np.asarray(M.span_nll(y[:, None], p)), ref, rtol=1e-6)


def test_masked_bce_ignores_padding():
  rng = np.random.default_rng(1)
  p = rng.uniform(0.05, 0.95, (3, 5)).astype(np.float32)
  y = np.array([[1, 1, 0, 0, -1], [0, 1, 0, -1, -1], [1, 0, 1, 0, 1]], np.float32)
  got = np.asarray(M.masked_bce(y, p))
  for b in range(3):
    v = y[b] >= 0
    ref = -np.mean(y[b, v] * np.log(p[b, v]) + (1 - y[b, v]) * np.log(1 - p[b, v]))
    assert got[b] == pytest.approx(ref, rel=1e-5)
  # Changing predictions at ignored steps changes nothing.
  q = p.copy()
  q[y < 0] = 0.0
  np.testing.assert_array_equal(np.asarray(M.masked_bce(y, q)), got)


@pytest.mark.parametrize("variant", ["cimha", "cimha_wo_ms", "mha"])
def test_losses_and_weights_per_variant(variant):
  c = M.default_config()
  c.variant = variant
  c.segment_loss_weight = 0.3
  losses, weights = M.losses.losses_and_weights(c)
  assert losses["start_probs"] is M.span_nll and losses["end_probs"] is M.span_nll
  if variant == "cimha":
    assert losses["inside_probs"] is M.masked_bce and weights["inside_probs"] == 0.3
  else:
    assert "inside_probs" not in losses and "inside_probs" not in weights

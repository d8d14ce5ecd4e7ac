"""cimha_tf.model.attention.MultiHeadAttention (model.private_fast_path) computes what
keras.layers.MultiHeadAttention computes (outputs, attention scores, gradients, dropout
draws) from the same variables."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cimha_tf.model.attention import MultiHeadAttention
from cimha_tf.model.dropout import Dropout


class _KerasWithOurDropout(keras.layers.MultiHeadAttention):
  """Keras's MHA, unchanged but for the dropout layer, which ours also uses: with the same
  seed both then drop the same entries, and everything else compared is Keras's."""

  def _build_attention(self, rank):
    super()._build_attention(rank)
    self._dropout_layer = Dropout(self._dropout, seed=self.seed)


def _pair(dropout, seed=7):
  ref = _KerasWithOurDropout(2, 3, dropout=dropout, seed=seed, name="mha")
  new = MultiHeadAttention(2, 3, dropout=dropout, seed=seed, name="mha")
  return ref, new


def _build(ref, new, q, v):
  ref.build(q.shape, v.shape)
  new.build(q.shape, v.shape)
  assert type(new._dropout_layer) is Dropout


def _inputs():
  rng = np.random.default_rng(0)
  q = tf.constant(rng.standard_normal((3, 5, 6)).astype(np.float32))
  v = tf.constant(rng.standard_normal((3, 7, 6)).astype(np.float32))
  valid = np.arange(7)[None] < np.array([[7], [2], [0]])  # the last row sees no key at all
  mask = tf.constant(np.broadcast_to(valid[:, None, :], (3, 5, 7)))
  return q, v, mask


@pytest.mark.parametrize("dropout,training", [(0.0, False), (0.3, False), (0.3, True)])
def test_same_outputs_scores_and_gradients_as_keras(dropout, training):
  q, v, mask = _inputs()
  ref, new = _pair(dropout)
  _build(ref, new, q, v)
  # Same variables: names and shapes, so checkpoints load either way.
  assert [(w.path, w.shape) for w in new.weights] == [(w.path, w.shape) for w in ref.weights]
  new.set_weights([w + 0.1 * np.random.default_rng(i).standard_normal(w.shape)
                   for i, w in enumerate(ref.get_weights())])
  ref.set_weights(new.get_weights())
  results = []
  for layer in (ref, new):
    with tf.GradientTape() as tape:
      tape.watch([q, v])
      out, scores = layer(q, v, attention_mask=mask, training=training,
                          return_attention_scores=True)
      loss = tf.reduce_sum(out * tf.sin(out))
    grads = tape.gradient(loss, [q, v] + layer.trainable_weights)
    results.append((out.numpy(), scores.numpy(), [g.numpy() for g in grads]))
  (out_r, sc_r, g_r), (out_n, sc_n, g_n) = results
  assert sc_n.shape == (3, 2, 5, 7)  # (B, heads, T, S), as Keras returns them
  np.testing.assert_allclose(out_n, out_r, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(sc_n, sc_r, rtol=1e-5, atol=1e-7)
  assert (sc_n[1, :, :, 2:] == 0).all()  # masked keys get no weight
  for a, b in zip(g_n, g_r):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  if training:  # dropout really dropped, and the same entries in both
    assert (out_n != layer(q, v, attention_mask=mask, training=False).numpy()).any()


@pytest.mark.parametrize("cls", [keras.layers.MultiHeadAttention, MultiHeadAttention])
def test_model_key_mask_broadcasts_like_the_full_mask(cls):
  """masking.key_mask is (B, 1, Tk); the attention (either model.private_fast_path) gives
  what the (B, Tq, Tk) mask gives."""
  from cimha_tf.model import masking
  q, v, full = _inputs()
  valid = tf.cast(full[:, 0, :], tf.float32)
  key_mask = masking.key_mask(valid)
  assert tuple(key_mask.shape) == (3, 1, 7)
  layer = cls(2, 3)
  got, got_scores = layer(q, v, attention_mask=key_mask, return_attention_scores=True)
  want, want_scores = layer(q, v, attention_mask=full, return_attention_scores=True)
  np.testing.assert_array_equal(got.numpy(), want.numpy())
  np.testing.assert_array_equal(got_scores.numpy(), want_scores.numpy())

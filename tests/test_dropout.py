"""cimha_tf.model.dropout.Dropout: Keras's Dropout with a 16-bit mask on TensorFlow."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cimha_tf.model.dropout import Dropout, threshold


def _x(shape, seed=0):
  # No zeros, so a zero output always means "dropped".
  x = np.random.default_rng(seed).uniform(0.5, 2.0, shape).astype(np.float32)
  return tf.constant(x * np.where(np.arange(x.size).reshape(shape) % 2, 1, -1).astype(np.float32))


def _sd(p, n):
  return np.sqrt(p * (1 - p) / n)


def test_identity_when_not_training():
  x = _x((4, 9, 6))
  layer = Dropout(0.3, seed=1)
  np.testing.assert_array_equal(layer(x), x)
  np.testing.assert_array_equal(layer(x, training=False), x)


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_drop_rate_and_scale(rate):
  shape = (50, 64, 63)  # odd element count: the last uint32 serves one element
  x = _x(shape)
  y = Dropout(rate, seed=2)(x, training=True).numpy()
  t = threshold(rate)
  p = t / 65536
  assert abs(p - rate) <= 0.5 / 65536
  dropped = y == 0
  assert abs(dropped.mean() - p) < 5 * _sd(p, y.size)
  # Kept entries scaled by exactly 1 / (1 - p), in float32.
  scale = np.float32(1.0 / (1.0 - p))
  np.testing.assert_array_equal(y[~dropped], x.numpy()[~dropped] * scale)


def test_unbiased_and_elements_sharing_a_word_are_independent():
  rate, n = 0.3, 400_000
  y = Dropout(rate, seed=3)(tf.ones((n,)), training=True).numpy()
  p = threshold(rate) / 65536
  sd_mean = np.sqrt(p / (1 - p) / n)  # sd of the mean of Bernoulli(1-p) / (1-p)
  assert abs(y.mean() - 1.0) < 5 * sd_mean
  # Elements 2k and 2k+1 take their bits from one uint32: both dropped at rate p * p.
  d = (y == 0).reshape(-1, 2)
  both = (d[:, 0] & d[:, 1]).mean()
  assert abs(both - p * p) < 5 * _sd(p * p, n // 2)
  # ... and consecutive words are independent too.
  pairs = d[:-1, 1] & d[1:, 0]
  assert abs(pairs.mean() - p * p) < 5 * _sd(p * p, pairs.size)


def test_new_mask_every_call_same_masks_for_the_same_seed():
  x = _x((8, 16, 32))
  a, b = Dropout(0.3, seed=4), Dropout(0.3, seed=4)
  a1, a2 = a(x, training=True).numpy(), a(x, training=True).numpy()
  b1, b2 = b(x, training=True).numpy(), b(x, training=True).numpy()
  assert ((a1 == 0) != (a2 == 0)).mean() > 0.3  # independent masks differ on ~42%
  np.testing.assert_array_equal(a1, b1)
  np.testing.assert_array_equal(a2, b2)
  c1 = Dropout(0.3, seed=5)(x, training=True).numpy()
  assert ((a1 == 0) != (c1 == 0)).any()


def test_every_element_can_be_dropped():
  # The odd tail: the last element's bits are the first half of the last uint32.
  layer = Dropout(0.3, seed=6)
  x = _x((3, 5, 7))
  ever = np.zeros(x.shape, bool)
  for _ in range(60):  # P(an element is never dropped) = 0.7^60 ~ 5e-10
    ever |= layer(x, training=True).numpy() == 0
  assert ever.all()


def test_gradient_is_the_mask():
  x = _x((6, 10, 12))
  w = _x((6, 10, 12), seed=1)
  layer = Dropout(0.3, seed=7)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = layer(x, training=True)
    loss = tf.reduce_sum(y * w)
  g = tape.gradient(loss, x).numpy()
  scale = np.float32(1.0 / (1.0 - threshold(0.3) / 65536))
  kept = y.numpy() != 0
  np.testing.assert_array_equal(g[kept], w.numpy()[kept] * scale)
  assert (g[~kept] == 0).all() and (~kept).any()


@pytest.mark.parametrize("rate,noise_shape", [(1e-6, None), (0.3, (8, 1, 32))])
def test_keras_path_for_tiny_rates_and_noise_shape(rate, noise_shape):
  # A rate that rounds to 0 in 16 bits, or a noise_shape: Keras's own draws exactly.
  x = _x((8, 16, 32))
  ours = Dropout(rate, noise_shape=noise_shape, seed=8)(x, training=True)
  ref = keras.layers.Dropout(rate, noise_shape=noise_shape, seed=8)(x, training=True)
  np.testing.assert_array_equal(ours, ref)


def test_other_backends_take_keras_path(monkeypatch):
  # Only the TensorFlow path is ours; elsewhere (e.g. JAX on the GPU machine) Keras's own.
  x = _x((8, 16, 32))
  monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
  ours = Dropout(0.3, seed=8)(x, training=True)
  ref = keras.layers.Dropout(0.3, seed=8)(x, training=True)
  np.testing.assert_array_equal(ours, ref)


def test_works_inside_tf_function_with_dynamic_shapes():
  layer = Dropout(0.3, seed=9)
  f = tf.function(lambda x: layer(x, training=True),
                  input_signature=[tf.TensorSpec([None, None, 4], tf.float32)])
  for shape in [(2, 3, 4), (5, 7, 4)]:  # 24 and 140 elements; one trace
    y = f(_x(shape)).numpy()
    assert y.shape == shape and (y == 0).any() and (y != 0).any()


def test_serializes_as_itself():
  layer = Dropout(0.25, seed=3, name="d")
  back = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
  assert type(back) is Dropout and back.rate == 0.25 and back.seed == 3

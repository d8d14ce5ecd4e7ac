"""Keras fit under a strategy opens exactly one iterator on the training data once the
model went through spec_build.adapt (Keras alone opens a throwaway one first, whose
read-ahead made the training order depend on thread timing)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cimha_tf.training import spec_build


def _counted(opened):
  """An endless (x, y) dataset that appends to `opened` each time an iterator is opened."""
  x = np.arange(24, dtype=np.float32).reshape(12, 2)
  base = tf.data.Dataset.from_tensor_slices((x, x.sum(1, keepdims=True))).batch(4)

  def on_open(_):
    def note():
      opened.append(1)
      return np.int64(-1)
    return base.repeat().take(tf.py_function(note, [], tf.int64))  # take(-1): all of it
  return tf.data.Dataset.range(1).flat_map(on_open)


def _model(adapt):
  with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
  return spec_build.adapt(model) if adapt else model


def test_fit_opens_one_iterator_once_adapted_and_trains_the_same():
  # Unadapted, Keras opens a throwaway iterator first (if an upgrade drops it, spec_build
  # may be unneeded). The data has no shuffle, so both train on the same batches.
  weights, opened = {}, {}
  for adapt in (False, True):
    opened[adapt] = []
    model = _model(adapt)
    if adapt:
      model.set_weights(start)
    else:
      start = model.get_weights()
    model.fit(_counted(opened[adapt]), epochs=2, steps_per_epoch=2, shuffle=False, verbose=0)
    weights[adapt] = model.get_weights()
  assert (len(opened[False]), len(opened[True])) == (2, 1)
  assert not np.allclose(weights[True][0], start[0])  # it trained
  for a, b in zip(weights[False], weights[True]):
    np.testing.assert_array_equal(a, b)


def test_adapted_model_builds_from_arrays_and_predicts_as_keras():
  x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
  model = _model(True)
  out = model.predict(x, verbose=0)
  kernel, bias = model.get_weights()
  np.testing.assert_allclose(out, x @ kernel + bias, rtol=1e-6)
  loss = model.evaluate(x, np.zeros((5, 1), np.float32), verbose=0)
  np.testing.assert_allclose(loss, np.mean((x @ kernel + bias) ** 2), rtol=1e-5)


def test_adapt_refuses_an_object_without_the_keras_hooks():
  with pytest.raises(RuntimeError, match="spec_build.py needs updating"):
    spec_build.adapt(object())

"""Dropout: keras.layers.Dropout, or on request one whose mask costs half the random bits.

dropout_layer() gives Keras's public layer unless model.private_fast_path is set. The fast
path, Dropout below, is Keras's Dropout (constructor, config, seed generator, identity at
inference) whose TensorFlow training mask takes 16 random bits per element (one Philox
uint32 serves two) compared with an integer threshold, applied as one multiply, where
Keras draws a float32 uniform and selects. The drop probability is round(rate * 65536) /
65536 (0.1 -> 0.100006) and kept values are scaled by exactly its inverse, so the output
stays unbiased. A dropped inf or NaN gives NaN (Keras's select gives 0); the model's
activations are finite, since its inputs are validated. Other backends, noise_shape, and
rates that round to 0 or 1 in 16 bits take Keras's own path. Speed: docs/benchmarks.md.
"""

import keras

BITS = 16
_LEVELS = 1 << BITS


def dropout_layer(rate, private_fast_path=False, **kwargs):
  """A dropout layer.

  Args:
    rate: fraction of the inputs to drop in training.
    private_fast_path: False gives keras.layers.Dropout; True this module's Dropout.
    **kwargs: the layer's other arguments (seed, noise_shape, name, dtype).

  Returns:
    An unbuilt layer with keras.layers.Dropout's call signature.
  """
  return (Dropout if private_fast_path else keras.layers.Dropout)(rate, **kwargs)


def threshold(rate):
  """Integer threshold t: an element is dropped when its 16 random bits are < t.

  Args:
    rate: drop probability in [0, 1].
  """
  return int(round(float(rate) * _LEVELS))


@keras.saving.register_keras_serializable(package="cimha_tf")
class Dropout(keras.layers.Dropout):
  """keras.layers.Dropout with a 16-bit mask on TensorFlow (see the module docstring).

  Args:
    Those of keras.layers.Dropout (rate, noise_shape, seed).

  Call arguments:
    inputs: a float tensor of any shape.
    training: drop only when True.
  """

  def call(self, inputs, training=False):
    t = threshold(self.rate)
    if (not training or self.noise_shape is not None or not 0 < t < _LEVELS
        or keras.backend.backend() != "tensorflow"):
      return super().call(inputs, training=training)
    return inputs * _mask16(inputs, t, self.seed_generator)


def _mask16(inputs, t, seed_generator):
  import tensorflow as tf
  seed = seed_generator.next()
  # As Keras's TF backend: stateless ops want an int32 seed (XLA).
  seed = tf.cast(tf.math.floormod(tf.cast(seed, "int64"), 2**31 - 2), "int32")
  n = tf.size(inputs)
  words = tf.random.stateless_uniform(tf.reshape((n + 1) // 2, [1]), seed, minval=None,
                                      maxval=None, dtype=tf.uint32)
  bits = tf.reshape(tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:n], tf.shape(inputs))
  keep = 1.0 - t / _LEVELS
  return tf.where(bits >= t, tf.constant(1.0 / keep, inputs.dtype),
                  tf.constant(0.0, inputs.dtype))

"""Dropout whose training mask costs half the random bits on TensorFlow.

keras.layers.Dropout on TensorFlow draws one float32 uniform (32 random bits) per element
and applies it as a select, whose gradient is another select. Here each element gets 16
random bits (one Philox uint32 serves two elements) compared with an integer threshold,
and the mask is a float tensor of 0 and 1/keep that multiplies the input, so the gradient
is one multiply. The drop probability is round(rate * 65536) / 65536 (0.1 -> 0.100006) and
the kept values are scaled by exactly its inverse, so the output stays unbiased. A dropped
inf or NaN gives NaN (Keras's select gives 0); the model's activations are finite, since
its inputs are validated. `bench/dropout.py` times it against Keras's (docs/benchmarks.md):
1.25-1.36x per dropout, 1.07x the whole training step at the paper's shapes.

Everything else is Keras's Dropout: the constructor, config, seed generator (so distributed
training and set_random_seed behave alike), inference as identity. Other backends,
noise_shape, and rates that round to 0 or 1 in 16 bits take Keras's own path.
"""

import keras

BITS = 16
_LEVELS = 1 << BITS


def threshold(rate):
  """Integer threshold t: an element is dropped when its 16 random bits are < t."""
  return int(round(float(rate) * _LEVELS))


@keras.saving.register_keras_serializable(package="cimha_tf")
class Dropout(keras.layers.Dropout):
  """keras.layers.Dropout with a 16-bit mask on TensorFlow (see the module docstring)."""

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

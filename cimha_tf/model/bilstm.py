"""Bi-LSTM with exact masking (eqs 2, 10, 11).

The backward direction reads each sequence reversed WITHIN its valid length (gather
t -> len-1-t for t < len, identity on padding), and its outputs are gathered back the
same way; the forward direction reaches padding only after every valid step. So padded
steps can never change a valid output, no Keras mask is needed (masks force the slow LSTM
path), and padded outputs are zeroed.
"""

import keras
from keras import ops

from cimha_tf.model import masking
from cimha_tf.model.lstm import make_lstm


def reverse_within_length(x, length):
  """x (B, T, D) with each row's first length[b] steps reversed; padding left in place.

  Args:
    x: (B, T, D).
    length: (B,) int valid steps per row.
  """
  if keras.backend.backend() == "tensorflow":
    # One kernel that is its own gradient; the gather below costs a scatter-add backward
    # (~10% of a CPU training step, docs/benchmarks.md). TFLite: built-in REVERSE_SEQUENCE.
    import tensorflow as tf
    return tf.reverse_sequence(x, ops.cast(length, "int32"), seq_axis=1, batch_axis=0)
  t = ops.arange(ops.shape(x)[1], dtype="int32")[None, :]
  n = ops.cast(length, "int32")[:, None]
  idx = ops.where(t < n, n - 1 - t, t)
  return ops.take_along_axis(x, idx[:, :, None], axis=1)


def bidirectional(x, valid, forward, backward):
  """[forward(x), backward(x within-length reversed) reversed back], 0 on padding.

  Args:
    x: (B, T, Din).
    valid: (B, T), 1 on valid steps (first), 0 on padding.
    forward, backward: (B, T, Din) -> (B, T, units) callables (LSTM directions).

  Returns:
    (B, T, 2 * units).
  """
  n = masking.lengths(valid)
  fw = forward(x)
  bw = reverse_within_length(backward(reverse_within_length(x, n)), n)
  return masking.zero_padded(ops.concatenate([fw, bw], axis=-1), valid)


@keras.saving.register_keras_serializable(package="cimha_tf")
class BiLSTM(keras.layers.Layer):
  """(B, T, Din), valid (B, T) -> (B, T, 2*units): [forward, backward], 0 on padding.

  Args:
    units: units per direction.
    implementation: "keras", "unrolled" or "scan" (lstm.py).

  Call arguments:
    x: (B, T, Din).
    valid: (B, T), 1 on valid steps (first), 0 on padding.

  Returns:
    (B, T, 2 * units).
  """

  def __init__(self, units, implementation="keras", **kwargs):
    super().__init__(**kwargs)
    self.units = units
    self.implementation = implementation
    self.forward_lstm = make_lstm(units, implementation, "forward")
    self.backward_lstm = make_lstm(units, implementation, "backward")

  def build(self, x_shape, valid_shape=None):
    self.forward_lstm.build(x_shape)
    self.backward_lstm.build(x_shape)

  def call(self, x, valid):
    return bidirectional(x, valid, self.forward_lstm, self.backward_lstm)

  def compute_output_shape(self, x_shape, valid_shape=None):
    return tuple(x_shape[:-1]) + (2 * self.units,)

  def get_config(self):
    return {**super().get_config(), "units": self.units,
            "implementation": self.implementation}

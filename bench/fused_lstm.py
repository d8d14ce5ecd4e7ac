"""Prototype (for cimha_tf/model/lstm.py): one LSTM direction on TF's fused BlockLSTM kernel.

Keras 3's LSTM on CPU runs a tf.while_loop of ~15 small ops per step, forward and
backward; "unrolled" emits 128 x ~12 ops per direction. BlockLSTM runs the whole sequence
(and its gradient) inside one kernel. Drop-in for lstm.make_lstm's layers: same interface
as UnrolledLSTM ((B, T, Din) -> (B, T, units), no mask: valid steps first) and the same
weights [kernel (Din, 4u), recurrent_kernel (u, 4u), bias (4u,)] in Keras's (i, f, c, o)
gate order, permuted to the kernel's (i, c, f, o) inside call, so set_weights moves
weights between all three implementations and outputs/gradients agree to float rounding
(tests/test_bench_quick.py checks it against keras.layers.LSTM).

BlockLSTM (V1), not V2: TF 2.21 registers V1's gradient for V2 (python/ops/rnn_grad.py),
which reads V2's (i, f, c, o) gates as (i, c, f, o): wrong gradients (measured here).
No XLA kernel (jit_compile=True fails), no TFLite builtin (Flex only): for TFLite export
switch to "unrolled"/"keras" with with_lstm_implementation, weights are the same.
"""

import keras
import tensorflow as tf


def _to_icfo(x, axis):
  i, f, c, o = tf.split(x, 4, axis=axis)
  return tf.concat([i, c, f, o], axis=axis)


def _bias_init(units):
  def init(shape, dtype=None):  # Keras's unit_forget_bias=True
    return tf.concat([tf.zeros([units]), tf.ones([units]), tf.zeros([2 * units])], 0)
  return init


class FusedLSTM(keras.layers.Layer):
  """(B, T, Din) -> (B, T, units); math and weights of keras.layers.LSTM."""

  def __init__(self, units, **kwargs):
    super().__init__(**kwargs)
    self.units = units

  def build(self, input_shape):
    u = self.units
    self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], 4 * u),
                                  initializer="glorot_uniform")
    self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(u, 4 * u),
                                            initializer="orthogonal")
    self.bias = self.add_weight(name="bias", shape=(4 * u,), initializer=_bias_init(u))

  def call(self, x):
    u = self.units
    x_tm = tf.transpose(x, [1, 0, 2])
    zeros = tf.zeros([tf.shape(x_tm)[1], u], x_tm.dtype)
    peephole = tf.zeros([u], x_tm.dtype)
    out = tf.raw_ops.BlockLSTM(
        seq_len_max=tf.cast(tf.shape(x_tm)[0], tf.int64), x=x_tm, cs_prev=zeros,
        h_prev=zeros, w=_to_icfo(tf.concat([self.kernel, self.recurrent_kernel], 0), 1),
        wci=peephole, wcf=peephole, wco=peephole, b=_to_icfo(self.bias, 0),
        forget_bias=0.0, cell_clip=-1.0, use_peephole=False)
    return tf.transpose(out[6], [1, 0, 2])  # h for every step

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.units,)

  def get_config(self):
    return {**super().get_config(), "units": self.units}


def model_uses_fused_lstm():
  """Inside: cimha_tf.model builds every Bi-LSTM direction as FusedLSTM (benchmarks only;
  the config still says "keras", whose weights are the same)."""
  from bench.models import lstm_directions_built_by
  return lstm_directions_built_by(lambda units, name: FusedLSTM(units, name=name))

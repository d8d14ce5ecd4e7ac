"""One LSTM direction, in interchangeable implementations (model.lstm_implementation).

"keras": keras.layers.LSTM(return_sequences=True) (a tf.while_loop on TensorFlow).
"unrolled": the same cell in plain ops over a static time axis: one input matmul for all
steps, then per step z = x_t W + h U + b with gates (i, f, c, o), exactly LSTMCell's
math and weights layout [kernel (Din, 4u), recurrent_kernel (u, 4u), bias (4u,)], so
weights move between the two with get_weights/set_weights. Converted to TFLite it is
built-in ops only (no Flex). With an unknown time axis it falls back to ops.scan.
"scan": the unrolled cell's math always through ops.scan (a loop, like Keras's).
None takes a mask: callers put valid steps first (see bilstm.py).
Train with "keras": at the paper's shapes a training step with "scan" runs at 0.89x Keras's
loop, with "unrolled" at 0.58x after 71 s of tracing (docs/benchmarks.md, "What made it
faster").
Not offered: TensorFlow's fused BlockLSTMV2 kernel. Its forward pass uses Keras's gate
order, but in TF 2.21 its registered gradient disagrees with finite differences (the f
and c gate gradients come out mixed), so it would train the wrong function.
"""

import keras
from keras import ops


def _bias_init(units):
  # Keras LSTM's unit_forget_bias=True: forget gate bias 1, others 0.
  def init(shape, dtype=None):
    return ops.concatenate([ops.zeros((units,)), ops.ones((units,)),
                            ops.zeros((2 * units,))], axis=0)
  return init


@keras.saving.register_keras_serializable(package="cimha_tf")
class UnrolledLSTM(keras.layers.Layer):
  """(B, T, Din) -> (B, T, units); weights and math identical to keras.layers.LSTM.

  unroll=False always takes the ops.scan path ("scan" implementation): a loop like
  Keras's, but with the input projection hoisted out of it.

  Args:
    units: output width.
    unroll: unroll over a static time axis (else ops.scan).

  Call arguments:
    x: (B, T, Din).

  Returns:
    (B, T, units), every step's h.
  """

  def __init__(self, units, unroll=True, **kwargs):
    super().__init__(**kwargs)
    self.units = units
    self.unroll = unroll

  def build(self, input_shape):
    u = self.units
    self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], 4 * u),
                                  initializer="glorot_uniform")
    self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(u, 4 * u),
                                            initializer="orthogonal")
    self.bias = self.add_weight(name="bias", shape=(4 * u,), initializer=_bias_init(u))

  def _step(self, xw_t, h, c):
    u = self.units
    z = xw_t + ops.matmul(h, self.recurrent_kernel) + self.bias
    i = ops.sigmoid(z[:, :u])
    f = ops.sigmoid(z[:, u:2 * u])
    g = ops.tanh(z[:, 2 * u:3 * u])
    o = ops.sigmoid(z[:, 3 * u:])
    c = f * c + i * g
    return o * ops.tanh(c), c

  def call(self, x):
    xw = ops.matmul(x, self.kernel)  # all steps' input projections in one matmul
    h = c = ops.zeros_like(xw[:, 0, : self.units])
    steps = x.shape[1]  # int, or None (TF) / symbolic (JAX shape inference): unknown
    if isinstance(steps, int) and self.unroll:
      outputs = []
      for t in range(steps):
        h, c = self._step(xw[:, t], h, c)
        outputs.append(h)
      return ops.stack(outputs, axis=1)

    u = self.units

    def body(hc, xw_t):  # one carry tensor [h, c]: Keras's TF scan wants ys like carry
      h, c = self._step(xw_t, hc[:, :u], hc[:, u:])
      hc = ops.concatenate([h, c], axis=-1)
      return hc, hc

    _, hcs = ops.scan(body, ops.concatenate([h, c], axis=-1), ops.transpose(xw, (1, 0, 2)))
    return ops.transpose(hcs[:, :, :u], (1, 0, 2))

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.units,)

  def get_config(self):
    return {**super().get_config(), "units": self.units, "unroll": self.unroll}


def make_lstm(units, implementation, name):
  """One LSTM direction returning every step, (B, T, Din) -> (B, T, units).

  Args:
    units: output width.
    implementation: "keras" (keras.layers.LSTM), "unrolled" or "scan" (UnrolledLSTM).
    name: layer name.
  """
  if implementation == "keras":
    return keras.layers.LSTM(units, return_sequences=True, name=name)
  if implementation in ("unrolled", "scan"):
    return UnrolledLSTM(units, unroll=implementation == "unrolled", name=name)
  raise ValueError(f"lstm_implementation={implementation!r}: expected 'keras', 'unrolled' "
                   "or 'scan'")

"""Eqs 10-14: the dependent start/end head (ExCL's conditioned LSTMs).

eq 10  h_start = BiLSTM_start(s)        eq 11  h_end = BiLSTM_end(h_start)
eq 12  c_start = MLP_start([h_start, s])   eq 13  c_end = MLP_end([h_end, s])
eq 14  P = softmax over valid steps only (exactly 0 on padded steps).
"""

import keras
from keras import ops

from cimha_tf.model import masking
from cimha_tf.model.bilstm import BiLSTM
from cimha_tf.model.dropout import dropout_layer


def mlp(width, dropout, name, output_bias=True, private_fast_path=False):
  """Hidden ReLU layer then a scalar per step (eqs 12, 13, 15).

  Args:
    width: hidden width.
    dropout: dropout rate after the hidden layer.
    name: the Sequential's name.
    output_bias: whether the scalar output has a bias. The start/end logits take none: a
      softmax is shift-invariant, so it would never get a gradient.
    private_fast_path: use cimha_tf.model.dropout's Dropout (config.py).

  Returns:
    An unbuilt keras.Sequential, (B, N, Din) -> (B, N, 1).
  """
  # Named sublayers: auto names ("dense_7") would give each model's weights other paths.
  return keras.Sequential([keras.layers.Dense(width, activation="relu", name="hidden"),
                           dropout_layer(dropout, private_fast_path, name="dropout"),
                           keras.layers.Dense(1, use_bias=output_bias, name="logit")],
                          name=name)


@keras.saving.register_keras_serializable(package="cimha_tf")
class SpanHead(keras.layers.Layer):
  """s (B, N, Ds), video_mask (B, N) -> (start_probs, end_probs), each (B, N).

  Args:
    lstm_units: units per direction of the start and end Bi-LSTMs.
    mlp_width: hidden width of the start and end MLPs.
    dropout: dropout rate in the MLPs.
    lstm_implementation: "keras", "unrolled" or "scan" (lstm.py).
    private_fast_path: use cimha_tf.model.dropout's Dropout (config.py).

  Call arguments:
    s: (B, N, Ds) the cross-interaction output.
    video_mask: (B, N), 1 on valid steps, 0 on padding.
    training: whether dropout is on.

  Returns:
    (start_probs, end_probs): each (B, N), summing to 1 over valid steps, 0 on padding.
  """

  def __init__(self, lstm_units, mlp_width, dropout=0.0, lstm_implementation="keras",
               private_fast_path=False, **kwargs):
    super().__init__(**kwargs)
    self.lstm_units = lstm_units
    self.mlp_width = mlp_width
    self.dropout = dropout
    self.lstm_implementation = lstm_implementation
    self.private_fast_path = private_fast_path
    self.start_lstm = BiLSTM(lstm_units, lstm_implementation, name="start_lstm")
    self.end_lstm = BiLSTM(lstm_units, lstm_implementation, name="end_lstm")
    self.start_mlp = mlp(mlp_width, dropout, "start_mlp", False, private_fast_path)
    self.end_mlp = mlp(mlp_width, dropout, "end_mlp", False, private_fast_path)

  def build(self, s_shape, video_mask_shape=None):
    h_shape = tuple(s_shape[:-1]) + (2 * self.lstm_units,)
    cat_shape = tuple(s_shape[:-1]) + (2 * self.lstm_units + s_shape[-1],)
    self.start_lstm.build(s_shape)
    self.end_lstm.build(h_shape)
    self.start_mlp.build(cat_shape)
    self.end_mlp.build(cat_shape)

  def call(self, s, video_mask, training=None):
    h_start = self.start_lstm(s, video_mask)
    h_end = self.end_lstm(h_start, video_mask)
    c_start = self.start_mlp(ops.concatenate([h_start, s], -1), training=training)[..., 0]
    c_end = self.end_mlp(ops.concatenate([h_end, s], -1), training=training)[..., 0]
    return (masking.masked_softmax(c_start, video_mask),
            masking.masked_softmax(c_end, video_mask))

  def compute_output_shape(self, s_shape, video_mask_shape=None):
    return tuple(s_shape[:-1]), tuple(s_shape[:-1])

  def get_config(self):
    return {**super().get_config(), "lstm_units": self.lstm_units,
            "mlp_width": self.mlp_width, "dropout": self.dropout,
            "lstm_implementation": self.lstm_implementation,
            "private_fast_path": self.private_fast_path}

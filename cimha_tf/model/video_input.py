"""Video input (eq 1) and the learned temporal position embedding of eq 5."""

import keras
from keras import ops

from cimha_tf.model import masking
from cimha_tf.model.dropout import dropout_layer


@keras.saving.register_keras_serializable(package="cimha_tf")
class VideoProjection(keras.layers.Layer):
  """Eq 1: v0 = f_encoder(V), a linear map of the pre-extracted clip features to width D.

  Padded steps are zeroed first (with `where`, so NaN or garbage in padding cannot reach
  any output); any feature dim Dv works, fixed when the layer is built.

  Args:
    width: output width D.
    dropout: dropout rate on the output.
    private_fast_path: use cimha_tf.model.dropout's Dropout (config.py).

  Call arguments:
    features: (B, N, Dv) float clip features.
    video_mask: (B, N), 1 on valid steps, 0 on padding.
    training: whether dropout is on.

  Returns:
    (B, N, width).
  """

  def __init__(self, width, dropout=0.0, private_fast_path=False, **kwargs):
    super().__init__(**kwargs)
    self.width = width
    self.dropout = dropout
    self.private_fast_path = private_fast_path
    self.dense = keras.layers.Dense(width, name="dense")
    self.drop = dropout_layer(dropout, private_fast_path)

  def build(self, features_shape, video_mask_shape=None):
    self.dense.build(features_shape)

  def call(self, features, video_mask, training=None):
    x = masking.zero_padded(ops.cast(features, self.compute_dtype), video_mask)
    return self.drop(self.dense(x), training=training)

  def compute_output_shape(self, features_shape, video_mask_shape=None):
    return tuple(features_shape[:-1]) + (self.width,)

  def get_config(self):
    return {**super().get_config(), "width": self.width, "dropout": self.dropout,
            "private_fast_path": self.private_fast_path}


@keras.saving.register_keras_serializable(package="cimha_tf")
class TemporalPositionEmbedding(keras.layers.Layer):
  """Eq 5's PositionalEncoding: a learned (max_len, D) table added per step (as BERT).

  Args:
    max_len: rows of the table, the most steps an input may have.

  Call arguments:
    x: (B, N, D) with N <= max_len.

  Returns:
    x + table[:N], (B, N, D).
  """

  def __init__(self, max_len, **kwargs):
    super().__init__(**kwargs)
    self.max_len = max_len

  def build(self, input_shape):
    self.table = self.add_weight(
        name="table", shape=(self.max_len, input_shape[-1]),
        initializer=keras.initializers.TruncatedNormal(stddev=0.02))

  def call(self, x):
    n = x.shape[1]  # an int, None (TF: unknown), or symbolic (JAX's shape inference)
    if isinstance(n, int) and n > self.max_len:
      raise ValueError(f"video_features has {n} steps: expected at most max_video_len="
                       f"{self.max_len} (pool longer videos into {self.max_len} bins)")
    if n is None or isinstance(n, int):
      return x + self.table[None, : ops.shape(x)[1], :]
    # Symbolic: a slice would have min(max_len, n) rows, which does not broadcast with n.
    return x + ops.take(self.table, ops.arange(n), axis=0)[None]

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "max_len": self.max_len}

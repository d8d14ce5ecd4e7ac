"""Eqs 15-16: moment segmentation, P_in(t) = sigmoid(MLP_segment(s_t)); P_out = 1 - P_in."""

import keras
from keras import ops

from cimha_tf.model import masking
from cimha_tf.model.span_head import mlp


@keras.saving.register_keras_serializable(package="cimha_tf")
class SegmentHead(keras.layers.Layer):
  """s (B, N, Ds), video_mask (B, N) -> inside_probs (B, N), exactly 0 on padded steps.

  Args:
    mlp_width: hidden width of the segment MLP.
    dropout: dropout rate in the MLP.
    private_fast_path: use cimha_tf.model.dropout's Dropout (config.py).

  Call arguments:
    s, video_mask, training: as SpanHead's.

  Returns:
    inside_probs: (B, N) P_in per step.
  """

  def __init__(self, mlp_width, dropout=0.0, private_fast_path=False, **kwargs):
    super().__init__(**kwargs)
    self.mlp_width = mlp_width
    self.dropout = dropout
    self.private_fast_path = private_fast_path
    self.mlp = mlp(mlp_width, dropout, "segment_mlp", private_fast_path=private_fast_path)

  def build(self, s_shape, video_mask_shape=None):
    self.mlp.build(s_shape)

  def call(self, s, video_mask, training=None):
    p = ops.sigmoid(self.mlp(s, training=training)[..., 0])
    return ops.where(masking.as_bool(video_mask), p, 0.0)

  def compute_output_shape(self, s_shape, video_mask_shape=None):
    return tuple(s_shape[:-1])

  def get_config(self):
    return {**super().get_config(), "mlp_width": self.mlp_width, "dropout": self.dropout,
            "private_fast_path": self.private_fast_path}


@keras.saving.register_keras_serializable(package="cimha_tf")
class NoSegmentHead(keras.layers.Layer):
  """Variants without eq 15 still output inside_probs: zeros (B, N), no weights.

  Call arguments:
    video_mask: (B, N).

  Returns:
    (B, N) float32 zeros.
  """

  def call(self, video_mask):
    return ops.zeros_like(ops.cast(video_mask, "float32"))

  def compute_output_shape(self, video_mask_shape):
    return tuple(video_mask_shape)

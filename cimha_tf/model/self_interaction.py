"""Eqs 3-4: self-interaction, x = MHA(Q=x0, K=V=x0) + x0, for the query and the video."""

import keras

from cimha_tf.model import masking
from cimha_tf.model.attention import MultiHeadAttention
from cimha_tf.model.dropout import Dropout


@keras.saving.register_keras_serializable(package="cimha_tf")
class SelfInteraction(keras.layers.Layer):
  """(B, T, D), valid (B, T) -> (B, T, D). Keys are restricted to valid steps.

  The skip connection is the equations'; the LayerNorm after it (post-LN transformer) is
  not written in the paper but keeps the stacked blocks' scale stable.
  """

  def __init__(self, num_heads, dropout=0.0, **kwargs):
    super().__init__(**kwargs)
    self.num_heads = num_heads
    self.dropout = dropout
    self.norm = keras.layers.LayerNormalization(name="norm")
    self.drop = Dropout(dropout)
    self.mha = None

  def build(self, x_shape, valid_shape=None):
    d = x_shape[-1]
    if d % self.num_heads:
      raise ValueError(f"{self.name}: width {d} is not a multiple of num_heads={self.num_heads}")
    self.mha = MultiHeadAttention(self.num_heads, d // self.num_heads,
                                  dropout=self.dropout, name="mha")
    self.mha.build(x_shape, x_shape)
    self.norm.build(x_shape)

  def call(self, x, valid, training=None):
    y = self.mha(x, x, attention_mask=masking.key_mask(valid), training=training)
    return self.norm(x + self.drop(y, training=training))

  def compute_output_shape(self, x_shape, valid_shape=None):
    return x_shape

  def get_config(self):
    return {**super().get_config(), "num_heads": self.num_heads, "dropout": self.dropout}

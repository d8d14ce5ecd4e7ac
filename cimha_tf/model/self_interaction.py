"""Eqs 3-4: self-interaction, x = MHA(Q=x0, K=V=x0) + x0, for the query and the video."""

import keras

from cimha_tf.model import masking
from cimha_tf.model.attention import multi_head_attention
from cimha_tf.model.dropout import dropout_layer


@keras.saving.register_keras_serializable(package="cimha_tf")
class SelfInteraction(keras.layers.Layer):
  """(B, T, D), valid (B, T) -> (B, T, D). Keys are restricted to valid steps.

  The skip connection is the equations'; the LayerNorm after it (post-LN transformer) is
  not written in the paper but keeps the stacked blocks' scale stable.

  Args:
    num_heads: attention heads; the input width must be a multiple of it.
    dropout: dropout rate on the attention probabilities and on its output.
    private_fast_path: use the attention and dropout subclasses of attention.py and
      dropout.py (config.py).

  Call arguments:
    x: (B, T, D).
    valid: (B, T), 1 on valid steps, 0 on padding.
    training: whether dropout is on.

  Returns:
    (B, T, D).
  """

  def __init__(self, num_heads, dropout=0.0, private_fast_path=False, **kwargs):
    super().__init__(**kwargs)
    self.num_heads = num_heads
    self.dropout = dropout
    self.private_fast_path = private_fast_path
    self.norm = keras.layers.LayerNormalization(name="norm")
    self.drop = dropout_layer(dropout, private_fast_path)
    self.mha = None

  def build(self, x_shape, valid_shape=None):
    d = x_shape[-1]
    if d % self.num_heads:
      raise ValueError(f"{self.name}: width {d} is not a multiple of num_heads={self.num_heads}")
    self.mha = multi_head_attention(self.num_heads, d // self.num_heads, self.dropout, "mha",
                                    self.private_fast_path)
    self.mha.build(x_shape, x_shape)
    self.norm.build(x_shape)

  def call(self, x, valid, training=None):
    y = self.mha(x, x, attention_mask=masking.key_mask(valid), training=training)
    return self.norm(x + self.drop(y, training=training))

  def compute_output_shape(self, x_shape, valid_shape=None):
    return x_shape

  def get_config(self):
    return {**super().get_config(), "num_heads": self.num_heads, "dropout": self.dropout,
            "private_fast_path": self.private_fast_path}

"""Eqs 5-6: the position-wise FeedForward applied to v and q (both then (., D))."""

import keras

from cimha_tf.model.dropout import Dropout


@keras.saving.register_keras_serializable(package="cimha_tf")
class FeedForward(keras.layers.Layer):
  """(B, T, Din) -> (B, T, width): LayerNorm(x + W2 relu(W1 x)), transformer style.

  When Din != width the skip goes through a bias-free linear projection.
  """

  def __init__(self, width, hidden, dropout=0.0, **kwargs):
    super().__init__(**kwargs)
    self.width = width
    self.hidden = hidden
    self.dropout = dropout
    self.inner = keras.layers.Dense(hidden, activation="relu", name="inner")
    self.outer = keras.layers.Dense(width, name="outer")
    self.drop = Dropout(dropout)
    self.norm = keras.layers.LayerNormalization(name="norm")
    self.skip = None

  def build(self, x_shape):
    self.inner.build(x_shape)
    self.outer.build(tuple(x_shape[:-1]) + (self.hidden,))
    if x_shape[-1] != self.width:
      self.skip = keras.layers.Dense(self.width, use_bias=False, name="skip")
      self.skip.build(x_shape)
    self.norm.build(tuple(x_shape[:-1]) + (self.width,))

  def call(self, x, training=None):
    y = self.drop(self.outer(self.drop(self.inner(x), training=training)), training=training)
    return self.norm((x if self.skip is None else self.skip(x)) + y)

  def compute_output_shape(self, x_shape):
    return tuple(x_shape[:-1]) + (self.width,)

  def get_config(self):
    return {**super().get_config(), "width": self.width, "hidden": self.hidden,
            "dropout": self.dropout}

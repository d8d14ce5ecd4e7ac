"""Eqs 5-6: the position-wise FeedForward applied to v and q (both then (., D))."""

import keras

from cimha_tf.model.dropout import dropout_layer


@keras.saving.register_keras_serializable(package="cimha_tf")
class FeedForward(keras.layers.Layer):
  """(B, T, Din) -> (B, T, width): LayerNorm(x + W2 relu(W1 x)), transformer style.

  When Din != width the skip goes through a bias-free linear projection.

  Args:
    width: output width.
    hidden: width of the ReLU layer.
    dropout: dropout rate after each of the two Dense layers.
    private_fast_path: use cimha_tf.model.dropout's Dropout (config.py).

  Call arguments:
    x: (B, T, Din).
    training: whether dropout is on.

  Returns:
    (B, T, width).
  """

  def __init__(self, width, hidden, dropout=0.0, private_fast_path=False, **kwargs):
    super().__init__(**kwargs)
    self.width = width
    self.hidden = hidden
    self.dropout = dropout
    self.private_fast_path = private_fast_path
    self.inner = keras.layers.Dense(hidden, activation="relu", name="inner")
    self.outer = keras.layers.Dense(width, name="outer")
    self.drop = dropout_layer(dropout, private_fast_path)
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
            "dropout": self.dropout, "private_fast_path": self.private_fast_path}

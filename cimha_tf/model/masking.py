"""Mask helpers shared by the layers: padded steps never reach a valid output.

Masks are explicit tensors (video_mask (B, N) float 1/0, query mask from token != 0),
never Keras `_keras_mask`s: those force the slow masked LSTM path and are easy to drop.
Valid steps come first (docs/design.md), so a length is the mask's sum.
"""

import keras
from keras import ops

# Added to padded logits; exp(NEG - max) underflows to exactly 0 in float32, and unlike
# -inf it cannot produce NaN.
NEG = -1e9


def as_bool(mask):
  """A float or bool mask as bool (> 0.5).

  Args:
    mask: any shape, 1/True on valid steps.
  """
  return ops.greater(ops.cast(mask, "float32"), 0.5)


def zero_padded(x, mask):
  """x with padded steps set to 0 (where, not multiply: NaN * 0 is NaN). The 0 is a
  scalar, not zeros_like(x): with a free time axis, a tensor of x's shape is made at run
  time (TFLite: shape ops that XNNPACK does not take).

  Args:
    x: (B, T, D).
    mask: (B, T), 1 on valid steps.
  """
  return ops.where(as_bool(mask)[:, :, None], x, 0.0)


def lengths(mask):
  """(B,) int32 number of valid steps.

  Args:
    mask: (B, T), 1 on valid steps (first), 0 on padding.
  """
  return ops.sum(ops.cast(as_bool(mask), "int32"), axis=1)


def key_mask(key_valid):
  """(B, 1, Tk) bool attention mask, broadcast over the query rows (MultiHeadAttention's
  masked softmax broadcasts it): every row sees only the valid keys.

  Args:
    key_valid: (B, Tk), 1 on valid key steps.
  """
  return as_bool(key_valid)[:, None, :]


def masked_softmax(logits, mask):
  """Softmax over the last axis restricted to valid steps: exactly 0 on padded steps.

  Args:
    logits: (B, T).
    mask: (B, T), 1 on valid steps.
  """
  valid = as_bool(mask)
  probs = ops.softmax(ops.where(valid, logits, NEG), axis=-1)
  return ops.where(valid, probs, 0.0)


def masked_mean(x, mask):
  """(B, D) mean over valid steps (0 for a row without any).

  Args:
    x: (B, T, D).
    mask: (B, T), 1 on valid steps.
  """
  m = ops.cast(as_bool(mask), x.dtype)[:, :, None]
  return ops.sum(x * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)


@keras.saving.register_keras_serializable(package="cimha_tf")
class TokenMask(keras.layers.Layer):
  """query_tokens (B, L) int -> (B, L) float32 mask, 1 where token != 0 (0 = padding).

  Call arguments:
    tokens: (B, L) int token ids.

  Returns:
    (B, L) float32.
  """

  def call(self, tokens):
    return ops.cast(ops.not_equal(tokens, 0), "float32")

  def compute_output_spec(self, tokens):
    return keras.KerasTensor(tokens.shape, dtype="float32")

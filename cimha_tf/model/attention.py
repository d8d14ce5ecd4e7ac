"""Multi-head attention: keras.layers.MultiHeadAttention, or a faster subclass on request.

multi_head_attention() gives Keras's public layer unless model.private_fast_path is set.
The fast path, MultiHeadAttention below, overrides two private methods of Keras's layer
(_build_attention, _compute_attention) and calls a third (_masked_softmax): Keras takes
the dot products and the weighted sum through einsum, which TensorFlow lowers to
transposes around a BatchMatMul; here the heads are moved to the front once and both
products are batched matmuls, and the attention dropout is cimha_tf.model.dropout's.
Variables, projections, masking and outputs are Keras's own, so weights and checkpoints
move freely between the two paths. A Keras release may change the private methods
without notice: check_private_api() compares them with PRIVATE_API, what the override was
written against; the fast layer calls it when built, and tests/test_private_fast_path.py
also compares their source.
"""

import hashlib
import inspect

import keras
from keras import ops

from cimha_tf.model import dropout as dropout_lib

# Keras's private methods the fast path overrides or calls, as written against Keras
# 3.15.1: signature, and a hash of the source (inspect.getsource, see source_hash).
PRIVATE_API = {
    "_build_attention": ("(self, rank)", "26399b12f2810501"),
    "_compute_attention": ("(self, query, key, value, attention_mask=None, training=None, "
                           "return_attention_scores=False, use_causal_mask=False)",
                           "88168a1a82dd0d31"),
    "_masked_softmax": ("(self, attention_scores, attention_mask=None)", "f2b05c4b4388a750"),
}
# Private attributes of a built keras.layers.MultiHeadAttention that the fast path reads.
PRIVATE_ATTRIBUTES = ("_dropout", "_dropout_layer", "_attention_axes",
                      "_inverse_sqrt_key_dim", "_layers")
WRITTEN_FOR = "3.15.1"


def source_hash(function):
  """First 16 hex digits of the sha256 of a function's source (what the fast path read).

  Args:
    function: a function or method whose source inspect can find.
  """
  return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]


def private_api_changes(compare_source=False):
  """Differences between the installed Keras's MultiHeadAttention private methods and
  PRIVATE_API, one line each (empty when the fast path's assumptions hold).

  Args:
    compare_source: also compare each method's source hash (any edit in Keras counts).
  """
  changes = []
  for name, (signature, digest) in PRIVATE_API.items():
    method = getattr(keras.layers.MultiHeadAttention, name, None)
    if method is None:
      changes.append(f"{name} is gone")
      continue
    got = str(inspect.signature(method))
    if got != signature:
      changes.append(f"{name}{got}, written for {name}{signature}")
    elif compare_source and source_hash(method) != digest:
      changes.append(f"{name}'s source changed (hash {source_hash(method)}, written for {digest})")
  return changes


def check_private_api():
  """Raises RuntimeError naming each private Keras method whose signature changed."""
  changes = private_api_changes()
  if changes:
    raise RuntimeError(
        f"model.private_fast_path: Keras {keras.__version__}'s MultiHeadAttention is not the "
        f"one cimha_tf/model/attention.py overrides (Keras {WRITTEN_FOR}): "
        f"{'; '.join(changes)}. Set model.private_fast_path = False (the public layer, same "
        "weights) or update the override")


def multi_head_attention(num_heads, key_dim, dropout=0.0, name=None, private_fast_path=False):
  """A multi-head attention layer over axis 1 of (B, T, D) inputs.

  Args:
    num_heads: number of attention heads.
    key_dim: width of each head's query and key.
    dropout: dropout rate on the attention probabilities.
    name: layer name.
    private_fast_path: False gives keras.layers.MultiHeadAttention; True this module's
      MultiHeadAttention (same weights and results, faster on TensorFlow).

  Returns:
    An unbuilt layer with keras.layers.MultiHeadAttention's call signature.
  """
  cls = MultiHeadAttention if private_fast_path else keras.layers.MultiHeadAttention
  return cls(num_heads, key_dim, dropout=dropout, name=name)


@keras.saving.register_keras_serializable(package="cimha_tf")
class MultiHeadAttention(keras.layers.MultiHeadAttention):
  """keras.layers.MultiHeadAttention with the fast path's private overrides (module docstring).

  Args:
    Those of keras.layers.MultiHeadAttention. Raises RuntimeError when the installed
    Keras's private methods no longer match PRIVATE_API.
  """

  def __init__(self, *args, **kwargs):
    check_private_api()
    super().__init__(*args, **kwargs)

  def _build_attention(self, rank):
    super()._build_attention(rank)
    # Untracked first: otherwise Keras's layer and its seed variable would stay in the
    # model's variables, and checkpoints would no longer match the other class's.
    self._layers.remove(self._dropout_layer)
    self._dropout_layer = dropout_lib.Dropout(rate=self._dropout, dtype=self.dtype_policy,
                                              seed=self.seed)

  def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                         return_attention_scores=False, use_causal_mask=False):
    if len(query.shape) != 4 or self._attention_axes != (1,) or use_causal_mask:
      return super()._compute_attention(query, key, value, attention_mask, training,
                                        return_attention_scores, use_causal_mask)
    # (B, T, N, H) -> (B, N, T, H): heads lead, so both products are batched matmuls.
    q = ops.transpose(ops.multiply(query, ops.cast(self._inverse_sqrt_key_dim, query.dtype)),
                      (0, 2, 1, 3))
    k = ops.transpose(key, (0, 2, 3, 1))  # (B, N, H, S)
    v = ops.transpose(value, (0, 2, 1, 3))
    scores = self._masked_softmax(ops.matmul(q, k), attention_mask)  # (B, N, T, S)
    probs = self._dropout_layer(scores, training=training) if self._dropout > 0.0 else scores
    return ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3)), scores

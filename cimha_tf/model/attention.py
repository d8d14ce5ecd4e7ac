"""Multi-head attention with Keras's weights and results, computed with plain matmuls.

keras.layers.MultiHeadAttention takes the dot products and the weighted sum through
einsum ("aecd,abcd->acbe", "acbe,aecd->abcd"); TensorFlow lowers each to transposes of
both operands and of the result around a BatchMatMul, and their gradients likewise. Here
the heads are moved to the front once (B, N, T, H) and both products are batched
matmuls. Everything else is Keras's own: the projections, the mask handling and
masked softmax, the attention scores returned ((B, N, T, S), as Keras), and the variables
(same names and shapes: checkpoints of either load into the other). The dropout on the
attention probabilities is cimha_tf.model.dropout's (Keras's Dropout with a cheaper mask;
this is the model's largest dropout, (B, N, T, S)). Measured at the paper's shapes in
docs/benchmarks.md ("What made it faster"): 1.05x the training step.
"""

import keras
from keras import ops

from cimha_tf.model.dropout import Dropout


@keras.saving.register_keras_serializable(package="cimha_tf")
class MultiHeadAttention(keras.layers.MultiHeadAttention):
  """keras.layers.MultiHeadAttention for (B, T, D) inputs, attention over axis 1."""

  def _build_attention(self, rank):
    super()._build_attention(rank)
    # Untracked first: otherwise Keras's layer and its seed variable would stay in the
    # model's variables, and checkpoints would no longer match the other class's.
    self._layers.remove(self._dropout_layer)
    self._dropout_layer = Dropout(rate=self._dropout, dtype=self.dtype_policy, seed=self.seed)

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

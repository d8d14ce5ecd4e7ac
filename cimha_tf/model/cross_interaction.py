"""Eqs 7-9: the cross-interaction block, s_t = [v^q, q^v]_t per video step.

eq 8  q^v = MHA(Q=v_hat, K=V=q_hat): frames attend to valid words -> (B, N, D).
eq 7  v^q = MHA(Q=q_hat, K=V=v_hat): words attend to valid frames -> (B, L, D).
eq 9  needs v^q per frame (docs/paper.md, "the one real ambiguity"):
  "backprojection": A_vq @ v^q, A_vq (B, N, L) = eq 8's attention averaged over heads
      (exactly 0 on padded words, so padded words' v^q never leak);
  "pool_tile": v^q averaged over valid words, tiled over the N frames (ExCL).
Variant "mha" has eq 8 only: s = q^v, width D; otherwise s has width 2D.
`cross_skip` adds each MHA's query-side input back (then LayerNorm); see config.py.
`sentence_product` (not in the paper) appends v_hat_t * mean of q_hat over valid words:
s gains D channels; see config.py.
"""

import keras
from keras import ops

from cimha_tf.model import masking
from cimha_tf.model.attention import multi_head_attention
from cimha_tf.model.dropout import dropout_layer


@keras.saving.register_keras_serializable(package="cimha_tf")
class CrossInteraction(keras.layers.Layer):
  """(v_hat (B,N,D), q_hat (B,L,D), video_mask (B,N), query_mask (B,L)) -> s (B,N,D|2D).

  Args:
    num_heads: attention heads of both MHAs; D must be a multiple of it.
    variant: "mha" (eq 8 only, s = q^v) or "cimha_wo_ms" / "cimha" (eqs 7-9).
    cross_fusion: eq 9's reading, "backprojection" or "pool_tile" (module docstring).
    cross_skip: add each MHA's query-side input back, then LayerNorm (config.py).
    sentence_product: append v_hat * (q_hat averaged over valid words) to s (config.py).
    dropout: dropout rate on the attention probabilities and on the skip branch.
    private_fast_path: use the attention and dropout subclasses of attention.py and
      dropout.py (config.py).

  Call arguments:
    v_hat, q_hat, video_mask, query_mask: as above; masks 1 on valid steps.
    training: whether dropout is on.

  Returns:
    s: (B, N, D) for variant "mha", else (B, N, 2D); D more with sentence_product.
  """

  def __init__(self, num_heads, variant="cimha", cross_fusion="backprojection",
               cross_skip=True, dropout=0.0, private_fast_path=False, sentence_product=False,
               **kwargs):
    super().__init__(**kwargs)
    if cross_fusion not in ("backprojection", "pool_tile"):
      raise ValueError(f"cross_fusion={cross_fusion!r}: expected backprojection or pool_tile")
    self.num_heads = num_heads
    self.variant = variant
    self.cross_fusion = cross_fusion
    self.cross_skip = cross_skip
    self.sentence_product = sentence_product
    self.dropout = dropout
    self.private_fast_path = private_fast_path
    self.two_way = variant != "mha"
    self.drop = dropout_layer(dropout, private_fast_path)
    self.norm_qv = keras.layers.LayerNormalization(name="norm_qv")
    self.norm_vq = keras.layers.LayerNormalization(name="norm_vq")
    self.mha_qv = self.mha_vq = None

  def build(self, v_hat_shape, q_hat_shape, video_mask_shape=None, query_mask_shape=None):
    v_shape, q_shape = v_hat_shape, q_hat_shape
    d = v_shape[-1]
    if q_shape[-1] != d:
      raise ValueError(f"{self.name}: video width {d} != query width {q_shape[-1]}")
    self.mha_qv = multi_head_attention(self.num_heads, d // self.num_heads, self.dropout,
                                       "mha_qv", self.private_fast_path)
    self.mha_qv.build(v_shape, q_shape)
    self.norm_qv.build(v_shape)
    if self.two_way:
      self.mha_vq = multi_head_attention(self.num_heads, d // self.num_heads, self.dropout,
                                         "mha_vq", self.private_fast_path)
      self.mha_vq.build(q_shape, v_shape)
      self.norm_vq.build(q_shape)

  def _skip(self, x, y, norm, training):
    return norm(x + self.drop(y, training=training)) if self.cross_skip else y

  def call(self, v_hat, q_hat, video_mask, query_mask, training=None):
    qv, a_vq, vq = self.interact(v_hat, q_hat, video_mask, query_mask, training)
    s = qv if not self.two_way else self.fuse(qv, a_vq, vq, query_mask)
    if self.sentence_product:
      sentence = masking.masked_mean(q_hat, query_mask)  # (B, D)
      s = ops.concatenate([s, v_hat * sentence[:, None, :]], axis=-1)
    return s

  def interact(self, v_hat, q_hat, video_mask, query_mask, training=None):
    """(q^v (B, N, D), A_vq (B, N, L), v^q (B, L, D)): A_vq None unless "backprojection",
    A_vq and v^q None for variant "mha"."""
    qv, scores = self.mha_qv(v_hat, q_hat, attention_mask=masking.key_mask(query_mask),
                             return_attention_scores=True, training=training)  # eq 8
    qv = self._skip(v_hat, qv, self.norm_qv, training)
    if not self.two_way:
      return qv, None, None
    vq = self.mha_vq(q_hat, v_hat, attention_mask=masking.key_mask(video_mask),
                     training=training)  # eq 7
    a_vq = ops.mean(scores, axis=1) if self.cross_fusion == "backprojection" else None
    return qv, a_vq, self._skip(q_hat, vq, self.norm_vq, training)

  def fuse(self, qv, a_vq, vq, query_mask):
    """eq 9: s = [v^q per frame, q^v] (B, N, 2D)."""
    if self.cross_fusion == "backprojection":
      per_frame = ops.matmul(a_vq, vq)
    else:
      pooled = masking.masked_mean(vq, query_mask)
      per_frame = ops.zeros_like(qv) + pooled[:, None, :]
    return ops.concatenate([per_frame, qv], axis=-1)

  def compute_output_shape(self, v_hat_shape, q_hat_shape, video_mask_shape=None,
                           query_mask_shape=None):
    d = ((2 if self.two_way else 1) + bool(self.sentence_product)) * v_hat_shape[-1]
    return tuple(v_hat_shape[:-1]) + (d,)

  def get_config(self):
    return {**super().get_config(), "num_heads": self.num_heads, "variant": self.variant,
            "cross_fusion": self.cross_fusion, "cross_skip": self.cross_skip,
            "sentence_product": self.sentence_product,
            "dropout": self.dropout, "private_fast_path": self.private_fast_path}

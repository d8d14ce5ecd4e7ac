"""The suite's reference: a compact Keras re-implementation of VSLNet (Zhang et al., ACL
2020), trained beside CI-MHA on every set, as bench/peers.py runs a peer for speed.

What is kept of VSLNet's published recipe: word embeddings (the prepared GloVe matrix,
frozen, when the set has one, else learned), a linear projection of the clip features;
one shared feature encoder (learned positions, 4 depthwise-separable conv layers of
kernel 7, one multi-head self-attention block, each pre-LayerNorm with residuals) applied
to the video and the query; context-query attention (trilinear similarity, video-to-query
and query-to-video attention, [C; A; C*A; C*B] -> dense); the pooled query concatenated
to every step; query-guided highlighting (a per-step sigmoid that scales the features,
trained with VSLNet's 2:1-weighted BCE at lambda 5); the conditioned span predictor (a
start LSTM over the features, an end LSTM over the start LSTM's states, each with a
2-layer scorer over [state; features]); dropout 0.2; AdamW at 5e-4 (weight decay 0.01,
not on biases or LayerNorm) decaying linearly to 0 over the run, global-norm clipping at
1.0, batch 16. Left out: character embeddings, and the highlight labels' extension by 10%
of the moment on each side (ours are the exact inside labels). Decoding and scoring are
the project's (the product argmax over start/end pairs, as VSLNet decodes).
"""

import keras
from keras import ops

from cimha_tf.model import masking

DROPOUT = 0.2
HIGHLIGHT_LAMBDA = 5.0
LEARNING_RATE = 5e-4
WEIGHT_DECAY = 0.01
CLIP_NORM = 1.0
BATCH_SIZE = 16


class FeatureEncoder(keras.layers.Layer):
  """VSLNet's shared encoder: positions, 4 separable conv layers (kernel 7), one
  self-attention block; pre-LayerNorm residual sublayers, padded steps kept at 0."""

  def __init__(self, dim, num_heads, max_len, dropout, **kwargs):
    super().__init__(**kwargs)
    self.positions = keras.layers.Embedding(max_len, dim)
    self.conv_norms = [keras.layers.LayerNormalization(epsilon=1e-6) for _ in range(4)]
    self.convs = [keras.layers.SeparableConv1D(dim, 7, padding="same", activation="relu")
                  for _ in range(4)]
    self.attn_norm = keras.layers.LayerNormalization(epsilon=1e-6)
    self.attention = keras.layers.MultiHeadAttention(num_heads, dim // num_heads, dropout=dropout)
    self.ffn_norm = keras.layers.LayerNormalization(epsilon=1e-6)
    self.ffn = keras.layers.Dense(dim)
    self.dropout = keras.layers.Dropout(dropout)

  def call(self, x, mask, training=None):
    # Padded steps stay 0 (VSLNet adds positions there too, which the convolutions then read).
    x = masking.zero_padded(x + self.positions(ops.arange(ops.shape(x)[1]))[None], mask)
    for norm, conv in zip(self.conv_norms, self.convs):
      x = masking.zero_padded(x + self.dropout(conv(norm(x)), training=training), mask)
    y = self.dropout(self.attn_norm(x), training=training)
    y = self.attention(y, y, attention_mask=masking.key_mask(mask), training=training)
    x = x + self.dropout(y, training=training)
    y = self.ffn(self.dropout(self.ffn_norm(x), training=training))
    return masking.zero_padded(x + self.dropout(y, training=training), mask)


class ContextQueryAttention(keras.layers.Layer):
  """VSLNet's CQA: S = w_c.c_i + w_q.q_j + w_cq.(c_i * q_j); A = softmax_j(S) Q,
  B = softmax_j(S) softmax_i(S)^T C; -> dense([C; A; C*A; C*B])."""

  def __init__(self, dim, **kwargs):
    super().__init__(**kwargs)
    self.w_c = keras.layers.Dense(1, use_bias=False)
    self.w_q = keras.layers.Dense(1, use_bias=False)
    self.w_cq = keras.layers.Dense(dim, use_bias=False)  # diagonal use: c * w_cq . q
    self.out = keras.layers.Dense(dim, use_bias=False)
    self.dim = dim

  def build(self, c_shape, q_shape=None, c_mask_shape=None, q_mask_shape=None):
    self.w_mul = self.add_weight(shape=(self.dim,), initializer="glorot_uniform", name="w_mul")
    self.bias = self.add_weight(shape=(), initializer="zeros", name="bias")

  def call(self, c, q, c_mask, q_mask):
    s = (self.w_c(c) + ops.transpose(self.w_q(q), (0, 2, 1))
         + ops.matmul(c * self.w_mul, ops.transpose(q, (0, 2, 1))) + self.bias)  # (B, N, L)
    s_q = masking.masked_softmax(s, q_mask[:, None, :])                         # over words
    s_c = masking.masked_softmax(ops.transpose(s, (0, 2, 1)), c_mask[:, None, :])  # over steps
    a = ops.matmul(s_q, q)
    b = ops.matmul(ops.matmul(s_q, s_c), c)
    return self.out(ops.concatenate([c, a, c * a, c * b], axis=-1))


def _pooled_query(q, q_mask):
  """VSLNet's CQConcat pooling: attention weights from one dense unit over the words."""
  alpha = masking.masked_softmax(keras.layers.Dense(1, use_bias=False)(q)[..., 0], q_mask)
  return ops.sum(q * alpha[..., None], axis=1)


def _scorer(dim, state, features, mask):
  h = keras.layers.Dense(dim, activation="relu")(ops.concatenate([state, features], axis=-1))
  return masking.masked_softmax(keras.layers.Dense(1)(h)[..., 0], mask)


def build(video_dim, vocab_size, dim=128, num_heads=8, max_len=128, embedding_dim=50,
          embeddings=None, dropout=DROPOUT):
  """The reference as a Keras model with the project's input/output contract (docs/design.md):
  start/end distributions over valid steps and the highlight scores as inside_probs."""
  video = keras.Input((None, video_dim), name="video_features")
  mask = keras.Input((None,), name="video_mask")
  tokens = keras.Input((None,), dtype="int32", name="query_tokens")
  q_mask = masking.TokenMask()(tokens)
  drop = keras.layers.Dropout(dropout)
  if embeddings is not None:
    embed = keras.layers.Embedding(vocab_size, embeddings.shape[1], trainable=False,
                                   weights=[embeddings])
  else:
    embed = keras.layers.Embedding(vocab_size, embedding_dim)
  q = keras.layers.Dense(dim)(drop(embed(tokens)))
  v = keras.layers.Dense(dim)(drop(video))
  encoder = FeatureEncoder(dim, num_heads, max_len, dropout)
  v, q = encoder(v, mask), encoder(q, q_mask)
  x = ContextQueryAttention(dim)(v, q, mask, q_mask)
  pooled = _pooled_query(q, q_mask)
  x = keras.layers.Dense(dim)(ops.concatenate(
      [x, ops.zeros_like(x[..., :1]) + pooled[:, None, :]], axis=-1))
  highlight = ops.sigmoid(keras.layers.Dense(1)(x)[..., 0]) * mask
  x = masking.zero_padded(x * highlight[..., None], mask)
  start_state = keras.layers.LayerNormalization()(keras.layers.LSTM(dim, return_sequences=True)(x))
  end_state = keras.layers.LayerNormalization()(keras.layers.LSTM(dim, return_sequences=True)(start_state))
  outputs = {"start_probs": keras.layers.Identity(name="start_probs")(_scorer(dim, start_state, x, mask)),
             "end_probs": keras.layers.Identity(name="end_probs")(_scorer(dim, end_state, x, mask)),
             "inside_probs": keras.layers.Identity(name="inside_probs")(highlight)}
  return keras.Model({"video_features": video, "video_mask": mask, "query_tokens": tokens},
                     outputs, name="vslnet_reference")


def highlight_bce(y_true, y_pred):
  """VSLNet's highlighting loss: BCE weighted 2 inside the moment and 1 outside, averaged
  over valid steps (-1 labels are padding)."""
  y_true = ops.cast(y_true, y_pred.dtype)
  valid = ops.cast(ops.greater_equal(y_true, 0.0), y_pred.dtype)
  p = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
  bce = -(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p)) * (1.0 + y_true) * valid
  return ops.sum(bce, axis=-1) / ops.maximum(ops.sum(valid, axis=-1), 1.0)


def compile_reference(model, total_steps, learning_rate=LEARNING_RATE):
  """AdamW, linear decay to 0 over total_steps, global-norm clipping: VSLNet's optimizer."""
  from cimha_tf.model.losses import span_nll
  schedule = keras.optimizers.schedules.PolynomialDecay(learning_rate, max(1, total_steps), 0.0,
                                                        power=1.0)
  optimizer = keras.optimizers.AdamW(schedule, weight_decay=WEIGHT_DECAY, global_clipnorm=CLIP_NORM)
  optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
  model.compile(optimizer=optimizer,
                loss={"start_probs": span_nll, "end_probs": span_nll, "inside_probs": highlight_bce},
                loss_weights={"start_probs": 1.0, "end_probs": 1.0, "inside_probs": HIGHLIGHT_LAMBDA})
  return model

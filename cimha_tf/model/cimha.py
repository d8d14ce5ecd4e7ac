"""build_model: the CI-MHA functional model (eqs 1-16) from the model config."""

import keras
import numpy as np

from cimha_tf.model import config as config_lib
from cimha_tf.model.bilstm import BiLSTM
from cimha_tf.model.cross_interaction import CrossInteraction
from cimha_tf.model.feed_forward import FeedForward
from cimha_tf.model.masking import TokenMask
from cimha_tf.model.query_encoder import QueryEncoder
from cimha_tf.model.segment_head import NoSegmentHead, SegmentHead
from cimha_tf.model.self_interaction import SelfInteraction
from cimha_tf.model.span_head import SpanHead
from cimha_tf.model.video_input import TemporalPositionEmbedding, VideoProjection

OUTPUTS = ("start_probs", "end_probs", "inside_probs")


def build_model(model_config, video_dim, vocab_size, embeddings=None):
  """The CI-MHA keras.Model; inputs/outputs as docs/design.md ("Model inputs and outputs").

  Args:
    model_config: config.default_config() or a variant of it (checked).
    video_dim: feature width Dv of the clip features.
    vocab_size: embedding rows (token ids 0..vocab_size-1).
    embeddings: optional (vocab_size, embedding_dim) matrix (GloVe); frozen unless
      model_config.train_embeddings. Without it the embedding is learned from scratch.

  Returns:
    A functional model: dict of video_features (B, N, Dv), video_mask (B, N) and
    query_tokens (B, L) -> dict of OUTPUTS, each (B, N); N and L dynamic.
  """
  c = model_config
  config_lib.check_config(c)
  if int(video_dim) < 1:
    raise ValueError(f"video_dim={video_dim}: expected a positive feature dimension")
  if embeddings is not None:
    embeddings = np.asarray(embeddings, np.float32)
    if embeddings.shape != (vocab_size, c.embedding_dim):
      raise ValueError(f"embeddings has shape {embeddings.shape}: expected "
                       f"(vocab_size, embedding_dim) = ({vocab_size}, {c.embedding_dim})")
    if not np.isfinite(embeddings).all():
      raise ValueError("embeddings contain NaN or inf values")
  train_embeddings = bool(c.train_embeddings) or embeddings is None
  impl = c.lstm_implementation

  video = keras.Input((None, int(video_dim)), dtype="float32", name="video_features")
  video_mask = keras.Input((None,), dtype="float32", name="video_mask")
  tokens = keras.Input((None,), dtype="int32", name="query_tokens")
  query_mask = TokenMask(name="query_mask")(tokens)

  fast = {"private_fast_path": c.private_fast_path}
  v0 = VideoProjection(c.width, c.dropout, name="video_projection", **fast)(video, video_mask)
  query_encoder = QueryEncoder(vocab_size, c.embedding_dim, c.query_lstm_units,
                               train_embeddings, c.dropout, impl, name="query_encoder", **fast)
  q0 = query_encoder(tokens, query_mask)  # eq 2
  q = SelfInteraction(c.num_heads, c.dropout, name="query_self", **fast)(q0, query_mask)  # 3
  v = SelfInteraction(c.num_heads, c.dropout, name="video_self", **fast)(v0, video_mask)  # 4
  v_hat = FeedForward(c.width, c.ffn_width, c.dropout, name="video_ffn", **fast)(v)  # eq 5
  v_hat = TemporalPositionEmbedding(c.max_video_len, name="position")(v_hat)  # eq 5
  q_hat = FeedForward(c.width, c.ffn_width, c.dropout, name="query_ffn", **fast)(q)  # eq 6
  s = CrossInteraction(c.num_heads, c.variant, c.cross_fusion, c.cross_skip, c.dropout,
                       sentence_product=c.get("sentence_product", False),
                       name="cross", **fast)(v_hat, q_hat, video_mask, query_mask)  # eqs 7-9
  start, end = SpanHead(c.span_lstm_units, c.mlp_width, c.dropout, impl,
                        name="span_head", **fast)(s, video_mask)  # eqs 10-14
  if config_lib.has_segment_head(c):
    inside = SegmentHead(c.mlp_width, c.dropout, name="segment_head",
                         **fast)(s, video_mask)  # eqs 15-16
  else:
    inside = NoSegmentHead(name="no_segment_head")(video_mask)
  outputs = {name: keras.layers.Identity(name=name)(t)
             for name, t in zip(OUTPUTS, (start, end, inside))}
  model = keras.Model({"video_features": video, "video_mask": video_mask,
                       "query_tokens": tokens}, outputs, name=f"cimha_{c.variant}")
  if embeddings is not None:
    query_encoder.embedding.set_weights([embeddings])
  return model


def video_dim_of(model):
  """The feature size (Dv) a built or loaded model takes.

  Args:
    model: a build_model model (or one loaded from a .keras file).
  """
  inputs = model.input
  spec = inputs["video_features"] if isinstance(inputs, dict) else inputs[0]
  return int(spec.shape[-1])


# The layers that take a private_fast_path argument (config.py).
FAST_PATH_LAYERS = ("VideoProjection", "QueryEncoder", "SelfInteraction", "FeedForward",
                    "CrossInteraction", "SpanHead", "SegmentHead")


def with_lstm_implementation(model, implementation, private_fast_path=None):
  """The same model (same weights, outputs equal to float rounding) rebuilt in another form.

  Args:
    model: a build_model model (or one loaded from a .keras file).
    implementation: every Bi-LSTM's form, "keras", "scan", or "unrolled" (e.g. for TFLite
      without Flex).
    private_fast_path: None keeps each layer's setting; True or False switches every
      attention and dropout layer (config.py).

  Returns:
    A new model with the weights of `model`.
  """
  if implementation not in config_lib.LSTM_IMPLEMENTATIONS:
    raise ValueError(f"implementation={implementation!r}: expected one of "
                     f"{config_lib.LSTM_IMPLEMENTATIONS}")
  cfg = model.get_config()

  def patch(node):
    if isinstance(node, dict):
      name, layer_config = node.get("class_name"), node.get("config")
      if name in ("BiLSTM", "SpanHead", "QueryEncoder") and layer_config is not None:
        key = "implementation" if name == "BiLSTM" else "lstm_implementation"
        layer_config[key] = implementation
      if name in FAST_PATH_LAYERS and layer_config is not None and private_fast_path is not None:
        layer_config["private_fast_path"] = bool(private_fast_path)
      for v in node.values():
        patch(v)
    elif isinstance(node, list):
      for v in node:
        patch(v)

  patch(cfg)
  clone = model.__class__.from_config(cfg)
  clone.set_weights(model.get_weights())
  return clone

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
  """Inputs/outputs as docs/design.md ("Model inputs and outputs"); N, L dynamic.

  embeddings: optional (vocab_size, embedding_dim) matrix (GloVe); frozen unless
  model_config.train_embeddings. Without it the embedding is learned from scratch.
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

  v0 = VideoProjection(c.width, c.dropout, name="video_projection")(video, video_mask)  # 1
  query_encoder = QueryEncoder(vocab_size, c.embedding_dim, c.query_lstm_units,
                               train_embeddings, c.dropout, impl, name="query_encoder")
  q0 = query_encoder(tokens, query_mask)  # eq 2
  q = SelfInteraction(c.num_heads, c.dropout, name="query_self")(q0, query_mask)  # eq 3
  v = SelfInteraction(c.num_heads, c.dropout, name="video_self")(v0, video_mask)  # eq 4
  v_hat = FeedForward(c.width, c.ffn_width, c.dropout, name="video_ffn")(v)  # eq 5
  v_hat = TemporalPositionEmbedding(c.max_video_len, name="position")(v_hat)  # eq 5
  q_hat = FeedForward(c.width, c.ffn_width, c.dropout, name="query_ffn")(q)  # eq 6
  s = CrossInteraction(c.num_heads, c.variant, c.cross_fusion, c.cross_skip, c.dropout,
                       name="cross")(v_hat, q_hat, video_mask, query_mask)  # eqs 7-9
  start, end = SpanHead(c.span_lstm_units, c.mlp_width, c.dropout, impl,
                        name="span_head")(s, video_mask)  # eqs 10-14
  if config_lib.has_segment_head(c):
    inside = SegmentHead(c.mlp_width, c.dropout, name="segment_head")(s, video_mask)  # 15-16
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
  """The feature size (Dv) a built or loaded model takes."""
  inputs = model.input
  spec = inputs["video_features"] if isinstance(inputs, dict) else inputs[0]
  return int(spec.shape[-1])


def with_lstm_implementation(model, implementation):
  """The same model (same weights, outputs equal to float rounding) with every Bi-LSTM
  switched to `implementation` ("keras", "scan", or "unrolled" e.g. for TFLite without Flex)."""
  if implementation not in config_lib.LSTM_IMPLEMENTATIONS:
    raise ValueError(f"implementation={implementation!r}: expected one of "
                     f"{config_lib.LSTM_IMPLEMENTATIONS}")
  cfg = model.get_config()

  def patch(node):
    if isinstance(node, dict):
      if node.get("class_name") in ("BiLSTM", "SpanHead", "QueryEncoder") and "config" in node:
        key = "implementation" if node["class_name"] == "BiLSTM" else "lstm_implementation"
        node["config"][key] = implementation
      for v in node.values():
        patch(v)
    elif isinstance(node, list):
      for v in node:
        patch(v)

  patch(cfg)
  clone = model.__class__.from_config(cfg)
  clone.set_weights(model.get_weights())
  return clone

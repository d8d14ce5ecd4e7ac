"""The model under benchmark: cimha_tf.model at the benchmark shapes.

lstm names one of cimha_tf.model's LSTM implementations (config.LSTM_IMPLEMENTATIONS).
Embeddings are a fixed random GloVe-shaped matrix, frozen as in the real configs
(train_embeddings=False).
"""

import numpy as np


def model_config(s):
  from cimha_tf.model import default_config
  c = default_config()
  c.width = s["width"]
  c.num_heads = 4 if s["width"] % 4 == 0 else 1
  c.max_video_len = s["max_video_len"]
  c.max_query_len = s["max_query_len"]
  if s["width"] < 64:  # --quick: keep every size tiny
    c.ffn_width = 2 * s["width"]
    c.query_lstm_units = c.span_lstm_units = s["width"] // 2
    c.mlp_width = s["width"]
    c.embedding_dim = 8
  return c


def build(s, lstm="keras", seed=0, private_fast_path=False):
  """-> (model, model_config) at shapes s (bench.common.shapes()); the config's own
  checks reject an unknown lstm. private_fast_path: model.private_fast_path (the
  private-API attention and dropout subclasses)."""
  import keras
  from cimha_tf.model import build_model
  keras.utils.set_random_seed(seed)
  c = model_config(s)
  c.lstm_implementation = lstm
  c.private_fast_path = private_fast_path
  emb = np.random.default_rng(seed).standard_normal(
      (s["vocab_size"], c.embedding_dim)).astype(np.float32) * 0.3
  return build_model(c, s["feature_dim"], s["vocab_size"], embeddings=emb), c

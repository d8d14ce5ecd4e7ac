"""The model under benchmark: cimha_tf.model at the benchmark shapes, LSTM form switchable.

lstm: "keras" | "unrolled" (cimha_tf.model's two implementations) | "fused" (the
BlockLSTM prototype in bench/fused_lstm.py, same weights) | "dense" (not the model: every
LSTM direction a Dense of its width, so each step's output sees only its own input; the
ceiling that any faster LSTM could reach, bench/lstm_ceiling.py). Embeddings are a fixed random
GloVe-shaped matrix, frozen as in the real configs (train_embeddings=False).
"""

import contextlib

import numpy as np

LSTMS = ("keras", "unrolled", "fused", "dense")


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


@contextlib.contextmanager
def lstm_directions_built_by(factory):
  """Inside: cimha_tf.model builds every Bi-LSTM direction as factory(units, name)
  (benchmarks only; the config still names its own implementation)."""
  from cimha_tf.model import bilstm
  original = bilstm.make_lstm
  bilstm.make_lstm = lambda units, implementation, name: factory(units, name)
  try:
    yield
  finally:
    bilstm.make_lstm = original


def build(s, lstm="keras", seed=0, dropout="ours", private_fast_path=False):
  """-> (model, model_config) at shapes s (bench.common.shapes()).

  private_fast_path: model.private_fast_path (the attention and dropout subclasses).
  dropout="keras" with it: every dropout layer is Keras's own (keras.layers.Dropout's
  mask) instead of cimha_tf.model.dropout's; the same layers and seeds, so the same model.
  """
  import keras
  from cimha_tf.model import build_model
  from cimha_tf.model.dropout import Dropout
  if lstm not in LSTMS:
    raise ValueError(f"lstm={lstm!r}: expected one of {LSTMS}")
  if dropout not in ("ours", "keras"):
    raise ValueError(f"dropout={dropout!r}: expected 'ours' or 'keras'")
  keras.utils.set_random_seed(seed)
  c = model_config(s)
  c.private_fast_path = private_fast_path
  if lstm == "unrolled":
    c.lstm_implementation = "unrolled"
  emb = np.random.default_rng(seed).standard_normal(
      (s["vocab_size"], c.embedding_dim)).astype(np.float32) * 0.3
  ctx = contextlib.nullcontext()
  if lstm == "fused":
    from bench.fused_lstm import model_uses_fused_lstm
    ctx = model_uses_fused_lstm()
  elif lstm == "dense":
    ctx = lstm_directions_built_by(lambda units, name: keras.layers.Dense(units, name=name))
  with ctx:
    model = build_model(c, s["feature_dim"], s["vocab_size"], embeddings=emb)
  if dropout == "keras":
    for layer in model._flatten_layers(include_self=False, recursive=True):
      if type(layer) is Dropout:  # a subclass adding no state: the swap is exact
        layer.__class__ = keras.layers.Dropout
  return model, c

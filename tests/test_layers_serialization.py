"""Every public layer of cimha_tf.model saves and loads as Keras expects: get_config holds
every constructor argument, from_config rebuilds the same layer (same outputs with the same
weights), and a .keras file of a model around it loads back to identical outputs."""

import importlib
import inspect
import pkgutil

import keras
import numpy as np
import pytest

import cimha_tf.model
from cimha_tf.model import attention, cimha, dropout, lstm
from cimha_tf.model import (BiLSTM, CrossInteraction, FeedForward, NoSegmentHead,
                            QueryEncoder, SegmentHead, SelfInteraction, SpanHead,
                            TemporalPositionEmbedding, TokenMask, UnrolledLSTM,
                            VideoProjection)

B, N, L = 2, 5, 3
_rng = np.random.default_rng(0)
VIDEO_MASK = (np.arange(N)[None] < np.array([[N], [2]])).astype(np.float32)
QUERY_MASK = (np.arange(L)[None] < np.array([[L], [1]])).astype(np.float32)
TOKENS = (_rng.integers(1, 11, (B, L)) * QUERY_MASK).astype(np.int32)


def _x(t, d):
  return _rng.normal(size=(B, t, d)).astype(np.float32)


# class -> (constructor arguments, not the defaults where a default exists; call inputs)
CASES = {
    VideoProjection: (dict(width=6, dropout=0.2, private_fast_path=True), [_x(N, 3), VIDEO_MASK]),
    TemporalPositionEmbedding: (dict(max_len=7), [_x(N, 4)]),
    TokenMask: (dict(), [TOKENS]),
    QueryEncoder: (dict(vocab_size=11, embedding_dim=3, lstm_units=2, train_embeddings=False,
                        dropout=0.1, lstm_implementation="scan", private_fast_path=True),
                   [TOKENS, QUERY_MASK]),
    SelfInteraction: (dict(num_heads=2, dropout=0.1, private_fast_path=True),
                      [_x(N, 4), VIDEO_MASK]),
    FeedForward: (dict(width=4, hidden=6, dropout=0.1), [_x(N, 3)]),  # Din != width: skip Dense
    CrossInteraction: (dict(num_heads=2, variant="cimha_wo_ms", cross_fusion="pool_tile",
                            cross_skip=False, dropout=0.1, private_fast_path=True,
                            sentence_product=True),
                       [_x(N, 4), _x(L, 4), VIDEO_MASK, QUERY_MASK]),
    SpanHead: (dict(lstm_units=2, mlp_width=3, dropout=0.1, lstm_implementation="unrolled"),
               [_x(N, 4), VIDEO_MASK]),
    SegmentHead: (dict(mlp_width=3, dropout=0.1, private_fast_path=True), [_x(N, 4), VIDEO_MASK]),
    NoSegmentHead: (dict(), [VIDEO_MASK]),
    BiLSTM: (dict(units=2, implementation="scan"), [_x(N, 3), VIDEO_MASK]),
    UnrolledLSTM: (dict(units=3, unroll=False), [_x(N, 2)]),
    attention.MultiHeadAttention: (dict(num_heads=2, key_dim=3, dropout=0.1), [_x(N, 4), _x(L, 4)]),
    dropout.Dropout: (dict(rate=0.3, seed=5), [_x(N, 4)]),
}


def _public_layer_classes():
  """Every keras Layer subclass defined in a cimha_tf.model module (not imported into it)."""
  found = set()
  for info in pkgutil.iter_modules(cimha_tf.model.__path__):
    if info.name == "decoding":  # TensorFlow ops, no layers
      continue
    module = importlib.import_module(f"cimha_tf.model.{info.name}")
    found |= {c for _, c in inspect.getmembers(module, inspect.isclass)
              if issubclass(c, keras.layers.Layer) and c.__module__ == module.__name__
              and not c.__name__.startswith("_")}
  return found


def test_every_public_layer_has_a_case():
  assert _public_layer_classes() == set(CASES)
  assert lstm.UnrolledLSTM is UnrolledLSTM  # the package exports the classes tested
  # with_lstm_implementation(private_fast_path=...) switches every layer that takes it.
  takes_it = {c.__name__ for c in CASES if "__init__" in c.__dict__
              and "private_fast_path" in inspect.signature(c.__init__).parameters}
  assert takes_it == set(cimha.FAST_PATH_LAYERS)


def _outputs(y):
  return [np.asarray(t) for t in (y if isinstance(y, (tuple, list)) else [y])]


def _build(cls):
  kwargs, inputs = CASES[cls]
  layer = cls(**kwargs, name="layer")
  y = _outputs(layer(*inputs))
  # Random weights, so that a weight left at its initializer would still be caught.
  layer.set_weights([w + _rng.normal(size=w.shape).astype(w.dtype) * 0.3
                     for w in layer.get_weights()])
  return layer, kwargs, inputs, y


@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_get_config_from_config_round_trip(cls):
  layer, kwargs, inputs, _ = _build(cls)
  config = layer.get_config()
  for key, value in kwargs.items():
    assert config[key] == value, key
  if "__init__" in cls.__dict__ and cls is not attention.MultiHeadAttention:
    args = [p.name for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    assert set(args) <= set(config), f"not in get_config: {set(args) - set(config)}"
  clone = cls.from_config(config)
  assert type(clone) is cls and clone.get_config() == config
  clone(*inputs)
  assert [w.path for w in clone.weights] == [w.path for w in layer.weights]
  clone.set_weights(layer.get_weights())
  for a, b in zip(_outputs(clone(*inputs)), _outputs(layer(*inputs))):
    np.testing.assert_array_equal(a, b)
  # Inner dropout layers are rebuilt of the class the configuration names.
  fast = kwargs.get("private_fast_path", cls is attention.MultiHeadAttention)
  drops = [l for l in clone._flatten_layers(include_self=False)
           if isinstance(l, keras.layers.Dropout)]
  assert all((type(l) is dropout.Dropout) == fast for l in drops)


@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_keras_file_round_trip(cls, tmp_path):
  layer, _, inputs, _ = _build(cls)
  symbolic = [keras.Input(x.shape[1:], dtype=str(x.dtype), batch_size=B) for x in inputs]
  model = keras.Model(symbolic, layer(*symbolic))
  want = _outputs(model(inputs))
  path = tmp_path / f"{cls.__name__}.keras"
  model.save(path)
  loaded = keras.models.load_model(path)
  got_layer = loaded.get_layer("layer")
  assert type(got_layer) is cls and got_layer.get_config() == layer.get_config()
  got = _outputs(loaded(inputs))
  assert len(got) == len(want)
  for a, b in zip(got, want):
    np.testing.assert_array_equal(a, b)


def test_seeded_dropout_draws_again_after_round_trip():
  """A from_config copy of a seeded (fast) Dropout drops what the original drops."""
  x = _x(N, 4)
  layer = dropout.Dropout(0.3, seed=5)
  clone = dropout.Dropout.from_config(layer.get_config())
  a, b = np.asarray(layer(x, training=True)), np.asarray(clone(x, training=True))
  assert (a == 0).any()
  np.testing.assert_array_equal(a, b)

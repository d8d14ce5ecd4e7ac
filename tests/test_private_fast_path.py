"""model.private_fast_path: off by default (Keras's public attention and dropout layers);
on, the subclasses in model/attention.py and model/dropout.py, which must give the same
model (weights, outputs) and fail loudly when the private Keras methods they override
change. Files written before the public default (every layer the fast path) still load."""

import inspect
import os
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from cimha_tf import model as M
from cimha_tf.model import attention, dropout
from tests.helpers import DV, VOCAB, random_inputs, tiny_model_config

# Written by _write_legacy_file below with the code of commit d040721, the last before the
# public default (re-zipped with deflate; the entries are as Keras wrote them).
LEGACY = os.path.join(os.path.dirname(__file__), "data", "private_fast_path_d040721.keras")
LEGACY_CONFIG = dict(width=8, num_heads=2, ffn_width=8, query_lstm_units=4, span_lstm_units=4,
                     mlp_width=4, embedding_dim=4, max_video_len=12, max_query_len=6,
                     dropout=0.1)
LEGACY_VIDEO_DIM, LEGACY_VOCAB = 5, 20


def _write_legacy_file(directory):
  """How the legacy file and its inputs/outputs (the _io.npz beside it) were made."""
  keras.utils.set_random_seed(3)
  c = M.default_config()
  c.update(LEGACY_CONFIG)
  model = M.build_model(c, LEGACY_VIDEO_DIM, LEGACY_VOCAB)
  rng = np.random.default_rng(0)
  model.set_weights([w + 0.2 * rng.standard_normal(w.shape).astype(np.float32)
                     for w in model.get_weights()])
  mask = (np.arange(9)[None] < np.array([[9], [4]])).astype(np.float32)
  tokens = rng.integers(1, 20, (2, 5)).astype(np.int32)
  tokens[1, 3:] = 0
  x = {"video_features": rng.normal(size=(2, 9, 5)).astype(np.float32), "video_mask": mask,
       "query_tokens": tokens}
  y = model(x, training=False)
  model.save(os.path.join(directory, "private_fast_path_d040721.keras"))
  np.savez(os.path.join(directory, "private_fast_path_d040721_io.npz"), **x,
           **{k: np.asarray(v) for k, v in y.items()})


def _layers(model, cls):
  return [l for l in model._flatten_layers(include_self=False, recursive=True)
          if isinstance(l, cls)]


def _run(model, x, training=False):
  return {k: np.asarray(v) for k, v in model(x, training=training).items()}


def test_keras_private_api_is_what_the_fast_path_was_written_for():
  """Fails on a Keras release that changed a private method the fast path overrides or
  calls: read the new Keras source against model/attention.py, then update PRIVATE_API."""
  changes = attention.private_api_changes(compare_source=True)
  assert not changes, (f"Keras {keras.__version__} (fast path written for "
                       f"{attention.WRITTEN_FOR}): " + "; ".join(changes))
  layer = keras.layers.MultiHeadAttention(2, 3, dropout=0.1)
  layer.build((1, 4, 6), (1, 5, 6))
  missing = [a for a in attention.PRIVATE_ATTRIBUTES if not hasattr(layer, a)]
  assert not missing, f"keras.layers.MultiHeadAttention has no {missing}"
  assert isinstance(layer._dropout_layer, keras.layers.Dropout)
  assert layer._dropout_layer in layer._layers
  assert layer._attention_axes == (1,)
  # The fast Dropout overrides call() and draws from Keras's seed generator.
  assert str(inspect.signature(keras.layers.Dropout.call)) == "(self, inputs, training=False)"
  assert hasattr(keras.layers.Dropout(0.1), "seed_generator")


def test_the_check_names_a_changed_method(monkeypatch):
  def changed(self, query, key, value, attention_mask=None, training=None, extra=None):
    raise AssertionError("never called")

  monkeypatch.setattr(keras.layers.MultiHeadAttention, "_compute_attention", changed)
  assert attention.private_api_changes() == [
      "_compute_attention(self, query, key, value, attention_mask=None, training=None, "
      "extra=None), written for " + "_compute_attention" + attention.PRIVATE_API[
          "_compute_attention"][0]]
  with pytest.raises(RuntimeError, match=r"_compute_attention.*private_fast_path = False"):
    M.build_model(tiny_model_config(private_fast_path=True), DV, VOCAB)
  M.build_model(tiny_model_config(), DV, VOCAB)  # the public default does not care
  monkeypatch.delattr(keras.layers.MultiHeadAttention, "_masked_softmax")
  assert "_masked_softmax is gone" in attention.private_api_changes()


def test_default_is_keras_public_layers_and_the_switch_the_subclasses():
  assert M.default_config().private_fast_path is False
  public = M.build_model(tiny_model_config(), DV, VOCAB)
  fast = M.build_model(tiny_model_config(private_fast_path=True), DV, VOCAB)
  # 4 attention blocks (query and video self, both cross directions). Dropouts: video
  # projection, query encoder, 2 self-interactions and their MHAs, 2 FFNs, cross and its
  # 2 MHAs, start / end / segment MLPs.
  for model, mha, drop in ((public, keras.layers.MultiHeadAttention, keras.layers.Dropout),
                           (fast, attention.MultiHeadAttention, dropout.Dropout)):
    assert [type(l) for l in _layers(model, keras.layers.MultiHeadAttention)] == [mha] * 4
    assert [type(l) for l in _layers(model, keras.layers.Dropout)] == [drop] * 14
  with pytest.raises(TypeError, match="private_fast_path"):  # the ConfigDict is type-safe
    tiny_model_config(private_fast_path=1)


def _pair(**overrides):
  keras.utils.set_random_seed(1)
  public = M.build_model(tiny_model_config(**overrides), DV, VOCAB)
  fast = M.build_model(tiny_model_config(private_fast_path=True, **overrides), DV, VOCAB)
  rng = np.random.default_rng(2)
  public.set_weights([w + 0.2 * rng.standard_normal(w.shape).astype(np.float32)
                      for w in public.get_weights()])
  return public, fast


def test_both_paths_same_outputs_and_gradients_with_the_same_weights():
  # dropout=0: the two paths draw their masks differently, so only then is a training
  # step comparable; the attention still takes its training branch.
  public, fast = _pair(dropout=0.0)
  assert [(v.path, v.shape) for v in fast.weights] == [(v.path, v.shape) for v in public.weights]
  fast.set_weights(public.get_weights())
  x = random_inputs(np.random.default_rng(3), [9, 4, 1], 9, [5, 2, 1], 5)
  for training in (False, True):
    want, got = _run(public, x, training), _run(fast, x, training)
    for k in want:
      np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
  grads = []
  for model in (public, fast):
    with tf.GradientTape() as tape:
      out = model(x, training=True)
      loss = sum(tf.reduce_sum(tf.sin(3.0 * v)) for v in out.values())
    grads.append([tf.convert_to_tensor(g).numpy()
                  for g in tape.gradient(loss, model.trainable_weights)])
  for a, b, v in zip(*grads, public.trainable_weights):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=v.path)


def test_weights_files_move_between_the_paths(tmp_path):
  public, fast = _pair()
  x = random_inputs(np.random.default_rng(4), [9, 4], 9, [5, 2], 5)
  public.save_weights(tmp_path / "public.weights.h5")
  fast.load_weights(tmp_path / "public.weights.h5")
  want = _run(public, x)
  for k, v in _run(fast, x).items():
    np.testing.assert_allclose(v, want[k], rtol=1e-5, atol=1e-6, err_msg=k)
  fast.save(tmp_path / "fast.keras")
  loaded = keras.models.load_model(tmp_path / "fast.keras")
  assert len(_layers(loaded, attention.MultiHeadAttention)) == 4  # the file keeps its path
  for k, v in _run(loaded, x).items():
    np.testing.assert_allclose(v, want[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.fixture(scope="module")
def legacy():
  io = np.load(LEGACY.replace(".keras", "_io.npz"))
  x = {k: io[k] for k in ("video_features", "video_mask", "query_tokens")}
  return x, {k: io[k] for k in M.OUTPUTS}


def test_a_file_written_before_the_public_default_loads_with_it(legacy):
  x, want = legacy
  model = keras.models.load_model(LEGACY, compile=False)
  assert [type(l) for l in _layers(model, keras.layers.MultiHeadAttention)] == \
      [keras.layers.MultiHeadAttention] * 4
  assert {type(l) for l in _layers(model, keras.layers.Dropout)} == {keras.layers.Dropout}
  for k, v in _run(model, x).items():
    np.testing.assert_allclose(v, want[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_its_weights_load_into_a_model_built_with_the_default(legacy, tmp_path):
  """The file's model.weights.h5 is what model.save_weights writes (the trainer's backup)."""
  x, want = legacy
  with zipfile.ZipFile(LEGACY) as z:
    (tmp_path / "legacy.weights.h5").write_bytes(z.read("model.weights.h5"))
  c = M.default_config()
  c.update(LEGACY_CONFIG)
  model = M.build_model(c, LEGACY_VIDEO_DIM, LEGACY_VOCAB)
  before = _run(model, x)
  model.load_weights(tmp_path / "legacy.weights.h5")
  got = _run(model, x)
  assert not np.allclose(before["start_probs"], want["start_probs"])
  for k, v in got.items():
    np.testing.assert_allclose(v, want[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_with_lstm_implementation_switches_the_path_and_keeps_the_weights(legacy):
  x, want = legacy
  old = keras.models.load_model(LEGACY, compile=False)  # layer configs without the key
  fast = M.with_lstm_implementation(old, "scan", private_fast_path=True)
  assert len(_layers(fast, attention.MultiHeadAttention)) == 4
  assert {type(l) for l in _layers(fast, keras.layers.Dropout)} == {dropout.Dropout}
  back = M.with_lstm_implementation(fast, "keras", private_fast_path=False)
  kept = M.with_lstm_implementation(fast, "keras")  # None: each layer keeps its path
  assert not _layers(back, attention.MultiHeadAttention)
  assert len(_layers(kept, attention.MultiHeadAttention)) == 4
  for model in (fast, back, kept):
    for k, v in _run(model, x).items():
      np.testing.assert_allclose(v, want[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_the_architecture_check_ignores_the_path(legacy):
  """evaluate/export pair a checkpoint with its workdir's config: the path is no
  architecture (same weights, same function), other keys still are."""
  from cimha_tf.experiment import workdir
  c = M.default_config()
  c.update(LEGACY_CONFIG)
  old = keras.models.load_model(LEGACY, compile=False)  # written by the fast path
  workdir.check_architecture(old, c, "legacy.keras", "the config")
  fast = M.with_lstm_implementation(old, "keras", private_fast_path=True)
  workdir.check_architecture(fast, c, "fast.keras", "the config")
  c.dropout = 0.2
  with pytest.raises(ValueError, match=r"fast.keras is not the model the config describes"):
    workdir.check_architecture(fast, c, "fast.keras", "the config")

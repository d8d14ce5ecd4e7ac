"""CI-MHA model: shapes, exact masking, gradients, serialization, LSTM swap, bad inputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cimha_tf import model as M
from cimha_tf.model.bilstm import BiLSTM, reverse_within_length
from cimha_tf.model.cross_interaction import CrossInteraction
from cimha_tf.model.lstm import UnrolledLSTM
from tests.helpers import DV, VOCAB, random_inputs, tiny_model_config


def run(model, inputs, training=False):
  return {k: np.asarray(v) for k, v in model(inputs, training=training).items()}


@pytest.fixture(scope="module")
def models():
  keras.utils.set_random_seed(0)
  return {v: M.build_model(tiny_model_config(v), DV, VOCAB) for v in M.config.VARIANTS}


@pytest.mark.parametrize("n,l", [(1, 1), (5, 3), (24, 8)])
def test_shapes_and_sums(models, n, l):
  rng = np.random.default_rng(n)
  x = random_inputs(rng, [n, max(1, n // 2)], n, [l, 1], l)
  for variant, model in models.items():
    out = run(model, x)
    assert set(out) == {"start_probs", "end_probs", "inside_probs"}
    for name, p in out.items():
      assert p.shape == (2, n) and p.dtype == np.float32, (variant, name)
      assert np.all(p[x["video_mask"] == 0] == 0.0), (variant, name)
    for name in ("start_probs", "end_probs"):
      np.testing.assert_allclose(out[name].sum(1), 1.0, rtol=1e-5)
      assert np.all(out[name] >= 0)
    if variant == "cimha":
      valid = out["inside_probs"][x["video_mask"] > 0]
      assert np.all((valid > 0) & (valid < 1))
    else:
      assert np.all(out["inside_probs"] == 0.0)


@pytest.mark.parametrize("dv", [3, 40])
def test_any_feature_dim(dv):
  model = M.build_model(tiny_model_config(), dv, VOCAB)
  x = random_inputs(np.random.default_rng(1), [6, 2], 6, [3, 2], 4, dv=dv)
  assert run(model, x)["start_probs"].shape == (2, 6)
  assert model.get_layer("video_projection").dense.kernel.shape == (dv, 16)


@pytest.mark.parametrize("variant", M.config.VARIANTS)
def test_padding_never_changes_valid_outputs(models, variant):
  model = models[variant]
  rng = np.random.default_rng(2)
  x = random_inputs(rng, [10, 4, 1], 10, [5, 2, 1], 5)
  base = run(model, x)
  # Garbage (including NaN and huge values) in padded video steps: bitwise identical.
  y = {k: v.copy() for k, v in x.items()}
  pad = y["video_mask"] == 0
  y["video_features"][pad] = rng.normal(scale=1e4, size=(pad.sum(), DV))
  y["video_features"][1, 7, 0] = np.nan
  y["video_features"][2, 3, :] = np.inf
  out = run(model, y)
  for name in base:
    np.testing.assert_array_equal(out[name], base[name], err_msg=name)
  # More padding (longer N, longer L) changes no valid output.
  z = {"video_features": np.concatenate([x["video_features"],
                                         rng.normal(size=(3, 6, DV)).astype(np.float32)], 1),
       "video_mask": np.concatenate([x["video_mask"], np.zeros((3, 6), np.float32)], 1),
       "query_tokens": np.concatenate([x["query_tokens"], np.zeros((3, 3), np.int32)], 1)}
  out = run(model, z)
  for name in base:
    np.testing.assert_allclose(out[name][:, :10], base[name], atol=1e-6, err_msg=name)
    assert np.all(out[name][:, 10:] == 0.0)


def test_valid_inputs_do_change_outputs(models):
  """Guards the masking test: the same perturbation on a VALID step is visible."""
  model = models["cimha"]
  rng = np.random.default_rng(3)
  x = random_inputs(rng, [6], 8, [3], 4)
  base = run(model, x)
  x["video_features"][0, 5] += 3.0
  assert not np.allclose(run(model, x)["start_probs"], base["start_probs"])
  x["query_tokens"][0, 1] = (x["query_tokens"][0, 1] + 1) % VOCAB or 2
  assert not np.allclose(run(model, x)["end_probs"], base["end_probs"])


def _loss(model, x, rng, training=True):
  out = model(x, training=training)
  b, n = x["video_mask"].shape
  s = rng.integers(0, 3, b)
  inside = np.stack([(np.arange(n) >= s[i]) & (np.arange(n) <= s[i] + 2)
                     for i in range(b)]).astype(np.float32)
  inside[x["video_mask"] == 0] = -1
  loss = tf.reduce_mean(M.span_nll(s, out["start_probs"]) + M.span_nll(s + 2, out["end_probs"]))
  return loss + tf.reduce_mean(M.masked_bce(inside, out["inside_probs"]))


@pytest.mark.parametrize("variant", M.config.VARIANTS)
def test_every_weight_gets_a_gradient(models, variant):
  model = models[variant]
  rng = np.random.default_rng(4)
  x = random_inputs(rng, [8, 5, 3, 8], 8, [4, 2, 1, 3], 4)
  with tf.GradientTape() as tape:
    loss = _loss(model, x, rng)
  grads = tape.gradient(loss, model.trainable_weights)
  names = [w.path for w in model.trainable_weights]
  for w, g in zip(model.trainable_weights, grads):
    assert g is not None, w.path
    assert np.any(tf.convert_to_tensor(g).numpy() != 0), w.path
  has_seg = any("segment_head" in p for p in names)
  assert has_seg == (variant == "cimha")
  assert any("mha_vq" in p for p in names) == (variant != "mha")


def test_frozen_and_given_embeddings():
  emb = np.random.default_rng(5).normal(size=(VOCAB, 6)).astype(np.float32)
  frozen = M.build_model(tiny_model_config(), DV, VOCAB, embeddings=emb)
  layer = frozen.get_layer("query_encoder").embedding
  np.testing.assert_array_equal(layer.embeddings.numpy(), emb)
  assert not any("embedding" in w.path for w in frozen.trainable_weights)
  trained = M.build_model(tiny_model_config(train_embeddings=True), DV, VOCAB, embeddings=emb)
  assert any("embedding" in w.path for w in trained.trainable_weights)
  scratch = M.build_model(tiny_model_config(), DV, VOCAB)  # no matrix: always learned
  assert any("embedding" in w.path for w in scratch.trainable_weights)
  with pytest.raises(ValueError, match=r"embeddings has shape \(30, 5\)"):
    M.build_model(tiny_model_config(), DV, VOCAB, embeddings=emb[:, :5])


@pytest.mark.parametrize("variant,fusion", [("cimha", "backprojection"),
                                            ("cimha_wo_ms", "pool_tile")])
def test_config_and_keras_file_round_trip(tmp_path, variant, fusion):
  model = M.build_model(tiny_model_config(variant, cross_fusion=fusion), DV, VOCAB)
  x = random_inputs(np.random.default_rng(6), [7, 3], 7, [4, 1], 4)
  base = run(model, x)
  clone = keras.Model.from_config(model.get_config())
  clone.set_weights(model.get_weights())
  path = tmp_path / "m.keras"
  model.save(path)
  loaded = keras.models.load_model(path)
  for other in (clone, loaded):
    out = run(other, x)
    for name in base:
      np.testing.assert_array_equal(out[name], base[name], err_msg=name)


def test_lstm_implementations_agree(models):
  model = models["cimha"]
  unrolled = M.with_lstm_implementation(model, "unrolled")
  assert any(isinstance(l, UnrolledLSTM) for l in unrolled.get_layer("span_head").start_lstm._layers)
  x = random_inputs(np.random.default_rng(7), [9, 4], 9, [5, 2], 5)
  base = run(model, x)
  out = run(unrolled, x)
  for name in base:
    np.testing.assert_allclose(out[name], base[name], atol=1e-5, err_msg=name)
  for impl in ("scan",):
    other = M.with_lstm_implementation(model, impl)
    for name in base:
      np.testing.assert_allclose(run(other, x)[name], base[name], atol=1e-5, err_msg=impl)


def test_unrolled_lstm_matches_keras_lstm_static_and_dynamic():
  rng = np.random.default_rng(8)
  x = rng.normal(size=(3, 6, 5)).astype(np.float32)
  ref = keras.layers.LSTM(4, return_sequences=True)
  mine = UnrolledLSTM(4)
  expected = np.asarray(ref(x))
  mine(x)
  mine.set_weights(ref.get_weights())
  np.testing.assert_allclose(np.asarray(mine(x)), expected, atol=1e-6)
  dynamic = tf.function(mine, input_signature=[tf.TensorSpec([None, None, 5])])
  np.testing.assert_allclose(dynamic(x).numpy(), expected, atol=1e-6)  # ops.scan path
  scan = UnrolledLSTM(4, unroll=False)
  scan(x)
  scan.set_weights(ref.get_weights())
  np.testing.assert_allclose(np.asarray(scan(x)), expected, atol=1e-6)


def test_bilstm_equals_per_row_unpadded_run():
  rng = np.random.default_rng(9)
  layer = BiLSTM(3)
  x = rng.normal(size=(3, 7, 4)).astype(np.float32)
  lengths = [7, 4, 1]
  mask = (np.arange(7)[None] < np.array(lengths)[:, None]).astype(np.float32)
  out = np.asarray(layer(x, mask))
  for b, n in enumerate(lengths):
    alone = np.asarray(layer(x[b:b + 1, :n], np.ones((1, n), np.float32)))[0]
    np.testing.assert_allclose(out[b, :n], alone, atol=1e-6)
    assert np.all(out[b, n:] == 0)
    # backward half at step 0 has read the whole valid row: differs from a 1-step run
    if n > 1:
      one = np.asarray(layer(x[b:b + 1, :1], np.ones((1, 1), np.float32)))[0]
      assert not np.allclose(alone[0, 3:], one[0, 3:])


def test_reverse_within_length():
  x = np.arange(2 * 5, dtype=np.float32).reshape(2, 5, 1)
  out = np.asarray(reverse_within_length(x, np.array([3, 5])))[..., 0]
  np.testing.assert_array_equal(out, [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]])


@pytest.mark.parametrize("fusion", ["backprojection", "pool_tile"])
def test_cross_interaction_fusions(fusion):
  rng = np.random.default_rng(10)
  layer = CrossInteraction(2, "cimha", fusion, cross_skip=False)
  v = rng.normal(size=(2, 6, 8)).astype(np.float32)
  q = rng.normal(size=(2, 4, 8)).astype(np.float32)
  vm = np.array([[1] * 6, [1] * 3 + [0] * 3], np.float32)
  qm = np.array([[1] * 4, [1] * 2 + [0] * 2], np.float32)
  s = np.asarray(layer(v, q, vm, qm))
  qv, a = layer.mha_qv(v, q, attention_mask=np.broadcast_to(qm[:, None, :] > 0, (2, 6, 4)),
                       return_attention_scores=True)
  a = np.asarray(a)
  _, a_vq, _ = layer.interact(v, q, vm, qm)
  if fusion == "backprojection":  # the layer's own A_vq: padded words get exactly zero weight
    assert np.all(np.asarray(a_vq)[1, :, 2:] == 0.0)
    np.testing.assert_allclose(np.asarray(a_vq), a.mean(1), atol=1e-6)
  else:
    assert a_vq is None
  vq = np.asarray(layer.mha_vq(q, v, attention_mask=np.broadcast_to(vm[:, None, :] > 0,
                                                                    (2, 4, 6))))
  if fusion == "backprojection":
    per_frame = np.einsum("bnl,bld->bnd", a.mean(1), vq)
  else:
    per_frame = np.stack([np.broadcast_to(vq[b, : int(qm[b].sum())].mean(0), (6, 8))
                          for b in range(2)])
  np.testing.assert_allclose(s[..., :8], per_frame, atol=1e-5)
  np.testing.assert_allclose(s[..., 8:], np.asarray(qv), atol=1e-6)


def test_model_rejects_bad_shapes(models):
  model = models["cimha"]
  x = random_inputs(np.random.default_rng(11), [4], 4, [2], 3)
  with pytest.raises(ValueError, match="video_features"):
    model({**x, "video_features": np.zeros((1, 4, DV + 1), np.float32)})
  too_long = random_inputs(np.random.default_rng(11), [25], 25, [2], 3)
  with pytest.raises(ValueError, match="max_video_len=24"):
    model(too_long)


def test_bad_config_values():
  for field, value in [("variant", "cimha2"), ("cross_fusion", "tile"),
                       ("lstm_implementation", "cudnn"), ("num_heads", 3)]:
    with pytest.raises(ValueError, match=f"model.{field}|model.width"):
      M.build_model(tiny_model_config(**{field: value}), DV, VOCAB)

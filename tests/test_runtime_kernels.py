"""Batch-1 TFLite with per-query LSTM weights (cimha_tf/deploy/runtime_kernels.py): the
LSTM ops read fewer input columns and compute the same function as the Keras model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cimha_tf.deploy import quantization, runtime_kernels, tflite
from tests.helpers import TFLITE_L as L, TFLITE_N as N, padded_query_batch as _inputs
from tests.helpers import run_each_query, small_tflite_model as _model


def _tflite_curves(flatbuffer, x):
  """Every example through the batch-1 model, one invoke each."""
  return run_each_query(tflite.TFLiteModel(flatbuffer), x)


def _assert_close(got, want, atol=2e-6):
  for k in tflite.OUTPUTS:
    np.testing.assert_allclose(got[k], want[k], rtol=0, atol=atol, err_msg=k)


@pytest.fixture(scope="module")
def cimha():
  model = _model()
  x = _inputs()
  keras_out = {k: np.asarray(v) for k, v in model(x, training=False).items()}
  return model, x, keras_out


@pytest.fixture(scope="module")
def fast(cimha):
  """The default float32 batch-1 conversion."""
  return tflite.convert(cimha[0], N, L)


def test_fewer_lstm_input_columns_and_same_curves(cimha, fast):
  model, x, keras_out = cimha
  plain = tflite.convert(model, N, L, runtime_kernels=False)
  width, units = 16, 8
  # (steps, input columns, units) per LSTM direction: query, start, end Bi-LSTMs (the
  # video's time axis is free: None).
  assert tflite.lstm_shapes(plain) == [(L, 12, units)] * 2 + [(None, 2 * width, units)] * 2 \
      + [(None, 2 * units, units)] * 2
  assert tflite.lstm_shapes(fast) == [(L, L, units)] * 2 + [(None, L + width, units)] * 2 + \
      [(None, 2 * units, units)] * 2
  fast_out, plain_out = _tflite_curves(fast, x), _tflite_curves(plain, x)
  _assert_close(fast_out, keras_out)
  _assert_close(plain_out, keras_out)
  for k in tflite.OUTPUTS:  # padded steps stay exactly 0
    assert np.all(fast_out[k][x["video_mask"] == 0] == 0), k


def test_float16_takes_them_and_int8_keeps_constant_weights(cimha):
  model, x, keras_out = cimha
  out = tflite.convert_many(model, N, L, ("float16", "dynamic_int8"))
  assert tflite.lstm_shapes(out["float16"])[0] == (L, L, 8)
  assert tflite.lstm_shapes(out["dynamic_int8"])[0] == (L, 12, 8)
  _assert_close(_tflite_curves(out["float16"], x), keras_out, atol=2e-3)


def test_int8_refuses_runtime_lstm_weights(fast):
  with pytest.raises(ValueError, match="computed at run time"):
    quantization.lstm_int8_rest_float16(fast)


@pytest.mark.parametrize("variant,overrides", [("cimha", {"cross_fusion": "pool_tile"}),
                                               ("mha", {})])
def test_other_cross_interactions_keep_the_plain_start_lstm(variant, overrides):
  model = _model(variant, **overrides)
  x = _inputs()
  fast = tflite.convert(model, N, L)
  s_width = 16 if variant == "mha" else 32
  assert tflite.lstm_shapes(fast)[2:4] == [(None, s_width, 8)] * 2
  assert tflite.lstm_shapes(fast)[0] == (L, L, 8)  # the query LSTM still hoisted
  _assert_close(_tflite_curves(fast, x), {k: np.asarray(v) for k, v in
                                          model(x, training=False).items()})


def test_batch_above_one_keeps_constant_weights(cimha):
  model, x, keras_out = cimha
  batched = tflite.convert(model, N, L, batch_size=4)
  assert tflite.lstm_shapes(batched)[:4] == [(L, 12, 8)] * 2 + [(None, 32, 8)] * 2
  got = tflite.TFLiteModel(batched).run_batch(*(x[k] for k in tflite.INPUTS))
  _assert_close(got, keras_out)


def test_hoisted_input_rule_and_values():
  rng = np.random.default_rng(0)
  k = tf.constant(rng.normal(size=(10, 8)).astype(np.float32))
  x = tf.constant(rng.normal(size=(1, 5, 10)).astype(np.float32))
  eye, w = runtime_kernels.hoisted_input(x, k)
  np.testing.assert_array_equal(eye.numpy(), np.eye(5, dtype=np.float32)[None])
  # Step t of the identity input times the per-query weights is step t's projection.
  np.testing.assert_allclose(np.einsum("btd,dk->btk", eye.numpy(), w.numpy()),
                             np.einsum("btd,dk->btk", x.numpy(), k.numpy()), atol=1e-5)
  assert runtime_kernels.hoisted_input(x[:, :, :9], k[:9]) is None  # D < 2T
  assert runtime_kernels.hoisted_input(tf.concat([x, x], 0), k) is None  # batch 2


def test_attention_masks_need_no_select(fast):
  """The attention's masked softmax converts to XNNPACK-delegable ops (ADD, MUL): no
  SELECT_V2 on the (1, heads, T, S) scores; parity is the tests above."""
  from ai_edge_litert.interpreter import Interpreter
  it = Interpreter(model_content=fast)
  tensors = {t["index"]: t for t in it.get_tensor_details()}
  selects = [op for op in it._get_ops_details() if op["op_name"] in ("SELECT", "SELECT_V2")]
  assert selects  # the video features' padding is still zeroed by a select (NaN-safe)
  assert all(len(tensors[op["outputs"][0]]["shape"]) < 4 for op in selects)
  assert sum(op["op_name"] == "SOFTMAX" and len(tensors[op["outputs"][0]]["shape"]) == 4
             for op in it._get_ops_details()) == 4  # query, video self; two cross


def test_additive_masked_softmax_equals_keras_exactly():
  layer = keras.layers.MultiHeadAttention(2, 4)  # the model's default (private_fast_path off)
  layer.build((3, 6, 8), (3, 7, 8))
  rng = np.random.default_rng(1)
  scores = tf.constant(rng.normal(scale=5, size=(3, 2, 6, 7)).astype(np.float32))
  mask = rng.random((3, 6, 7)) > 0.4
  mask[0, 2] = False  # a row with no valid key: 0 everywhere in both
  mask[1] = True
  want = layer._masked_softmax(scores, tf.constant(mask)).numpy()
  got = tflite._additive_masked_softmax(layer)(scores, tf.constant(mask)).numpy()
  np.testing.assert_array_equal(got, want)
  assert np.all(got[0, :, 2] == 0)

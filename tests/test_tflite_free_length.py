"""TFLite with a free video time axis (the default export): any 1..max_video_len steps,
the same curves as padded to max_video_len, and TFLiteModel runs only the valid steps."""

import numpy as np
import pytest

from cimha_tf.deploy import tflite
from tests.helpers import DV, TFLITE_L as L, TFLITE_N as N, padded_query_batch as _inputs
from tests.helpers import small_tflite_model as _model


@pytest.fixture(scope="module")
def setup():
  model = _model()
  x = _inputs()  # valid lengths N, 13, 1, 4
  keras_out = {k: np.asarray(v) for k, v in model(x, training=False).items()}
  return {"model": model, "x": x, "keras": keras_out,
          "free": tflite.convert(model, N, L),
          "fixed": tflite.convert(model, N, L, free_length=False)}


def _input(details, name):
  return next(d for d in details if d["name"].endswith(f"_{name}:0"))


def test_signature_free_axis_with_max_length_default(setup):
  from ai_edge_litert.interpreter import Interpreter
  for form, time_axis in (("free", -1), ("fixed", N)):
    details = Interpreter(model_content=setup[form]).get_input_details()
    feats, mask = _input(details, "video_features"), _input(details, "video_mask")
    assert list(feats["shape_signature"]) == [1, time_axis, DV], form
    assert list(mask["shape_signature"]) == [1, time_axis], form
    # Before any resize both take max_video_len steps.
    assert list(feats["shape"]) == [1, N, DV] and list(mask["shape"]) == [1, N], form
    assert list(_input(details, "query_tokens")["shape_signature"]) == [1, L]
  assert tflite.TFLiteModel(setup["free"]).free_length
  assert not tflite.TFLiteModel(setup["fixed"]).free_length


def test_interpreter_resized_to_the_valid_length_gives_keras_curves(setup):
  """Independent of TFLiteModel: the raw interpreter at each query's own length."""
  from ai_edge_litert.interpreter import Interpreter
  x, want = setup["x"], setup["keras"]
  for b, n in enumerate(x["video_mask"].sum(1).astype(int)):
    it = Interpreter(model_content=setup["free"])
    it.allocate_tensors()
    run = it.get_signature_runner()  # resizes to the shapes it is given
    got = run(video_features=x["video_features"][b:b + 1, :n],
              video_mask=x["video_mask"][b:b + 1, :n], query_tokens=x["query_tokens"][b:b + 1])
    for k in tflite.OUTPUTS:
      assert got[k].shape == (1, n)
      np.testing.assert_allclose(got[k][0], want[k][b, :n], rtol=0, atol=2e-6, err_msg=k)


def test_run_batch_cuts_after_the_last_valid_step_and_pads_back(setup):
  x, want = setup["x"], setup["keras"]
  free, fixed = tflite.TFLiteModel(setup["free"]), tflite.TFLiteModel(setup["fixed"])
  for b in range(1, 4):  # videos of 13, 1, 4 valid steps in N = 20
    args = [x[k][b:b + 1] for k in tflite.INPUTS]
    got, ref = free.run_batch(*args), fixed.run_batch(*args)
    for k in tflite.OUTPUTS:
      assert got[k].shape == (1, N)
      np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=2e-6, err_msg=k)
      np.testing.assert_allclose(got[k][0], want[k][b], rtol=0, atol=2e-6, err_msg=k)
      assert np.all(got[k][0, int(x["video_mask"][b].sum()):] == 0)
  # Inputs already shorter than max_video_len: curves of that length.
  short = free.run_batch(x["video_features"][1:2, :13], x["video_mask"][1:2, :13],
                         x["query_tokens"][1:2])
  np.testing.assert_allclose(short["start_probs"][0], want["start_probs"][1, :13], atol=2e-6)


def test_one_query_call_runs_its_own_length(setup):
  x, want = setup["x"], setup["keras"]
  free = tflite.TFLiteModel(setup["free"])
  n, l = int(x["video_mask"][1].sum()), int((x["query_tokens"][1] != 0).sum())
  got = free(x["video_features"][1, :n], x["query_tokens"][1, :l])
  for k in tflite.OUTPUTS:
    np.testing.assert_allclose(got[k], want[k][1, :n], rtol=0, atol=2e-6, err_msg=k)


def test_lengths_out_of_range_are_clear_errors(setup):
  free, fixed = tflite.TFLiteModel(setup["free"]), tflite.TFLiteModel(setup["fixed"])
  q = np.ones((1, L), np.int32)
  with pytest.raises(ValueError, match=rf"1\.\.{N} video steps"):
    free.run_batch(np.zeros((1, N + 1, DV)), np.ones((1, N + 1)), q)
  with pytest.raises(ValueError, match=rf"\({N} video steps"):
    fixed.run_batch(np.zeros((1, 5, DV)), np.ones((1, 5)), q)
  with pytest.raises(ValueError, match="pool longer videos"):
    free(np.zeros((N + 1, DV)), [2])


def test_batch_above_one_and_int8_take_the_free_axis(setup):
  x, want = setup["x"], setup["keras"]
  out = tflite.convert_many(setup["model"], N, L, ("dynamic_int8",))
  int8 = tflite.TFLiteModel(out["dynamic_int8"])
  assert int8.free_length
  got = int8.run_batch(*(x[k][1:2] for k in tflite.INPUTS))
  # int8 LSTM weights: close, not equal (the test model's curves are smooth).
  np.testing.assert_allclose(got["start_probs"][0], want["start_probs"][1], atol=2e-2)
  batched = tflite.TFLiteModel(tflite.convert(setup["model"], N, L, batch_size=2))
  assert batched.free_length
  got = batched.run_batch(*(x[k][1:3] for k in tflite.INPUTS))  # 13 and 1 valid steps
  for k in tflite.OUTPUTS:
    np.testing.assert_allclose(got[k], want[k][1:3], rtol=0, atol=2e-6, err_msg=k)


def test_unrolled_lstms_keep_fixed_shapes(setup):
  with pytest.raises(ValueError, match="free_length needs lstm='fused'"):
    tflite.convert(setup["model"], N, L, lstm="unrolled", free_length=True)


def test_no_shape_arithmetic_at_run_time(setup):
  """Every tensor's shape follows from the input shapes when the interpreter is resized:
  no op reads a shape at invoke (those make TFLite re-plan each call; they cost the free
  axis ~6% at 128 steps before the export's Dense, position and mask forms)."""
  ops = tflite.op_names(setup["free"])
  assert not ops & {"SHAPE", "REDUCE_PROD", "PACK", "BROADCAST_TO", "FILL", "ZEROS_LIKE",
                    "RANGE"}, ops
  assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops

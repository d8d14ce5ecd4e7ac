"""SavedModel export: both signatures, parity with the Keras model, bad input -> INVALID_ARGUMENT.

The exported model is tests/helpers.deploy_setup()'s (shared by the deploy test modules).
"""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import MAX_QUERY_LEN, MAX_VIDEO_LEN, VIDEO_DIM, deploy_setup, run_module


@pytest.fixture(scope="module")
def setup():
  return deploy_setup()


@pytest.fixture(scope="module")
def loaded(setup):
  from cimha_tf.deploy import saved_model
  return saved_model.load(setup["saved_model"])


def _keras(setup, rows):
  out = setup["model"]({k: v[rows] for k, v in setup["inputs"].items()}, training=False)
  return {k: v.numpy() for k, v in out.items()}


def _video_args(setup, rows):
  x = setup["inputs"]
  return dict(video_features=tf.constant(x["video_features"][rows]),
              video_length=tf.constant(x["video_mask"][rows].sum(1).astype(np.int32)),
              duration=tf.constant(setup["duration"][rows]))


def test_layout_and_both_signatures_listed_by_saved_model_cli(setup):
  path = setup["saved_model"]
  assert path == os.path.join(setup["root"], "export", "cimha", "1")
  assert os.path.isfile(os.path.join(path, "saved_model.pb"))
  assert os.path.isfile(os.path.join(path, "assets.extra", "vocab.json"))
  cli = shutil.which("saved_model_cli")
  if cli is None:
    pytest.skip("saved_model_cli not on PATH")
  shown = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")).stdout
  for needle in ("signature_def['serving_default']", "signature_def['serving_tokens']",
                 "inputs['query'] tensor_info", "inputs['query_tokens'] tensor_info",
                 "inputs['video_features'] tensor_info", "outputs['start_seconds'] tensor_info"):
    assert needle in shown, needle


def test_text_signature_matches_keras_model(setup, loaded):
  sig = loaded[0].signatures["serving_default"]
  rows = np.arange(len(setup["queries"]))
  out = sig(query=tf.constant(setup["queries"]), **_video_args(setup, rows))
  # In-graph tokenisation gives the prepared ids (the Python tokenizer's).
  np.testing.assert_array_equal(out["query_tokens"].numpy(), setup["inputs"]["query_tokens"])
  ref = _keras(setup, rows)
  for name in ("start_probs", "end_probs", "inside_probs"):
    np.testing.assert_allclose(out[name].numpy(), ref[name], atol=1e-5)
  # Windows: brute force over all (i <= j) valid pairs of the Keras curves, in seconds.
  for b in rows[:10]:
    n = int(setup["num_steps"][b])
    t = float(setup["duration"][b])
    p = ref["start_probs"][b, :n, None] * ref["end_probs"][b, None, :n]
    p = np.where(np.triu(np.ones((n, n), bool)), p, -1)
    i, j = np.unravel_index(np.argmax(p), p.shape)
    np.testing.assert_allclose(out["start_seconds"][b, 0], i * t / n, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["end_seconds"][b, 0], (j + 1) * t / n, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["scores"][b, 0], p[i, j], rtol=1e-4)
    assert np.all(np.diff(out["scores"][b].numpy()) <= 1e-7)


def test_export_decodes_with_the_workdirs_span_bound(setup, tmp_path):
  """A workdir whose config bounds windows (eval.max_span_fraction, what training resolved
  from its data) exports a graph that answers those windows: the brute-force best pair of
  the Keras curves among those at most ceil(fraction * n) steps long; the bound is in the
  export's metadata, which the predictor reads."""
  from cimha_tf.deploy import saved_model
  from cimha_tf.experiment import workdir as wd
  workdir = tmp_path / "wd"
  shutil.copytree(setup["workdir"], workdir)
  config = json.loads((workdir / wd.CONFIG).read_text())
  config["eval"]["max_span_fraction"] = 0.3
  (workdir / wd.CONFIG).write_text(json.dumps(config))
  out = json.loads(run_module("cimha_tf.export", f"--workdir={workdir}", "--format=saved_model",
                              f"--output={tmp_path / 'export'}"))
  module, meta = saved_model.load(out["path"])
  assert meta["max_span_fraction"] == 0.3
  rows = np.arange(10)
  got = module.signatures["serving_default"](query=tf.constant(setup["queries"][:10]),
                                             **_video_args(setup, rows))
  ref = _keras(setup, rows)
  for b in rows:
    n = int(setup["num_steps"][b])
    p = ref["start_probs"][b, :n, None] * ref["end_probs"][b, None, :n]
    i, j = np.indices((n, n))
    p = np.where((j >= i) & (j - i < np.ceil(0.3 * n - 1e-4)), p, -1)
    i, j = np.unravel_index(np.argmax(p), p.shape)
    np.testing.assert_array_equal([got["start_steps"][b, 0], got["end_steps"][b, 0]], [i, j])


def test_token_signature_variable_n_and_l(setup, loaded):
  sig = loaded[0].signatures["serving_tokens"]
  x = setup["inputs"]
  rows = np.flatnonzero(x["video_mask"].sum(1) < MAX_VIDEO_LEN)[:6]  # the shorter videos
  assert len(rows) >= 2
  n = int(x["video_mask"][rows].sum(1).max())
  l = int((x["query_tokens"][rows] != 0).sum(1).max())
  assert n < MAX_VIDEO_LEN and l < MAX_QUERY_LEN
  args = _video_args(setup, rows)
  args["video_features"] = args["video_features"][:, :n]
  out = sig(query_tokens=tf.constant(x["query_tokens"][rows, :l]), **args)
  ref = _keras(setup, rows)
  for key in ("start_probs", "end_probs"):
    assert out[key].shape == (len(rows), n)
    np.testing.assert_allclose(out[key].numpy(), ref[key][:, :n], atol=1e-5)
  assert out["start_seconds"].shape == (len(rows), 5)


BAD_TEXT = [
    ("wrong feature dim", dict(video_features=np.zeros((1, 8, 7), np.float32)), "last dimension"),
    ("too many steps", dict(video_features=np.zeros((1, MAX_VIDEO_LEN + 1, VIDEO_DIM), np.float32),
                            video_length=np.array([3], np.int32)), "max_video_len"),
    ("length past N", dict(video_length=np.array([9], np.int32)), "video_length"),
    ("zero length", dict(video_length=np.array([0], np.int32)), "video_length"),
    ("negative duration", dict(duration=np.array([-1.0], np.float32)), "duration"),
    ("infinite duration", dict(duration=np.array([np.inf], np.float32)), "duration"),
    ("NaN feature", dict(video_features=np.full((1, 8, VIDEO_DIM), np.nan, np.float32)), "NaN"),
    ("huge feature", dict(video_features=np.full((1, 8, VIDEO_DIM), 1e30, np.float32)),
     "not finite; video_features too large"),
    ("batch mismatch", dict(duration=np.array([3.0, 4.0], np.float32)), "duration"),
    ("empty query", dict(query=np.array([" “ ”  "])), "no tokens"),
]


@pytest.mark.parametrize("case,change,message", BAD_TEXT, ids=[c[0] for c in BAD_TEXT])
def test_text_signature_bad_input_is_invalid_argument(loaded, case, change, message):
  args = dict(query=np.array(["a person opens the door"]),
              video_features=np.ones((1, 8, VIDEO_DIM), np.float32),
              video_length=np.array([8], np.int32), duration=np.array([10.0], np.float32))
  args.update(change)
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    loaded[0].signatures["serving_default"](**{k: tf.constant(v) for k, v in args.items()})


BAD_TOKENS = [
    ("too long", np.ones((1, MAX_QUERY_LEN + 1), np.int32), "max_query_len"),
    ("id past vocab", np.array([[2, 10 ** 6]], np.int32), "vocab_size"),
    ("negative id", np.array([[2, -1]], np.int32), ">= 0"),
    ("all padding", np.zeros((1, 4), np.int32), "at least one word|>= 1 word"),
    ("word after padding", np.array([[2, 0, 3]], np.int32), "after 0 padding"),
]


@pytest.mark.parametrize("case,tokens,message", BAD_TOKENS, ids=[c[0] for c in BAD_TOKENS])
def test_token_signature_bad_input_is_invalid_argument(loaded, case, tokens, message):
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    loaded[0].signatures["serving_tokens"](
        query_tokens=tf.constant(tokens), video_features=tf.ones((1, 8, VIDEO_DIM)),
        video_length=tf.constant([8]), duration=tf.constant([10.0]))


def test_load_errors_name_the_path(tmp_path):
  from cimha_tf.deploy import saved_model
  with pytest.raises(FileNotFoundError, match="no SavedModel"):
    saved_model.load(tmp_path)
  (tmp_path / "cimha" / "3").mkdir(parents=True)
  (tmp_path / "cimha" / "3" / "saved_model.pb").write_bytes(b"not a protobuf")
  with pytest.raises(ValueError, match="cannot load SavedModel .*cimha/3"):
    saved_model.load(tmp_path)


def test_truncated_checkpoint_is_named_as_such(setup, tmp_path):
  """Keras calls a truncated .keras file "File not found"; ours says what it is."""
  from cimha_tf.experiment import workdir as wd
  good = os.path.join(setup["workdir"], wd.BEST)
  bad = tmp_path / "best.keras"
  bad.write_bytes(open(good, "rb").read()[:1000])
  with pytest.raises(ValueError, match=r"best.keras: not a .keras \(zip\) archive \(1000 bytes\)"):
    wd.load_model(str(bad))
  assert wd.load_model(good).count_params() == setup["model"].count_params()


def test_export_binary_errors_are_one_line(setup, tmp_path):
  """The binary's own checks end it with exit status 1 and one FATAL line, no traceback."""
  work = tmp_path / "work"
  shutil.copytree(setup["workdir"], work)
  (work / "best.keras").write_bytes(b"PK\x03\x04 cut short")
  proc = run_module("cimha_tf.export", f"--workdir={work}", f"--output={tmp_path / 'out'}",
                    check=False)
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  fatal = [l for l in proc.stderr.splitlines() if l.startswith("FATAL:")]
  assert len(fatal) == 1 and "cannot load checkpoint" in fatal[0] and "best.keras" in fatal[0]
  assert not (tmp_path / "out").exists()


def test_export_refuses_to_overwrite_a_served_version(setup):
  import types
  from cimha_tf.deploy.exporter import export_saved_model
  trained = types.SimpleNamespace(model=setup["model"], vocab_tokens=setup["tokens"],
                                  model_config=None, top_k=5, checkpoint="best.keras",
                                  feature_recipe=None, max_span_fraction=None)
  with pytest.raises(FileExistsError, match="cimha/1 exists"):
    export_saved_model(trained, os.path.join(setup["root"], "export"))


def test_export_refuses_a_file_where_its_folder_goes(setup, tmp_path):
  import types
  from cimha_tf.deploy.exporter import export_saved_model
  trained = types.SimpleNamespace(model=setup["model"], vocab_tokens=setup["tokens"],
                                  model_config=None, top_k=5, checkpoint="best.keras",
                                  feature_recipe=None, max_span_fraction=None)
  (tmp_path / "a_file").write_text("x")
  with pytest.raises(ValueError, match=f"{tmp_path / 'a_file'} is a file: the SavedModel export "
                                       "needs a folder there"):
    export_saved_model(trained, str(tmp_path / "a_file"))


@pytest.mark.parametrize("flag,message", [
    ("--tflite_batch_size=0", "flag --tflite_batch_size=0: 0 is not a positive integer"),
    ("--top_k=0", "flag --top_k=0: 0 is not a positive integer"),
    ("--version=-1", "flag --version=-1: -1 is not a non-negative integer"),
    ("--tflite_free_length", "--tflite_free_length needs --tflite_lstm=fused")])
def test_export_flag_errors_are_usage_errors(tmp_path, flag, message):
  """Checked before the workdir is read; they meant a crash inside the model or a silent
  default before."""
  r = run_module("cimha_tf.export", f"--workdir={tmp_path}", f"--output={tmp_path / 'm.tflite'}",
                 "--format=tflite", "--tflite_lstm=unrolled", flag, check=False)
  assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]


@pytest.mark.parametrize("args,message", [
    (["--format=tflite", "--output=m.tflite", "--top_k=3", "--version=2"],
     "--version, --top_k apply to --format=saved_model only"),
    (["--output=EXPORT", "--quantize=float16"], "--quantize applies to --format=tflite only"),
    (["--output=EXPORT", "--tflite_batch_size=4", "--notflite_free_length"],
     "--tflite_batch_size, --tflite_free_length apply to --format=tflite only"),
    (["--output=m.tflite"], "m.tflite names a .tflite file but --format is saved_model")])
def test_export_flags_of_the_other_format_are_usage_errors(tmp_path, args, message):
  """They were ignored without a word (a .tflite file holds no top_k; --output=m.tflite
  without --format=tflite wrote a SavedModel folder named m.tflite)."""
  args = [a.replace("--output=", f"--output={tmp_path}/") for a in args]
  r = run_module("cimha_tf.export", f"--workdir={tmp_path}", *args, check=False)
  assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]

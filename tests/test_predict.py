"""predict: SavedModel folder or .tflite, any feature file layout, windows in seconds."""

import json

import h5py
import numpy as np
import pytest

from tests import helpers
from tests.helpers import MAX_VIDEO_LEN, VIDEO_DIM, deploy_setup, run_module


@pytest.fixture(scope="module")
def setup():
  return deploy_setup()


@pytest.fixture(scope="module")
def predictors(setup):
  from cimha_tf.deploy.predictor import load_predictor
  return {"saved_model": load_predictor(setup["saved_model"]),
          "tflite": load_predictor(setup["tflite"])}


def _keras_top_windows(setup, b, k, features=None, duration=None):
  """Brute-force top-k windows in seconds from the Keras curves of test row b (with its
  video replaced by `features` of MAX_VIDEO_LEN steps lasting `duration`, if given)."""
  x = {key: v[b:b + 1] for key, v in setup["inputs"].items()}
  n, t = int(setup["num_steps"][b]), float(setup["duration"][b])
  if features is not None:
    x["video_features"], x["video_mask"] = features[None], np.ones_like(x["video_mask"])
    n, t = MAX_VIDEO_LEN, duration
  out = setup["model"](x, training=False)
  s, e = out["start_probs"].numpy()[0, :n], out["end_probs"].numpy()[0, :n]
  pairs = sorted(((s[i] * e[j], i, j) for i in range(n) for j in range(i, n)),
                 key=lambda p: (-p[0], p[1], p[2]))[:k]
  return [[i * t / n, (j + 1) * t / n, p] for p, i, j in pairs]


@pytest.mark.parametrize("fmt", ["saved_model", "tflite"])
def test_predict_matches_keras_windows(setup, predictors, fmt):
  for b in (0, 5):
    n = int(setup["num_steps"][b])
    got = predictors[fmt].predict(setup["inputs"]["video_features"][b, :n], setup["queries"][b],
                                  float(setup["duration"][b]), top_k=3)
    want = _keras_top_windows(setup, b, 3)
    np.testing.assert_allclose(np.array(got)[:, :2], np.array(want)[:, :2], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.array(got)[:, 2], np.array(want)[:, 2], rtol=1e-3)


def test_phone_side_steps_of_the_readme_give_the_saved_model_windows(setup):
  """export/README.md's TFLite steps, as a phone runner takes them: only the .tflite and
  its vocab.json, one LiteRT interpreter reused across queries (allocate, then reset the
  LSTM state before each), inputs and outputs by signature name, each video at its own
  length, then decode_spans and spans_to_seconds: the SavedModel's windows in seconds."""
  import os
  import tensorflow as tf
  from ai_edge_litert.interpreter import Interpreter
  from cimha_tf.data.text import Vocabulary
  from cimha_tf.deploy import saved_model
  from cimha_tf.model import decode_spans, spans_to_seconds
  signature = saved_model.load(setup["saved_model"])[0].signatures["serving_default"]
  vocab = Vocabulary.load(os.path.join(os.path.dirname(setup["tflite"]), "vocab.json"))
  interpreter = Interpreter(model_path=setup["tflite"])
  interpreter.allocate_tensors()
  runner = interpreter.get_signature_runner("serving_default")
  max_query_len = int(runner.get_input_details()["query_tokens"]["shape"][1])
  for b in (0, 1, 2, 0):  # a repeat: state left from the queries before must not leak
    n, duration = int(setup["num_steps"][b]), float(setup["duration"][b])
    feats = setup["inputs"]["video_features"][b:b + 1, :n]
    interpreter.reset_all_variables()
    out = runner(video_features=feats, video_mask=np.ones((1, n), np.float32),
                 query_tokens=vocab.encode(setup["queries"][b], max_query_len)[None])
    start, end, scores = decode_spans(out["start_probs"], out["end_probs"],
                                      np.ones((1, n), np.float32), 5)
    start_s, end_s = spans_to_seconds(start, end, [duration], [n])
    want = signature(query=tf.constant([setup["queries"][b]]), video_features=tf.constant(feats),
                     video_length=tf.constant([n]), duration=tf.constant([duration]))
    np.testing.assert_allclose(start_s.numpy(), want["start_seconds"].numpy(), atol=1e-5)
    np.testing.assert_allclose(end_s.numpy(), want["end_seconds"].numpy(), atol=1e-5)
    np.testing.assert_allclose(scores.numpy(), want["scores"].numpy(), rtol=1e-4)


def test_top_k_beyond_the_exported_k_is_decoded_from_curves(setup, predictors):
  b = 0
  n = int(setup["num_steps"][b])
  got = predictors["saved_model"].predict(setup["inputs"]["video_features"][b, :n],
                                          setup["queries"][b], float(setup["duration"][b]),
                                          top_k=8)
  assert len(got) == 8
  np.testing.assert_allclose(np.array(got)[:, :2], np.array(_keras_top_windows(setup, b, 8))[:, :2],
                             rtol=1e-5, atol=1e-4)


def test_long_video_is_pooled_and_both_formats_agree(setup, predictors):
  """A video longer than max_video_len: both formats give Keras's windows on the mean-pooled
  features (pooling.pool_to_max_len, the preparation's own pooling)."""
  from cimha_tf.data.pooling import pool_to_max_len
  rng = np.random.default_rng(1)
  feats = rng.normal(size=(3 * MAX_VIDEO_LEN + 5, VIDEO_DIM)).astype(np.float32)
  want = _keras_top_windows(setup, 0, 5, pool_to_max_len(feats, MAX_VIDEO_LEN), 60.0)
  for fmt in ("saved_model", "tflite"):
    got = predictors[fmt].predict(feats, setup["queries"][0], 60.0, top_k=5)
    assert len(got) == 5
    np.testing.assert_allclose(np.array(got)[:, :2], np.array(want)[:, :2], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.array(got)[:, 2], np.array(want)[:, 2], rtol=1e-3)


@pytest.mark.parametrize("fmt,layout", [("saved_model", "v.npy"), ("tflite", "v.h5")])
def test_cli_and_every_feature_layout(setup, predictors, tmp_path, fmt, layout):
  from cimha_tf.data.features import load_feature_file
  feats = setup["inputs"]["video_features"][0, :int(setup["num_steps"][0])]
  np.save(tmp_path / "v.npy", feats)
  np.savez(tmp_path / "v.npz", features=feats)
  with h5py.File(tmp_path / "v.h5", "w") as f:
    f["SYN0000"] = feats
  query, duration = setup["queries"][0], float(setup["duration"][0])
  want = predictors[fmt].predict(feats, query, duration, top_k=3)
  for name in ("v.npy", "v.npz", "v.h5"):  # what the binary reads, in-process
    got = predictors[fmt].predict(load_feature_file(tmp_path / name), query, duration, top_k=3)
    np.testing.assert_allclose(got, want, rtol=1e-6)
  model = setup["saved_model"] if fmt == "saved_model" else setup["tflite"]
  out = json.loads(run_module("cimha_tf.predict", f"--model={model}",
                              f"--features={tmp_path / layout}", f"--query={query}",
                              f"--duration={duration}", "--top_k=3"))
  assert out["num_steps"] == feats.shape[0] and out["duration"] == duration
  known = set(setup["tokens"])  # a test query may hold a word seen only in the test split
  assert out["unknown_words"] == [w for w in query.lower().rstrip(".").split() if w not in known]
  np.testing.assert_allclose(out["windows"], want, rtol=1e-5)


@pytest.mark.parametrize("fmt", ["saved_model", "tflite"])
def test_cli_on_real_clip_features(setup, shared_data, fmt):
  """The real 15 x 512 CLIP features of a Charades video, with the 512-d synthetic model."""
  model = setup["saved_model"] if fmt == "saved_model" else setup["tflite"]
  path = shared_data / "sample_video" / "charades_sample_clip_vid.npz"
  out = json.loads(run_module("cimha_tf.predict", f"--model={model}", f"--features={path}",
                              "--query=a person opens the door.", "--clip_seconds=2",
                              "--top_k=5"))
  assert out["duration"] == 30.0 and out["num_steps"] == 15
  assert len(out["windows"]) == 5
  scores = [w[2] for w in out["windows"]]
  assert scores == sorted(scores, reverse=True) and all(0 < p <= 1 for p in scores)
  for s, e, _ in out["windows"]:
    assert 0 <= s < e <= 30.0 + 1e-4
    assert abs(s / 2 - round(s / 2)) < 1e-4 and abs(e / 2 - round(e / 2)) < 1e-4


def test_bad_input_errors(setup, predictors, tmp_path):
  from cimha_tf.deploy.predictor import load_predictor, resolve_duration
  feats = np.zeros((4, VIDEO_DIM), np.float32)
  for p in predictors.values():
    with pytest.raises(ValueError, match="non-empty sentence"):
      p.predict(feats, "   ", 10.0)
    with pytest.raises(ValueError, match="duration"):
      p.predict(feats, "a door", float("nan"))
    with pytest.raises(ValueError, match=f"v.npy: feature dimension 7, expected {VIDEO_DIM} "
                       r"\(the model's video_features input"):
      p.predict(np.zeros((4, 7), np.float32), "a door", 10.0, source="v.npy")
    with pytest.raises(ValueError, match="NaN"):
      p.predict(np.full((4, VIDEO_DIM), np.nan, np.float32), "a door", 10.0)
    with pytest.raises(ValueError, match="not finite; video_features too large in magnitude"):
      p.predict(np.full((4, VIDEO_DIM), 1e30, np.float32), "a door", 10.0)  # no empty answer
  for p in predictors.values():  # TFLite: the host tokenizer; SavedModel: its graph's check
    with pytest.raises(ValueError, match=r"query '“ ”'.* has no tokens \(empty,? or only ignored"):
      p.predict(feats, "“ ”", 10.0)
  with pytest.raises(ValueError, match="--duration"):
    resolve_duration(None, None, 15)
  assert resolve_duration(None, 2.0, 15) == 30.0
  with pytest.raises(FileNotFoundError, match="nothing.tflite"):
    load_predictor(tmp_path / "nothing.tflite")
  with pytest.raises(FileNotFoundError, match="vocab"):
    (tmp_path / "m.tflite").write_bytes(open(setup["tflite"], "rb").read())
    load_predictor(tmp_path / "m.tflite")
  # A vocab.json of another size beside it: GATHER would read past the table (LiteRT's
  # RuntimeError) or the ids would mean other words.
  (tmp_path / "vocab.json").write_text(json.dumps({"tokens": setup["tokens"] + ["extra"]}))
  with pytest.raises(ValueError, match=rf"vocab.json has {len(setup['tokens']) + 1} tokens but "
                                       rf".*m.tflite's word embedding has {len(setup['tokens'])} rows"):
    load_predictor(tmp_path / "m.tflite")


def test_saved_model_without_its_export_metadata_is_named(setup, tmp_path):
  """assets.extra/cimha_export.json holds what the graph does not expose (max_video_len,
  video_dim...): a version folder copied without it, or with it cut short, was a KeyError
  traceback or a JSON error naming no file."""
  import shutil
  from cimha_tf.deploy.predictor import load_predictor
  copy = tmp_path / "cimha" / "1"
  shutil.copytree(setup["saved_model"], copy)
  meta = copy / "assets.extra" / "cimha_export.json"
  text = meta.read_text()
  meta.unlink()
  with pytest.raises(ValueError, match=f"{meta}: missing, or without .*'max_video_len'"):
    load_predictor(tmp_path)
  meta.write_text(text[:len(text) // 2])
  with pytest.raises(ValueError, match=f"{meta} is not valid JSON"):
    load_predictor(tmp_path)


def test_unknown_words_are_reported(setup, predictors, tmp_path):
  """The model sees <unk> for words outside its vocabulary: the JSON lists them and stderr
  warns, saying so plainly when no word of the query is known."""
  for p in predictors.values():
    assert p.unknown_words("a person zzqx opens the door xxyq") == ["zzqx", "xxyq"]
    assert p.unknown_words("a person opens the door") == []
  np.save(tmp_path / "v.npy", setup["inputs"]["video_features"][0, :8])
  r = helpers.run_binary("cimha_tf.predict", f"--model={setup['tflite']}",
                         f"--features={tmp_path / 'v.npy'}", "--query=zzqx xxyq", "--duration=8")
  assert json.loads(r.stdout)["unknown_words"] == ["zzqx", "xxyq"]
  assert ("2 of the query's 2 words are not in the model's vocabulary ['zzqx', 'xxyq']; the "
          "model sees <unk> for them: it sees no word of the query") in r.stderr
  assert "only punctuation" not in r.stderr
  # Punctuation is in the vocabulary (GloVe has it): no <unk> warning said anything.
  r = helpers.run_binary("cimha_tf.predict", f"--model={setup['tflite']}",
                         f"--features={tmp_path / 'v.npy'}", "--query=... ?", "--duration=8")
  assert "the query has no word, only punctuation ['.', '.', '.', '?']" in r.stderr


def test_cli_bad_input_is_one_fatal_line(setup, tmp_path):
  """Exit status 1 and the check's message naming the file, without a traceback."""
  np.save(tmp_path / "narrow.npy", np.zeros((6, 7), np.float32))
  proc = run_module("cimha_tf.predict", f"--model={setup['tflite']}",
                    f"--features={tmp_path / 'narrow.npy'}", "--query=a door",
                    "--duration=12", check=False)
  assert proc.returncode == 1 and proc.stdout == "", proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  assert (f"FATAL: FeatureError: {tmp_path / 'narrow.npy'}: feature dimension 7, expected "
          f"{VIDEO_DIM} (the model's video_features input, fixed at training: features of the "
          "extractor its training data used)") in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--duration=30", "--clip_seconds=2"], "pass --duration or --clip_seconds, not both"),
    ([], "the video's duration is unknown: pass --duration=SECONDS"),
    (["--duration=-3"], "--duration=-3.0: expected a finite number of seconds > 0"),
    (["--duration=inf"], "--duration=inf: expected a finite number of seconds > 0"),
    (["--clip_seconds=0"], "--clip_seconds=0.0: expected a finite number of seconds > 0")])
def test_cli_duration_flags_are_usage_errors(tmp_path, args, message):
  """Flag values out of range or a bad flag combination: a bad command line (status 2,
  docs/design.md), found before the model or the features are read."""
  r = helpers.run_binary("cimha_tf.predict", f"--model={tmp_path / 'none.tflite'}",
                         f"--features={tmp_path / 'none.npy'}", "--query=a door", *args,
                         check=False)
  assert r.returncode == 2 and message in r.stderr, (r.returncode, r.stderr[-2000:])


def test_graph_check_messages_are_cut_to_their_readable_part():
  from cimha_tf.deploy.predictor import _assertion
  numerics = ("Graph execution error:\n\nDetected at node VerifyFinite/CheckNumerics defined at "
              "(most recent call last):\n<stack traces unavailable>\nvideo_features: NaN or inf "
              "at a valid step : Tensor had NaN values\n\t [[{{node VerifyFinite/CheckNumerics}}]]")
  assert _assertion(numerics) == "video_features: NaN or inf at a valid step : Tensor had NaN values"
  assertion = ("Graph execution error:\n\nassertion failed: [video_length: must be <= N] "
               "[Condition x <= y did not hold element-wise:] [x (video_length:0) = ] [11]")
  assert _assertion(assertion) == "video_length: must be <= N"

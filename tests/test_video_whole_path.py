"""From video files to moments, the whole way: extract -> prepare -> train (tiny) -> export
-> predict on a video. The default-suite form runs in process with a small user backbone
(a .keras file); the slow form runs the binaries with the random-weight CLIP extractor."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("av")

from cimha_tf.video.recipe import Recipe  # noqa: E402

from cimha_tf.video.synthetic import QUERIES, write_coloured_video, write_coloured_videos, write_queries  # noqa: E402


def make_videos(root):
  """18 videos (12 train, 3 val, 3 test) and a long one (44 s: 22 clips, beyond the tiny
  config's 16 steps)."""
  videos = os.path.join(root, "videos")
  plan = write_coloured_videos(videos)
  long_video = write_coloured_video(os.path.join(root, "long.mkv"), 44.0,
                                    {(220, 30, 30): (30.0, 36.0), (30, 30, 220): (4.0, 8.0)})
  return videos, plan, long_video


def _mean_colour_backbone(path):
  import keras
  keras.utils.set_random_seed(0)
  inputs = keras.Input((16, 16, 3))
  x = keras.layers.GlobalAveragePooling2D()(inputs)
  keras.Model(inputs, keras.layers.Dense(8, activation="tanh")(x)).save(path)
  return Recipe("mean_colour", clip_seconds=2.0, size=16, output_dim=8, weights=path)


def _check_video_result(result, duration, clips, mode):
  assert result["mode"] == mode and result["num_clips"] == clips
  assert result["duration"] == pytest.approx(duration)
  assert [p["query"] for p in result["predictions"]] == list(QUERIES)
  for p in result["predictions"]:
    ws = p["pred_relevant_windows"]
    assert ws and all(0 <= s <= e <= duration + 1e-3 for s, e, _ in ws)
    assert [w[2] for w in ws] == sorted((w[2] for w in ws), reverse=True)
    assert len(p["pred_saliency_scores"]) == clips


def test_video_to_moment_in_process(tmp_path):
  from cimha_tf.data import prepare
  from cimha_tf.deploy.exporter import export_saved_model, export_tflite
  from cimha_tf.deploy.predictor import load_predictor
  from cimha_tf.deploy.source import load_workdir
  from cimha_tf.deploy import video_predictor as vp
  from cimha_tf.training import trainer
  from tests import helpers as testing
  from cimha_tf.video import extract, extractor as extractor_lib

  videos, plan, long_video = make_videos(str(tmp_path))
  recipe = _mean_colour_backbone(str(tmp_path / "backbone.keras"))
  backbone = extractor_lib.user_model_extractor(recipe.weights, recipe)
  feats = str(tmp_path / "features")
  summary = extract.extract_videos(videos, feats, backbone, progress=False)
  assert summary["extracted"] == 18 and not summary["failed"]
  durations = json.load(open(os.path.join(feats, "durations.json")))
  queries = write_queries(str(tmp_path / "queries"), plan, durations)
  prepared = str(tmp_path / "prepared")
  meta = prepare.prepare("jsonl", queries, feats, prepared, max_video_len=16, max_query_len=6,
                         progress=False)
  assert meta["feature_recipe"] == recipe.to_dict()

  config = testing.tiny_config(prepared, epochs=1)
  workdir = str(tmp_path / "workdir")
  trainer.train(config, workdir, verbose=0)
  export = export_saved_model(load_workdir(workdir), str(tmp_path / "export"))["path"]
  assert json.load(open(os.path.join(export, "assets.extra", "cimha_export.json")))[
      "feature_recipe"] == recipe.to_dict()

  tflite = export_tflite(load_workdir(workdir), str(tmp_path / "tflite" / "m.tflite"))["path"]
  assert json.load(open(str(tmp_path / "tflite" / "m.recipe.json"))) == recipe.to_dict()

  predictor = load_predictor(export)
  video = vp.encode_video(predictor, long_video, extractor_model=recipe.weights)
  assert video.features.shape == (22, 8) and video.duration == pytest.approx(44.0)
  for mode in ("pool", "window"):
    result = vp.predict_video(predictor, video, list(QUERIES), top_k=3, long_video=mode)
    _check_video_result(result, 44.0, 22, mode)
    # the TFLite model (one query at a time) answers as the SavedModel (a batch of queries)
    lite = vp.predict_video(load_predictor(tflite), video, list(QUERIES), top_k=3, long_video=mode)
    for a, b in zip(result["predictions"], lite["predictions"]):
      np.testing.assert_allclose(a["pred_relevant_windows"][0], b["pred_relevant_windows"][0], atol=2e-3)
      np.testing.assert_allclose(a["pred_saliency_scores"], b["pred_saliency_scores"], atol=2e-3)
  # the features equal the extraction's own (the video encoded with the training recipe)
  np.testing.assert_allclose(video.features, backbone.extract_video(long_video)[0], rtol=1e-6)
  # another recipe is refused, naming the one the model needs
  other = extractor_lib.Extractor(backbone._fn, Recipe("mean_colour", clip_seconds=1.0, size=16,
                                                       output_dim=8))
  with pytest.raises(ValueError, match="clip_seconds.*It needs: mean_colour"):
    vp.encode_video(predictor, long_video, extractor=other)


@pytest.mark.slow
def test_video_to_moment_with_the_binaries_and_random_clip(tmp_path):
  """The README's path with the built-in CLIP extractor (random weights), binaries only."""
  from tests import helpers as testing
  videos, plan, long_video = make_videos(str(tmp_path))
  feats = tmp_path / "features"
  testing.run_binary("cimha_tf.extract_features", f"--videos={videos}", f"--output={feats}",
                     "--weights=random", "--noprogress")
  durations = json.loads((feats / "durations.json").read_text())
  queries = write_queries(str(tmp_path / "queries"), plan, durations)
  prepared = tmp_path / "prepared"
  testing.run_binary("cimha_tf.prepare_data", "--dataset=jsonl", f"--annotations={queries}",
                     f"--features={feats}", f"--output_dir={prepared}", "--max_video_len=16",
                     "--max_query_len=6")
  config = testing.write_tiny_config_file(str(tmp_path / "config.py"), prepared, epochs=1)
  testing.run_binary("cimha_tf.train", f"--config={config}", f"--workdir={tmp_path / 'w'}")
  testing.run_binary("cimha_tf.export", f"--workdir={tmp_path / 'w'}", f"--output={tmp_path / 'e'}")
  out = testing.run_binary("cimha_tf.predict", f"--model={tmp_path / 'e'}", f"--video={long_video}",
                           *[f"--query={q}" for q in QUERIES], "--long_video=window", "--top_k=3")
  result = json.loads(out.stdout)
  assert "random weights" in result["recipe"]
  _check_video_result(result, 44.0, 22, "window")
  assert "overlapping windows" in out.stderr and "embed" in out.stderr

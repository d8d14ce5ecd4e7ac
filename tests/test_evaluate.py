"""The evaluate binary (both modes) and the runner that turns model outputs into rows."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from cimha_tf.evaluation import runner
from cimha_tf.evaluation import workdir_eval
from tests import helpers
from cimha_tf.experiment import workdir as wd

METRIC_KEYS = ("R1@0.3", "R1@0.5", "R1@0.7", "R5@0.3", "R5@0.5", "R5@0.7", "mIoU")


class FixedModel:
  """Stand-in for a Keras model: returns the given probabilities for any batch."""

  def __init__(self, start, end, inside):
    self.out = {k: tf.constant(v, tf.float32) for k, v in
                (("start_probs", start), ("end_probs", end), ("inside_probs", inside))}

  def __call__(self, inputs, training=False):
    return self.out


def brute_force_top_k(start, end, n, k):
  pairs = sorted(((start[i] * end[j], -i, -j) for i in range(n) for j in range(i, n)), reverse=True)
  return [(-i, -j, s) for s, i, j in pairs[:k]]


def test_predict_rows_matches_brute_force_decoding_in_seconds():
  rng = np.random.default_rng(0)
  n_max, steps, durations = 6, np.array([6, 4]), np.array([12.0, 30.0])
  mask = (np.arange(n_max)[None] < steps[:, None]).astype(np.float32)
  start = rng.random((2, n_max)) * mask
  end = rng.random((2, n_max)) * mask
  start /= start.sum(1, keepdims=True)
  end /= end.sum(1, keepdims=True)
  inside = rng.random((2, n_max)) * mask
  inputs = {"video_features": np.zeros((2, n_max, 3), np.float32), "video_mask": mask,
            "query_tokens": np.ones((2, 4), np.int32)}
  meta = {"qid": np.array([7, 9], np.int64), "vid": np.array([b"a", b"b"]),
          "duration": durations.astype(np.float32), "num_steps": steps.astype(np.int32)}
  ds = tf.data.Dataset.from_tensors((inputs, meta))
  curves = {}
  rows = runner.predict_rows(FixedModel(start, end, inside), ds, top_k=5,
                             queries={7: "q seven"}, progress=False, curves=curves)
  assert [r["qid"] for r in rows] == [7, 9] and [r["vid"] for r in rows] == ["a", "b"]
  assert rows[0]["query"] == "q seven" and rows[1]["query"] == ""
  for b, row in enumerate(rows):
    n, T = steps[b], durations[b]
    expected = brute_force_top_k(start[b], end[b], n, 5)
    got = row["pred_relevant_windows"]
    assert len(got) == 5
    for (i, j, score), (s, e, sc) in zip(expected, got):
      assert s == pytest.approx(i * T / n, abs=1e-4) and e == pytest.approx((j + 1) * T / n, abs=1e-4)
      assert sc == pytest.approx(score, rel=1e-5)
    np.testing.assert_allclose(row["pred_saliency_scores"], inside[b, :n], atol=1e-6)
    np.testing.assert_allclose(curves[row["qid"]][0], start[b, :n], atol=1e-6)


def test_predict_rows_drops_missing_windows_of_a_one_step_video():
  inputs = {"video_features": np.zeros((1, 3, 2), np.float32),
            "video_mask": np.array([[1, 0, 0]], np.float32), "query_tokens": np.ones((1, 2), np.int32)}
  meta = {"qid": np.array([1]), "vid": np.array([b"v"]), "duration": np.array([5.0], np.float32),
          "num_steps": np.array([1], np.int32)}
  probs = np.array([[1.0, 0, 0]])
  rows = runner.predict_rows(FixedModel(probs, probs, probs), tf.data.Dataset.from_tensors((inputs, meta)),
                             top_k=5, progress=False)
  assert rows[0]["pred_relevant_windows"] == [[0.0, 5.0, 1.0]]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return helpers.trained_tiny_workdirs(str(tmp_path_factory.getbasetemp() / "tiny_train"))


def _iou(a, b):
  inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
  union = (a[1] - a[0]) + (b[1] - b[0]) - inter
  return inter / union if union > 0 else 0.0


def test_length_buckets_give_the_rows_of_plain_batches(run):
  """evaluate_split's length buckets (batches cut to their longest video) change the work,
  not the rows: same queries, same order, same windows, scores and saliency."""
  from cimha_tf.data import pipeline
  data = run["prepared"]
  widths = {x["video_mask"].shape[1] for x, _ in pipeline.eval_dataset(data, "test", 2, 3)}
  assert len(widths) > 1 and max(widths) < 16  # the cut happens (max_video_len 16)
  model = wd.load_model(wd.path(run["workdir"], wd.BEST))
  (m0, rows0), (m1, rows1) = (runner.evaluate_split(model, data, "test", 2, 5, progress=False,
                                                    bucket_width=bw) for bw in (0, 3))
  gt = runner.read_ground_truth(data, "test")
  assert [r["qid"] for r in rows1] == [r["qid"] for r in rows0] == [r["qid"] for r in gt]
  for a, b in zip(rows0, rows1):
    np.testing.assert_allclose(b["pred_relevant_windows"], a["pred_relevant_windows"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b["pred_saliency_scores"], a["pred_saliency_scores"], atol=1e-5)
  for k in METRIC_KEYS:
    assert m1[k] == pytest.approx(m0[k], abs=1e-6), k


def test_evaluate_binary_writes_metrics_predictions_and_figures(run):
  w = run["workdir"]
  out = helpers.run_binary("cimha_tf.evaluate", f"--config={run['config']}", f"--workdir={w}",
                           "--split=test").stdout
  assert "R@1" in out and "mIoU" in out
  metrics = json.load(open(wd.metrics_path(w, "test")))
  gt = {r["qid"]: r for r in map(json.loads, open(os.path.join(run["prepared"], "annotations", "test.jsonl")))}
  rows = [json.loads(line) for line in open(wd.predictions_path(w, "test"))]
  assert sorted(r["qid"] for r in rows) == sorted(gt) and metrics["num_queries"] == len(gt)
  # Independent recomputation of the headline numbers from the written file.
  top1 = []
  for r in rows:
    g = gt[r["qid"]]
    windows = r["pred_relevant_windows"]
    assert 1 <= len(windows) <= 5  # eval.top_k of the tiny config is 3, R@5 needs 5
    scores = [x[2] for x in windows]
    assert scores == sorted(scores, reverse=True)
    for s, e, _ in windows:
      assert 0.0 <= s < e <= g["duration"] + 1e-4
    assert len(r["pred_saliency_scores"]) == round(g["duration"] / 2.0)  # one per valid step (2 s)
    top1.append(_iou(windows[0], g["relevant_windows"][0]))
    r["_r5"] = max(_iou(x, g["relevant_windows"][0]) for x in windows)
  top1 = np.array(top1)
  for m in (0.3, 0.5, 0.7):
    assert metrics[f"R1@{m:g}"] == pytest.approx(100 * np.mean(top1 >= m), abs=1e-6)
    assert metrics[f"R5@{m:g}"] == pytest.approx(100 * np.mean([r["_r5"] >= m for r in rows]), abs=1e-6)
  assert metrics["mIoU"] == pytest.approx(100 * top1.mean(), abs=1e-3)
  for key in METRIC_KEYS:
    assert 0.0 <= metrics[key] <= 100.0
  figures = sorted(os.listdir(wd.figures_dir(w)))
  assert any("_best_" in f for f in figures) and any("_worst_" in f for f in figures)
  assert "test_recall_at_1.png" in figures
  with open(os.path.join(wd.figures_dir(w), figures[0]), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_evaluate_without_config_uses_the_saved_one_and_last_checkpoint(run, tmp_path):
  w = tmp_path / "copy"
  import shutil
  for name in (wd.CONFIG, wd.VOCAB, wd.DATA_META, wd.LAST):
    (w).mkdir(exist_ok=True)
    shutil.copy(wd.path(run["workdir"], name), w / name)
  metrics = workdir_eval.evaluate_workdir(workdir_eval.saved_config(str(w)), str(w), split="val",
                                        checkpoint="last", num_figures=0, progress=False)
  history = (open(os.path.join(run["workdir"], "history.csv")).read().splitlines())
  header, last = history[0].split(","), history[-1].split(",")
  assert metrics["R1@0.5"] == pytest.approx(float(last[header.index("val_R1@0.5")]), abs=1e-3)
  assert os.path.exists(wd.predictions_path(str(w), "val"))
  with pytest.raises(FileNotFoundError, match="best.keras not found"):
    workdir_eval.evaluate_workdir(workdir_eval.saved_config(str(w)), str(w), checkpoint="best")


def test_moved_data_with_data_dir(run, tmp_path):
  """A workdir whose config.json names data that has moved: --data_dir points the saved
  config at it; a --config.KEY override without --config is a usage error that says so."""
  import shutil
  w = tmp_path / "w"
  for name in (wd.CONFIG, wd.VOCAB, wd.DATA_META, wd.BEST):
    w.mkdir(exist_ok=True)
    shutil.copy(wd.path(run["workdir"], name), w / name)
  data = tmp_path / "moved"
  shutil.copytree(run["prepared"], data)
  config = json.load(open(w / wd.CONFIG))
  config["data"]["dir"] = str(tmp_path / "gone")
  json.dump(config, open(w / wd.CONFIG, "w"))
  r = helpers.run_binary("cimha_tf.evaluate", f"--workdir={w}", "--split=val", "--num_figures=0",
                         check=False)
  assert r.returncode == 1 and f"prepared data folder {tmp_path / 'gone'} not found" in r.stderr
  r = helpers.run_binary("cimha_tf.evaluate", f"--workdir={w}", f"--config.data.dir={data}",
                         check=False)
  assert r.returncode == 2 and "--config.KEY overrides apply to the file given with --config=FILE" in r.stderr
  helpers.run_binary("cimha_tf.evaluate", f"--workdir={w}", "--split=val", "--num_figures=0",
                     f"--data_dir={data}")
  val = json.load(open(wd.metrics_path(str(w), "val")))
  ref = json.load(open(os.path.join(run["workdir"], "best_state.json")))
  assert val["R1@0.5"] == pytest.approx(ref["best"], abs=1e-3)


def test_evaluate_refuses_data_of_another_feature_dim(run, tmp_path):
  other = helpers.write_tiny_prepared(str(tmp_path), num_videos=(2, 1, 1), feature_dim=6)
  c = workdir_eval.saved_config(run["workdir"])
  c.data.dir = other
  with pytest.raises(ValueError, match="takes video features of dim 8 but .*feature_dim=6"):
    workdir_eval.evaluate_workdir(c, run["workdir"], num_figures=0)


def test_scoring_mode_reproduces_moment_detr_metrics(shared_data, tmp_path):
  q = shared_data / "qvhighlights"
  out = tmp_path / "m.json"
  r = helpers.run_binary("cimha_tf.evaluate", f"--predictions={q / 'moment_detr_sample_val_preds.jsonl'}",
                         f"--ground_truth={q / 'highlight_val_release.jsonl'}", f"--output={out}")
  assert "MR-full-R1@0.5" in r.stdout
  golden = json.load(open(q / "moment_detr_sample_val_preds_metrics.json"))["brief"]
  got = json.load(open(out))["qvhighlights"]["brief"]
  for key in ("MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1"):
    assert got[key] == pytest.approx(golden[key], abs=0.005)


def test_modes_are_exclusive_and_complete(tmp_path):
  r = helpers.run_binary("cimha_tf.evaluate", f"--workdir={tmp_path}", "--predictions=p.jsonl",
                         "--ground_truth=g.jsonl", check=False)
  assert r.returncode == 2 and "either --workdir" in r.stderr
  r = helpers.run_binary("cimha_tf.evaluate", "--predictions=p.jsonl", check=False)
  assert r.returncode == 2 and "needs both --predictions and --ground_truth" in r.stderr
  r = helpers.run_binary("cimha_tf.evaluate", f"--predictions={tmp_path / 'none.jsonl'}",
                         f"--ground_truth={tmp_path / 'none.jsonl'}", check=False)
  assert r.returncode == 1 and "none.jsonl" in r.stderr


def test_scoring_mode_allow_missing_flag(tmp_path):
  """Without --allow_missing, ground-truth queries without a prediction are an error that
  names the flag; with it they count as misses."""
  gt = [{"qid": q, "query": "a", "vid": "v", "duration": 10.0, "relevant_windows": [[2.0, 4.0]]}
        for q in (1, 2)]
  with open(tmp_path / "gt.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in gt)
  with open(tmp_path / "p.jsonl", "w") as f:
    f.write(json.dumps({"qid": 1, "pred_relevant_windows": [[2.0, 4.0, 0.9]]}) + "\n")
  args = ("cimha_tf.evaluate", f"--predictions={tmp_path / 'p.jsonl'}",
          f"--ground_truth={tmp_path / 'gt.jsonl'}", f"--output={tmp_path / 'm.json'}")
  r = helpers.run_binary(*args, check=False)
  assert r.returncode == 1 and "1 of 2 ground-truth queries have no prediction" in r.stderr
  assert "--allow_missing" in r.stderr and not (tmp_path / "m.json").exists()
  helpers.run_binary(*args, "--allow_missing")
  got = json.load(open(tmp_path / "m.json"))
  assert got["num_missing"] == 1 and got["R1@0.7"] == 50.0 and got["mIoU"] == 50.0


class FeatureModel:
  """Stand-in model for any batch shape: start/end probabilities from the features."""

  def __call__(self, inputs, training=False):
    mask = tf.cast(inputs["video_mask"], tf.float32)
    x = tf.cast(inputs["video_features"], tf.float32)
    def probs(logits):
      p = tf.exp(logits) * mask
      return p / tf.reduce_sum(p, axis=1, keepdims=True)
    return {"start_probs": probs(2 * x[..., 0]), "end_probs": probs(2 * x[..., 1]), "inside_probs": mask}


def test_r5_sees_five_windows_whatever_eval_top_k(tmp_path):
  """R5 is recall among five windows even when config.eval.top_k asks for fewer; the
  written rows hold what the metrics saw, so the file rescores to the same numbers."""
  data = helpers.write_tiny_prepared(str(tmp_path), num_videos=(2, 2, 12))
  m1, rows1 = runner.evaluate_split(FeatureModel(), data, "test", 4, 1, progress=False)
  m5, rows5 = runner.evaluate_split(FeatureModel(), data, "test", 4, 5, progress=False)
  assert m5["R5@0.3"] > m5["R1@0.3"]  # the case tells top-1 from top-5
  for key in METRIC_KEYS:
    assert m1[key] == pytest.approx(m5[key]), key
  assert rows1 == rows5 and max(len(r["pred_relevant_windows"]) for r in rows1) == 5

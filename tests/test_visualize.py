"""Figures: PNGs of the expected pixel size, from real predictions and from curves."""

import json

import numpy as np
import pytest
from matplotlib import image as mpimg

from cimha_tf.evaluation import visualize


def softmax(x):
  e = np.exp(x - x.max())
  return e / e.sum()


def read_png(path):
  img = mpimg.imread(path)  # float32 in [0, 1], (H, W, 4)
  assert img.dtype == np.float32 and img.ndim == 3
  return img


def test_query_figure_from_curves(tmp_path):
  n, duration = 32, 40.0
  t = np.arange(n)
  start, end = softmax(-0.5 * (t - 8) ** 2), softmax(-0.5 * (t - 16) ** 2)
  inside = ((t >= 8) & (t <= 16)).astype(float)
  padded = [np.r_[c, np.zeros(8)] for c in (start, end, inside)]  # padding is cut by num_steps
  path = visualize.plot_query(tmp_path / "figs" / "q.png", *padded, duration, "a person opens a door",
                              gt_window=[10.0, 21.25], pred_windows=[[10.0, 21.25, 0.9], [0, 5, 0.1]],
                              top_k=2, num_steps=n, figsize=(8, 3.5), dpi=100)
  img = read_png(path)
  assert img.shape == (350, 800, 4)
  no_gt = read_png(visualize.plot_query(tmp_path / "n.png", start, end, inside, duration,
                                        "a person opens a door",
                                        pred_windows=[[10.0, 21.25, 0.9], [0, 5, 0.1]], top_k=2))
  assert no_gt.shape == img.shape
  # the shading changes pixels inside the GT's columns only (axes span x 7%..68% of the width)
  diff = np.abs(img[..., :3] - no_gt[..., :3]).sum(axis=(0, 2))
  x0 = 0.07 * 800 + (10.0 / duration) * (0.61 * 800)
  x1 = 0.07 * 800 + (21.25 / duration) * (0.61 * 800)
  assert diff[int(x0) + 3:int(x1) - 3].min() > 0
  assert diff[int(0.07 * 800) + 3:int(x0) - 3].max() == 0  # left of the GT, in the axes


def test_query_figure_from_real_predictions(shared_data, tmp_path):
  """QVHighlights sample predictions: 2 s clips, saliency as the inside curve."""
  rows = []
  with open(shared_data / "qvhighlights" / "moment_detr_sample_val_preds.jsonl") as f:
    for line, _ in zip(f, range(3)):
      rows.append(json.loads(line))
  gts = {}
  with open(shared_data / "qvhighlights" / "highlight_val_release.jsonl") as f:
    for line, _ in zip(f, range(3)):
      d = json.loads(line)
      gts[d["qid"]] = d
  for row in rows:
    gt = gts[row["qid"]]
    sal = np.asarray(row["pred_saliency_scores"])
    n = len(sal)
    top = row["pred_relevant_windows"][0]
    steps = np.arange(n) * gt["duration"] / n
    start = softmax(-((steps - top[0]) / 4.0) ** 2)
    end = softmax(-((steps + gt["duration"] / n - top[1]) / 4.0) ** 2)
    inside = 1 / (1 + np.exp(-4 * sal))
    path = visualize.plot_query(tmp_path / f"{row['qid']}.png", start, end, inside, gt["duration"],
                                row["query"], gt_window=gt["relevant_windows"],
                                pred_windows=row["pred_relevant_windows"], top_k=5, dpi=50)
    img = read_png(path)
    assert img.shape == (175, 400, 4)
    assert img[..., :3].std() > 0.05  # something was drawn


def test_recall_curves_and_tensorboard_image(tmp_path):
  rng = np.random.default_rng(0)
  gts = [np.array([[s, s + 10.0]]) for s in rng.uniform(0, 50, 40)]
  good = [g + rng.normal(0, 1.0, (1, 2)) for g in gts]
  good = [np.sort(w, axis=1) for w in good]
  runs = {"cimha": (good, gts),
          "w/o ms": {t: 50.0 for t in visualize.RECALL_THRESHOLDS},
          "prior": [30, 25, 20, 15, 10, 5, 2, 1, 0]}
  fig = visualize.recall_curves_figure(runs, figsize=(6, 4), dpi=80)
  img = visualize.figure_to_image(fig)
  assert img.shape == (1, 320, 480, 4) and img.dtype == np.uint8
  png = visualize.figure_to_png_bytes(fig)
  assert png[:8] == b"\x89PNG\r\n\x1a\n"
  path = visualize.plot_recall_curves(tmp_path / "r.png", runs, dpi=80)
  np.testing.assert_allclose(read_png(path), img[0] / 255.0, atol=1 / 255 + 1e-6)  # same pixels
  line = fig.axes[0].lines[0].get_ydata()
  assert line[0] > 90 and np.all(np.diff(line) <= 0)  # the near-perfect run, computed from windows


@pytest.mark.parametrize("kwargs, match", [
    (dict(end_probs=np.zeros(5)), "end_probs: 5 values but num_steps=10"),
    (dict(inside_probs=np.full(10, np.nan)), "inside_probs: non-finite"),
    (dict(duration=0.0), "duration must be a positive"),
    (dict(gt_window=[5.0, 1.0]), "gt_window"),
    (dict(start_probs=np.zeros((2, 5))), "start_probs: expected a 1-D"),
])
def test_query_figure_bad_input(kwargs, match):
  args = dict(start_probs=np.full(10, 0.1), end_probs=np.full(10, 0.1), inside_probs=np.zeros(10),
              duration=20.0, query="q")
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    visualize.query_figure(**args, num_steps=10 if args["start_probs"].ndim == 1 else None)


def test_recall_curves_bad_run():
  with pytest.raises(ValueError, match="run 'x': expected"):
    visualize.recall_curves_figure({"x": [1.0, 2.0]})
  with pytest.raises(ValueError, match="no runs"):
    visualize.recall_curves_figure({})


def test_recall_curves_from_prediction_files(shared_data, tmp_path):
  """Runs given as prediction files: the curve at 0.5 / 0.7 is the published MR R1."""
  qvh = shared_data / "qvhighlights"
  preds, gt = qvh / "moment_detr_sample_val_preds.jsonl", qvh / "highlight_val_release.jsonl"
  fig = visualize.recall_curves_figure({"moment_detr": str(preds)}, ground_truth=gt)
  curve = dict(zip(visualize.RECALL_THRESHOLDS, fig.axes[0].lines[0].get_ydata()))
  published = json.loads((qvh / "moment_detr_sample_val_preds_metrics.json").read_text())["brief"]
  assert round(curve[0.5], 2) == published["MR-full-R1@0.5"]
  assert round(curve[0.7], 2) == published["MR-full-R1@0.7"]
  # the notebooks' calling form: runs first, ground_truth= and output= keywords
  small_preds, small_gt = tmp_path / "p.jsonl", tmp_path / "g.jsonl"
  small_preds.write_text("".join(preds.read_text().splitlines(keepends=True)[:20]))
  small_gt.write_text("".join(gt.read_text().splitlines(keepends=True)[:20]))
  out = visualize.plot_recall_curves({"a": str(small_preds), "b": small_preds}, ground_truth=str(small_gt),
                                     output=str(tmp_path / "c.png"), dpi=50)
  assert read_png(out).shape == (200, 300, 4)
  with pytest.raises(ValueError, match="needs ground_truth"):
    visualize.recall_curves_figure({"a": str(preds)})


def test_recall_curves_refuse_predictions_for_another_video(tmp_path):
  """A prediction whose qid is in the ground truth but whose vid is not that query's video
  (another split's or dataset's file: their qids both count from 0) must not be plotted."""
  gt = tmp_path / "gt.jsonl"
  gt.write_text("".join(json.dumps({"qid": q, "vid": f"v{q}", "duration": 10.0,
                                    "relevant_windows": [[1.0, 4.0]]}) + "\n" for q in range(3)))
  preds = [{"qid": q, "vid": f"v{q}", "pred_relevant_windows": [[1.0, 4.0, 0.9]]} for q in range(3)]
  good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
  good.write_text("".join(json.dumps(r) + "\n" for r in preds))
  preds[1]["vid"] = "other"
  bad.write_text("".join(json.dumps(r) + "\n" for r in preds))
  assert visualize.recall_curves_figure({"a": good}, ground_truth=gt).axes[0].lines[0].get_ydata()[0] == 100
  with pytest.raises(ValueError, match=r"run 'a': .*bad.jsonl: 1 predicted qids name another video"
                                       r" than the ground truth's, e.g. qid 1: 'other' vs 'v1'"):
    visualize.recall_curves_figure({"a": bad}, ground_truth=gt)

"""Evaluation figures (cimha_tf.evaluation.visualize): a few queries (best, worst, random by top-1
IoU) into WORKDIR/figures/, the R@1-over-IoU curve, and the query figures in TensorBoard."""

import os

import numpy as np

from cimha_tf.evaluation import visualize
from cimha_tf.evaluation.metrics import temporal_iou
from cimha_tf.experiment import workdir as wd


def pick_queries(rows, gt_by_qid, num, seed=0):
  """[(kind, row)]: the best, the worst and random queries by top-1 IoU, no repeats."""
  ious = []
  for r in rows:
    w = np.asarray(r["pred_relevant_windows"], np.float64).reshape(-1, 3)[:1]
    g = np.asarray(gt_by_qid[r["qid"]]["relevant_windows"], np.float64).reshape(-1, 2)
    ious.append(temporal_iou(w, g).max() if len(w) else 0.0)
  order = np.argsort(-np.asarray(ious), kind="stable")
  per_kind = max(1, num // 3)
  chosen, seen = [], set()
  rng = np.random.default_rng(seed)
  for kind, candidates in (("best", order), ("worst", order[::-1]), ("random", rng.permutation(len(rows)))):
    for i in candidates:
      if len([c for c in chosen if c[0] == kind]) >= per_kind or len(chosen) >= num:
        break
      if i not in seen:
        seen.add(i)
        chosen.append((kind, rows[i]))
  return chosen


def write_figures(workdir, split, rows, curves, gt_rows, num, seed=0):
  """PNG files in WORKDIR/figures/ (returned), also logged to WORKDIR/logs/eval_SPLIT."""
  gt_by_qid = {g["qid"]: g for g in gt_rows}
  out_dir = wd.figures_dir(workdir)
  paths = []
  for kind, row in pick_queries(rows, gt_by_qid, num, seed):
    gt = gt_by_qid[row["qid"]]
    start, end, inside = curves[row["qid"]]
    path = os.path.join(out_dir, f"{split}_{kind}_qid{row['qid']}.png")
    visualize.plot_query(path, start, end, inside, gt["duration"], gt.get("query", ""),
                         gt_window=gt["relevant_windows"], pred_windows=row["pred_relevant_windows"],
                         top_k=3)
    paths.append(path)
  by_qid = {r["qid"]: r for r in rows}
  paths.append(visualize.plot_recall_curves(
      os.path.join(out_dir, f"{split}_recall_at_1.png"),
      {split: ([np.asarray(by_qid[g["qid"]]["pred_relevant_windows"]).reshape(-1, 3) for g in gt_rows],
               [np.asarray(g["relevant_windows"]).reshape(-1, 2) for g in gt_rows])}))
  _log_images(workdir, split, paths)
  print(f"wrote {len(paths)} figures to {out_dir}")
  return [str(p) for p in paths]


def _log_images(workdir, split, paths):
  try:
    import tensorboard  # noqa: F401  tf.summary needs it
  except ImportError:
    return
  import tensorflow as tf
  writer = tf.summary.create_file_writer(os.path.join(workdir, wd.LOGS, f"eval_{split}"))
  with writer.as_default():
    for path in paths:
      png = tf.io.read_file(str(path))
      tf.summary.image(os.path.basename(str(path))[:-4], tf.image.decode_png(png, channels=4)[None], step=0)
  writer.flush()

"""Pictures of what the model sees: per-query probability curves, and R@1 over IoU thresholds.

Figures are built on matplotlib's Agg canvas directly (no pyplot, no global backend
switch), so this works headless, in tests, and beside a notebook's inline backend.
Saved PNGs are exactly figsize * dpi pixels (no tight bounding box), which TensorBoard
images and tests rely on.
"""

import io
import os
import pathlib
import textwrap

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cimha_tf.common import timeline
from cimha_tf.evaluation import predictions as predictions_lib
from cimha_tf.evaluation.metrics import recall_at_1_curve, temporal_iou

RECALL_THRESHOLDS = tuple(np.round(np.arange(0.1, 1.0, 0.1), 2))
_PRED_COLORS = ("tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def _new_figure(figsize, dpi):
  fig = Figure(figsize=figsize, dpi=dpi)
  FigureCanvasAgg(fig)
  return fig


def _curve(values, name, num_steps):
  v = np.asarray(values, np.float64)
  if v.ndim != 1:
    raise ValueError(f"{name}: expected a 1-D array of per-step probabilities, got shape {v.shape}")
  if len(v) < num_steps:
    raise ValueError(f"{name}: {len(v)} values but num_steps={num_steps}")
  v = v[:num_steps]
  if not np.all(np.isfinite(v)):
    raise ValueError(f"{name}: non-finite values among the first {num_steps} steps")
  return v


def _windows(windows, name, width):
  w = np.asarray(windows, np.float64)
  w = w.reshape(1, -1) if w.ndim == 1 else w
  if w.ndim != 2 or w.shape[1] not in (2, width) or not np.all(np.isfinite(w)) \
      or np.any(w[:, 0] > w[:, 1]):
    raise ValueError(f"{name}: expected finite [start, end] windows (start <= end) in seconds,"
                     f" got {np.asarray(windows).tolist()}")
  return w


def query_figure(start_probs, end_probs, inside_probs, duration, query, gt_window=None,
                 pred_windows=None, top_k=1, num_steps=None, figsize=(8, 3.5), dpi=100):
  """Figure of one query: the three curves over seconds, GT shaded, top-k windows marked.

  Curves are per valid step (padding beyond num_steps, default len(start_probs), is
  ignored); step i is drawn over its interval from `cimha_tf.common.timeline`. gt_window: [s, e]
  or several [[s, e], ...]; pred_windows: [[s, e(, score)], ...] best first.
  inside_probs may be None (a model without the segmentation head).
  """
  duration = float(duration)
  if not np.isfinite(duration) or duration <= 0:
    raise ValueError(f"duration must be a positive number of seconds, got {duration}")
  n = len(start_probs) if num_steps is None else int(num_steps)
  if n <= 0:
    raise ValueError(f"num_steps must be positive, got {n}")
  curves = [("start", _curve(start_probs, "start_probs", n), "tab:blue"),
            ("end", _curve(end_probs, "end_probs", n), "tab:orange")]
  if inside_probs is not None:
    curves.append(("inside", _curve(inside_probs, "inside_probs", n), "tab:green"))
  starts, ends = timeline.steps_to_seconds(np.arange(n), np.arange(n), duration, n)
  edges = np.r_[starts, ends[-1]]

  fig = _new_figure(figsize, dpi)
  ax = fig.add_subplot(1, 1, 1)
  gts = None
  if gt_window is not None:
    gts = _windows(gt_window, "gt_window", 2)
    for i, (s, e) in enumerate(gts):
      ax.axvspan(s, e, color="tab:gray", alpha=0.25, lw=0,
                 label=f"ground truth [{s:.1f}, {e:.1f}] s" if i == 0 else None)
  for name, values, color in curves:
    ax.stairs(values, edges, label=name, color=color, lw=1.5)
  band = 1.08
  if pred_windows is not None and len(pred_windows):
    preds = _windows(pred_windows, "pred_windows", 3)[:max(1, int(top_k))]
    for r, w in enumerate(preds):
      y = band + 0.07 * r
      label = f"top-{r + 1} [{w[0]:.1f}, {w[1]:.1f}] s"
      if len(w) == 3:
        label += f" score {w[2]:.2f}"
      if gts is not None:
        label += f" IoU {temporal_iou(w[None, :2], gts).max():.2f}"
      color = _PRED_COLORS[r % len(_PRED_COLORS)]
      ax.hlines(y, w[0], w[1], color=color, lw=4 if r == 0 else 2, label=label)
      if r == 0:
        ax.vlines([w[0], w[1]], 0, y, color=color, lw=1, ls="--")
    band += 0.07 * len(preds)
  ax.set_xlim(0, duration)
  ax.set_ylim(0, band + 0.05)
  ax.set_xlabel("time (s)")
  ax.set_ylabel("probability")
  ax.set_yticks(np.linspace(0, 1, 6))  # the band above 1 holds the predicted windows
  ax.set_title(textwrap.shorten(query, 110) if query.strip() else "(empty query)", fontsize=10)
  ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
  fig.subplots_adjust(left=0.07, right=0.68, bottom=0.14, top=0.9)
  return fig


def plot_query(path, start_probs, end_probs, inside_probs, duration, query, gt_window=None,
               pred_windows=None, top_k=1, num_steps=None, figsize=(8, 3.5), dpi=100):
  """query_figure saved as a PNG at path (figsize * dpi pixels). Returns the path."""
  fig = query_figure(start_probs, end_probs, inside_probs, duration, query, gt_window,
                     pred_windows, top_k, num_steps, figsize, dpi)
  return save_figure(fig, path)


def _curve_from_file(name, pred_path, gt_rows, thresholds):
  """R@1 curve of a prediction JSONL file; every ground-truth query must be predicted."""
  if gt_rows is None:
    raise ValueError(f"run {name!r}: a prediction file ({pred_path}) needs ground_truth=GT.jsonl")
  rows = predictions_lib.read_predictions(pred_path)
  unknown, missing = predictions_lib.match_qids(rows, gt_rows)
  if unknown or missing:
    raise ValueError(f"run {name!r}: {pred_path} has {len(unknown)} qids not in the ground truth and"
                     f" lacks {len(missing)} ground-truth qids (e.g. {(unknown + missing)[:5]})")
  by_qid = {r["qid"]: r for r in rows}
  predictions_lib.check_same_videos(by_qid, gt_rows, f"run {name!r}: {pred_path}")
  pred = [np.asarray(by_qid[g["qid"]]["pred_relevant_windows"], np.float64).reshape(-1, 3)
          for g in gt_rows]
  return recall_at_1_curve(pred, [np.asarray(g["relevant_windows"], np.float64) for g in gt_rows],
                           thresholds)


def _run_curve(name, run, thresholds, gt_rows=None):
  if isinstance(run, (str, os.PathLike)):  # a prediction JSONL file
    return _curve_from_file(name, run, gt_rows, thresholds)
  if isinstance(run, dict):  # precomputed {threshold: recall}
    lookup = {round(float(k), 6): v for k, v in run.items()}
    missing = [t for t in thresholds if round(float(t), 6) not in lookup]
    if missing:
      raise ValueError(f"run {name!r}: no recall for thresholds {missing}")
    return np.array([lookup[round(float(t), 6)] for t in thresholds], np.float64)
  if isinstance(run, tuple) and len(run) == 2:  # (pred_windows, gt_windows)
    return recall_at_1_curve(run[0], run[1], thresholds)
  values = np.asarray(run, np.float64)
  if values.shape != (len(thresholds),):
    raise ValueError(f"run {name!r}: expected (pred_windows, gt_windows), a prediction file, a dict"
                     f" threshold -> recall, or {len(thresholds)} recalls; got shape {values.shape}")
  return values


def recall_curves_figure(runs, thresholds=RECALL_THRESHOLDS, figsize=(6, 4), dpi=100,
                         ground_truth=None):
  """R@1 (percent) over IoU thresholds, one line per run (e.g. the ablation rows).

  runs: {name: (pred_windows, gt_windows) | prediction JSONL path (scored against the
  ground-truth JSONL `ground_truth`) | {threshold: recall} | [recall per threshold]}.
  """
  if not runs:
    raise ValueError("recall curves: no runs to plot")
  gt_rows = predictions_lib.read_ground_truth(ground_truth) if ground_truth is not None else None
  fig = _new_figure(figsize, dpi)
  ax = fig.add_subplot(1, 1, 1)
  for name, run in runs.items():
    ax.plot(thresholds, _run_curve(name, run, thresholds, gt_rows), marker="o", label=str(name))
  ax.set_xlabel("IoU threshold")
  ax.set_ylabel("R@1 (%)")
  ax.set_ylim(0, 101)
  ax.set_xlim(min(thresholds) - 0.02, max(thresholds) + 0.02)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.subplots_adjust(left=0.12, right=0.97, bottom=0.13, top=0.95)
  return fig


def plot_recall_curves(path, runs=None, thresholds=RECALL_THRESHOLDS, figsize=(6, 4), dpi=100,
                       ground_truth=None, output=None):
  """recall_curves_figure saved as a PNG at path. Returns the path.

  Also callable as plot_recall_curves(runs, ground_truth=GT, output=PATH).
  """
  if isinstance(path, dict) and runs is None:
    path, runs = output, path
  if path is None or runs is None:
    raise ValueError("plot_recall_curves: needs an output path and the runs to plot")
  return save_figure(recall_curves_figure(runs, thresholds, figsize, dpi, ground_truth), path)


def save_figure(fig, path):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, format="png", dpi=fig.dpi)
  return path


def figure_to_png_bytes(fig):
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=fig.dpi)
  return buf.getvalue()


def figure_to_image(fig):
  """(1, H, W, 4) uint8 RGBA array, what tf.summary.image takes."""
  fig.canvas.draw()
  return np.asarray(fig.canvas.buffer_rgba(), np.uint8)[None].copy()

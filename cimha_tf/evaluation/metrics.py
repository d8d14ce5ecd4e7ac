"""R@k at IoU m and mIoU, as the Charades-STA / ActivityNet Captions literature reports them.

R@k IoU m: percent of queries where any of the top-k predicted windows has IoU >= m with
the ground truth (with several ground-truth windows, the best-matching one counts).
mIoU: mean IoU of the top-1 prediction. Predictions are taken in the order given (best
first, as the predictions contract says); fewer than k predictions use what exists.
No non-maximum suppression here or in decoding (docs/paper.md, "Decoding": the top-k
(i, j) pairs by score), so near-duplicate windows can fill a query's top 5; papers that
apply NMS before R@5 (e.g. 2D-TAN) get a higher R@5 from the same scores. R@1 and mIoU do
not depend on it. Windows are scored as given (not clipped to the video).
"""

import numpy as np

KS = (1, 5)
THRESHOLDS = (0.3, 0.5, 0.7)


def temporal_iou(a, b):
  """Pairwise IoU of windows a (..., N, 2) and b (..., M, 2) -> (..., N, M).

  Extra trailing columns (scores) are ignored. Two zero-length windows at the same point
  have IoU 1 (a point prediction that hits a point moment); any other zero union is 0.
  """
  a = np.asarray(a, np.float64)[..., :2]
  b = np.asarray(b, np.float64)[..., :2]
  a0, a1 = a[..., :, None, 0], a[..., :, None, 1]
  b0, b1 = b[..., None, :, 0], b[..., None, :, 1]
  inter = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0.0, None)
  union = (a1 - a0) + (b1 - b0) - inter
  same_point = (union <= 0) & (a0 == b0) & (a1 == b1)
  iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
  return np.where(same_point, 1.0, iou)


def _check_windows(windows, name, index, allow_empty=False):
  """(k, 2 or 3) float64 array, finite, start <= end; errors name the query index."""
  w = np.asarray(windows, np.float64)
  if w.ndim == 1 and w.size == 0:
    w = w.reshape(0, 2)
  if w.ndim != 2 or w.shape[1] not in (2, 3):
    raise ValueError(f"{name}[{index}]: expected a (k, 2) or (k, 3) array of [start, end(, score)]"
                     f" windows in seconds, got shape {w.shape}")
  if w.shape[0] == 0 and not allow_empty:
    raise ValueError(f"{name}[{index}]: no windows (each query needs at least one)")
  if not np.all(np.isfinite(w)):
    raise ValueError(f"{name}[{index}]: non-finite value in windows {w.tolist()}")
  if np.any(w[:, 0] > w[:, 1]):
    raise ValueError(f"{name}[{index}]: window with start > end in {w[:, :2].tolist()}")
  return w


def best_ious(pred_windows, gt_windows, max_k):
  """(Q, max_k) IoU of each of the top-max_k predictions with its best ground truth window.

  Slots beyond a query's number of predictions are -1 (never a hit, at any threshold).
  """
  if len(pred_windows) == 0:
    raise ValueError("moment metrics: empty prediction list (no queries to score)")
  if len(pred_windows) != len(gt_windows):
    raise ValueError(f"moment metrics: {len(pred_windows)} predictions but {len(gt_windows)}"
                     " ground truths (one entry per query in both)")
  out = np.full((len(pred_windows), max_k), -1.0)
  for q, (p, g) in enumerate(zip(pred_windows, gt_windows)):
    p = _check_windows(p, "pred_windows", q)[:max_k]
    g = _check_windows(g, "gt_windows", q)
    out[q, :len(p)] = temporal_iou(p, g).max(axis=1)
  return out


def recall_at_k(ious, k, threshold):
  """Percent of rows of a best_ious matrix with a hit among the first k slots."""
  return float(100.0 * np.mean(np.any(ious[:, :k] >= threshold, axis=1)))


def moment_metrics(pred_windows, gt_windows, ks=KS, thresholds=THRESHOLDS, num_missing=0):
  """{'R1@0.3', ..., 'R5@0.7', 'mIoU'} in percent.

  pred_windows: list of (k, 2 or 3) arrays, best first; gt_windows: list of (m, 2) arrays.
  num_missing: queries of the ground truth that have no prediction; they count as misses
  (IoU 0) in every number, so a partial prediction file cannot inflate the score.
  """
  ious = best_ious(pred_windows, gt_windows, max(ks))
  if num_missing:
    ious = np.concatenate([ious, np.full((num_missing, ious.shape[1]), -1.0)])
  metrics = {}
  for k in ks:
    for m in thresholds:
      metrics[f"R{k}@{m:g}"] = recall_at_k(ious, k, m)
  metrics["mIoU"] = float(100.0 * np.mean(np.maximum(ious[:, 0], 0.0)))
  return metrics


def recall_at_1_curve(pred_windows, gt_windows, thresholds=np.round(np.arange(0.1, 1.0, 0.1), 2)):
  """R@1 (percent) at each IoU threshold: the data behind the recall-over-IoU figure."""
  ious = best_ious(pred_windows, gt_windows, 1)
  return np.array([recall_at_k(ious, 1, t) for t in thresholds])

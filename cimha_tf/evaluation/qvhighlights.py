"""The QVHighlights protocol: a port of moment_detr's `standalone_eval/eval.py`.

Moment retrieval (MR), per ground-truth window length range (short (0, 10], middle
(10, 30], long (30, 150] seconds, full = every query):
- R1@m: the top-1 predicted window (first in the list) has IoU >= m with the ground-truth
  window it overlaps most.
- mAP@m: per query, the detection AP (ActivityNet's greedy matching, VOC-2011
  interpolation) of its top-10 windows ranked by score against all its ground-truth
  windows; averaged over queries, then over m in 0.5:0.05:0.95.
Highlight detection (HL), from per-clip saliency (clips of 2 s): each of the 3 raters'
`saliency_scores` is binarised at a minimum score (Fair >= 2, Good >= 3, VeryGood >= 4);
HL-mAP is the mean over queries and raters of the AP of `pred_saliency_scores`
(moment_detr's `get_ap`: sklearn's precision-recall curve, their interpolation);
HL-Hit1 is the percent of queries whose highest-scored clip is positive for some rater.

Numbers are rounded as moment_detr rounds them (`float(f"{100 * v:.2f}")`), keys and
nesting are theirs, so the output compares 1:1 with published tables.

Deliberate differences, all on input moment_detr mishandles: IoU with a zero union
follows `metrics.temporal_iou` (theirs gives NaN, which their matcher counts as a hit);
a query with no predicted windows is a miss with AP 0 (theirs drops it from mAP and
crashes in R1); a query without saliency predictions scores HL-AP 0 and no hit.
Kept as theirs, with a warning that counts the queries: saliency scores of another length
than the query's clips are padded with 0 or cut.
"""

import collections
import copy

import numpy as np
from absl import logging

from cimha_tf.evaluation.metrics import temporal_iou

IOU_THRESHOLDS = tuple(float(f"{e:.2f}") for e in np.linspace(0.5, 0.95, 10))
LENGTH_RANGES = (("short", 0, 10), ("middle", 10, 30), ("long", 30, 150), ("full", 0, 150))
SALIENCY_MIN_SCORES = (("Fair", 2), ("Good", 3), ("VeryGood", 4))
CLIP_LENGTH = 2.0
MAX_PRED_WINDOWS = 10


def _pct(v):
  return float(f"{100 * v:.2f}")


def _windows(row, key, ncols):
  w = np.asarray(row.get(key) or [], np.float64)
  return w.reshape(0, ncols) if w.size == 0 else w


# ----------------------------------------------------------------------------- moments

def _pad(arrays, width):
  """List of (k_i, width) arrays -> (Q, max k, width) zeros-padded, (Q, max k) valid mask."""
  size = max([len(x) for x in arrays] + [1])
  out = np.zeros((len(arrays), size, width))
  valid = np.zeros((len(arrays), size), bool)
  for i, x in enumerate(arrays):
    out[i, :len(x)] = x[:, :width]
    valid[i, :len(x)] = True
  return out, valid


def detection_ap_batch(preds, gts, thresholds=IOU_THRESHOLDS):
  """(Q, T) AP of each query's scored windows preds[i] (k, 3) against gts[i] (m, 2).

  Per query: predictions ranked by decreasing score (stable for ties, as Python's sort);
  each one, at each threshold, takes the unmatched ground-truth window of highest
  IoU >= the threshold (true positive) or is a false positive; AP is the area under the
  VOC-2011 precision envelope. A query without predictions or ground truth scores 0.
  Vectorised over queries and thresholds; the greedy matching loops over ranks only.
  """
  thds = np.asarray(thresholds, np.float64)
  pred, pvalid = _pad(preds, 3)
  gt, gvalid = _pad(gts, 2)
  num_q, num_p, num_t = len(preds), pred.shape[1], len(thds)
  key = np.where(pvalid, -pred[..., 2], np.inf)  # padding ranks last
  order = np.argsort(key, axis=1, kind="stable")
  pred = np.take_along_axis(pred, order[..., None], 1)
  pvalid = np.take_along_axis(pvalid, order, 1)
  iou = temporal_iou(pred[..., :2], gt)  # (Q, P, G)
  iou = np.where(pvalid[:, :, None] & gvalid[:, None, :], iou, -1.0)
  g_order = np.argsort(iou, axis=2, kind="stable")[..., ::-1]  # best GT first
  iou_sorted = np.take_along_axis(iou, g_order, 2)
  tp = np.zeros((num_q, num_t, num_p), bool)
  locked = np.zeros((num_q, num_t, gt.shape[1]), bool)
  q_idx, t_idx = np.meshgrid(np.arange(num_q), np.arange(num_t), indexing="ij")
  for p in range(num_p):
    go = g_order[:, None, p, :]  # (Q, 1, G)
    eligible = ((iou_sorted[:, None, p, :] >= thds[None, :, None])
                & ~np.take_along_axis(locked, np.broadcast_to(go, locked.shape), 2))
    hit = eligible.any(axis=2)  # (Q, T)
    first = np.take_along_axis(np.broadcast_to(go, locked.shape), eligible.argmax(axis=2)[..., None], 2)[..., 0]
    tp[:, :, p] = hit
    locked[q_idx[hit], t_idx[hit], first[hit]] = True
  fp = ~tp & pvalid[:, None, :]
  tp_cum = np.cumsum(tp, axis=2, dtype=np.float64)
  fp_cum = np.cumsum(fp, axis=2, dtype=np.float64)
  num_gts = gvalid.sum(axis=1).astype(np.float64)[:, None, None]
  recall = np.divide(tp_cum, num_gts, out=np.zeros_like(tp_cum), where=num_gts > 0)
  seen = tp_cum + fp_cum
  precision = np.divide(tp_cum, seen, out=np.zeros_like(tp_cum), where=seen > 0)
  zeros, ones = np.zeros((num_q, num_t, 1)), np.ones((num_q, num_t, 1))
  mprec = np.concatenate([zeros, precision, zeros], axis=2)
  mrec = np.concatenate([zeros, recall, ones], axis=2)
  mprec = np.maximum.accumulate(mprec[..., ::-1], axis=2)[..., ::-1]
  ap = np.sum(np.diff(mrec, axis=2) * mprec[..., 1:], axis=2)
  return np.where(pvalid.any(axis=1)[:, None] & (num_gts[:, :, 0] > 0), ap, 0.0)


def detection_ap(pred, gt, thresholds=IOU_THRESHOLDS):
  """(T,) AP of one query's scored windows pred (k, 3) against gt (m, 2); see detection_ap_batch."""
  return detection_ap_batch([np.asarray(pred, np.float64).reshape(-1, 3)],
                            [np.asarray(gt, np.float64).reshape(-1, 2)], thresholds)[0]


def _in_range(gt_rows, min_l, max_l):
  """Their get_data_by_range: keep windows with min_l < length <= max_l ('full' keeps all)."""
  if (min_l, max_l) == (0, 150):
    return gt_rows
  kept = []
  for d in gt_rows:
    windows = [w for w in d["relevant_windows"] if min_l < w[1] - w[0] <= max_l]
    if windows:
      d = copy.copy(d)
      d["relevant_windows"] = windows
      kept.append(d)
  return kept


def moment_retrieval_scores(qid2pred, gt_rows, thresholds=IOU_THRESHOLDS):
  """{'MR-mAP': {thd: .., 'average': ..}, 'MR-R1': {thd: ..}} over gt_rows (percent)."""
  gts = [_windows(d, "relevant_windows", 2)[:, :2] for d in gt_rows]
  preds = [_windows(qid2pred.get(d["qid"], {}), "pred_relevant_windows", 3) for d in gt_rows]
  ap_thds = detection_ap_batch([p[:MAX_PRED_WINDOWS] for p in preds], gts, thresholds).mean(axis=0)
  # R1: the first listed window (not the best scored), against its best-overlapping GT
  top1, has_pred = _pad([p[:1] for p in preds], 2)
  gt, gvalid = _pad(gts, 2)
  iou = np.where(gvalid & has_pred, temporal_iou(top1, gt)[:, 0, :], 0.0).max(axis=1)
  r1 = iou[:, None] >= np.asarray(thresholds)[None, :]
  mean_ap = {str(t): _pct(v) for t, v in zip(thresholds, ap_thds)}
  mean_ap["average"] = _pct(np.mean(ap_thds))
  recall = {str(t): _pct(v) for t, v in zip(thresholds, np.mean(r1, axis=0))}
  return {"MR-mAP": mean_ap, "MR-R1": recall}


def eval_moment_retrieval(qid2pred, gt_rows):
  """Per length range name -> moment_retrieval_scores; empty ranges are left out."""
  out = {}
  for name, min_l, max_l in LENGTH_RANGES:
    rows = _in_range(gt_rows, min_l, max_l)
    if rows:
      out[name] = moment_retrieval_scores(qid2pred, rows)
  return out


# -------------------------------------------------------------------------- highlights

def saliency_ap(y_true, y_score):
  """moment_detr's get_ap for each column of binary labels y_true (n, C) -> (C,).

  sklearn's precision_recall_curve (descending distinct thresholds, reversed, with the
  (precision 1, recall 0) end point), their running max of precision from the
  high-recall end, mean precision where recall changes; all-0 labels -> 0, all-1 -> 1.
  """
  y_true = np.asarray(y_true, np.float64)
  y_score = np.asarray(y_score, np.float64)
  n, num_cols = y_true.shape
  order = np.argsort(y_score, kind="mergesort")[::-1]
  y_score, y_true = y_score[order], y_true[order]
  thr_idx = np.r_[np.where(np.diff(y_score))[0], n - 1]
  tps = np.cumsum(y_true, axis=0)[thr_idx]  # (K, C)
  fps = 1 + thr_idx[:, None] - tps
  positives = tps[-1]
  precision = tps / (tps + fps)
  recall = np.divide(tps, positives, out=np.ones_like(tps), where=positives > 0)
  precision = np.vstack([precision[::-1], np.ones((1, num_cols))])
  recall = np.vstack([recall[::-1], np.zeros((1, num_cols))]).astype(np.float32)
  precision = np.maximum.accumulate(precision, axis=0)
  changes = np.diff(recall, axis=0) != 0  # (K, C)
  ap = np.sum(precision[:-1] * changes, axis=0) / np.maximum(changes.sum(axis=0), 1)
  ap = np.where(positives == 0, 0.0, ap)
  return np.where(positives == n, 1.0, ap)


def gt_saliency(row, clip_length=CLIP_LENGTH):
  """(int(duration / clip_length), 3) rater scores in [0, 4], 0 outside relevant clips."""
  qid = row.get("qid")
  for key in ("duration", "relevant_clip_ids", "saliency_scores"):
    if key not in row:
      raise ValueError(f"ground truth qid {qid}: '{key}' missing (needed for highlight metrics)")
  num_clips = int(row["duration"] / clip_length)
  ids = np.asarray(row["relevant_clip_ids"], np.int64)
  scores = np.asarray(row["saliency_scores"], np.float64)
  if scores.ndim != 2 or scores.shape != (len(ids), 3):
    raise ValueError(f"ground truth qid {qid}: saliency_scores shape {scores.shape}, expected"
                     f" ({len(ids)}, 3): one [r1, r2, r3] per relevant_clip_id")
  if len(ids) and (ids.min() < 0 or ids.max() >= num_clips):
    raise ValueError(f"ground truth qid {qid}: relevant_clip_ids outside [0, {num_clips})"
                     f" (duration {row['duration']} s, clips of {clip_length} s)")
  full = np.zeros((num_clips, 3))
  full[ids] = scores
  return full


def eval_highlight(qid2pred, gt_rows, clip_length=CLIP_LENGTH):
  """{'HL-min-Fair': {'HL-mAP', 'HL-Hit1'}, ...} in percent."""
  mins = np.array([m for _, m in SALIENCY_MIN_SCORES], np.float64)
  aps = np.zeros((len(gt_rows), len(mins), 3))
  hits = np.zeros((len(gt_rows), len(mins)))
  shorter = longer = 0
  for i, d in enumerate(gt_rows):
    full = gt_saliency(d, clip_length)  # (n, 3)
    n = len(full)
    binary = (full[:, None, :] >= mins[None, :, None]).astype(np.float64)  # (n, S, 3)
    scores = np.asarray(qid2pred.get(d["qid"], {}).get("pred_saliency_scores") or [], np.float64)
    if scores.size == 0 or n == 0:
      continue  # no saliency prediction: AP 0, no hit
    shorter += len(scores) < n
    longer += len(scores) > n
    top = int(np.argmax(scores))
    if top < n:
      hits[i] = binary[top].max(axis=1)
    padded = np.zeros(n)
    padded[:min(n, len(scores))] = scores[:n]
    aps[i] = saliency_ap(binary.reshape(n, -1), padded).reshape(len(mins), 3)
  if shorter or longer:
    # moment_detr's repair, kept for its numbers; far-off lengths mean saliency per model
    # step, not per clip, i.e. misaligned clips.
    logging.warning("%d of %d queries have pred_saliency_scores of another length than their "
                    "%g s clips (int(duration / %g)): %d shorter, padded with 0; %d longer, cut",
                    shorter + longer, len(gt_rows), clip_length, clip_length, shorter, longer)
  return {f"HL-min-{name}": {"HL-mAP": _pct(np.mean(aps[:, s])), "HL-Hit1": _pct(np.mean(hits[:, s]))}
          for s, (name, _) in enumerate(SALIENCY_MIN_SCORES)}


# -------------------------------------------------------------------------- submission

def eval_submission(submission, ground_truth, highlight=None, clip_length=CLIP_LENGTH):
  """moment_detr's eval_submission output: {'brief': {...}, 'HL-min-...', 'full', 'long', ...}.

  submission / ground_truth: lists of JSONL dicts. Every submission qid must be in the
  ground truth; ground-truth queries without a submission row score as misses.
  highlight: compute HL metrics (default: when every ground-truth row has saliency_scores
  and some submission row has pred_saliency_scores).
  """
  gt_qids = [d["qid"] for d in ground_truth]
  if len(set(gt_qids)) != len(gt_qids):
    dup = [q for q, c in collections.Counter(gt_qids).items() if c > 1]
    raise ValueError(f"ground truth: duplicate qids {dup[:5]} ({len(dup)} in all)")
  qid2pred = {d["qid"]: d for d in submission}
  extra = set(qid2pred) - set(gt_qids)
  if extra:
    raise ValueError(f"{len(extra)} predicted qids are not in the ground truth, e.g. {sorted(extra)[:5]}")
  if highlight is None:
    highlight = (all("saliency_scores" in d for d in ground_truth)
                 and any(d.get("pred_saliency_scores") for d in submission))
  metrics, brief = {}, {}
  mr = eval_moment_retrieval(qid2pred, ground_truth)
  metrics.update(mr)
  brief.update({"MR-full-mAP": mr["full"]["MR-mAP"]["average"],
                "MR-full-mAP@0.5": mr["full"]["MR-mAP"]["0.5"],
                "MR-full-mAP@0.75": mr["full"]["MR-mAP"]["0.75"],
                "MR-full-R1@0.5": mr["full"]["MR-R1"]["0.5"],
                "MR-full-R1@0.7": mr["full"]["MR-R1"]["0.7"]})
  for name in ("short", "middle", "long"):
    if name in mr:
      brief[f"MR-{name}-mAP"] = mr[name]["MR-mAP"]["average"]
  brief = dict(sorted(brief.items()))
  if highlight:
    hl = eval_highlight(qid2pred, ground_truth, clip_length)
    metrics.update(hl)
    for k, v in hl.items():
      for sub_k, value in v.items():
        brief[f"{k}-{sub_k.split('-')[1]}"] = value
  return {"brief": brief, **dict(sorted(metrics.items()))}

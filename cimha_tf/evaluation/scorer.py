"""Score a prediction JSONL file against a ground-truth JSONL file (the evaluate binary's core).

Every file gets the standard numbers (`moment_metrics`: R1/R5 at IoU 0.3/0.5/0.7, mIoU);
QVHighlights-style ground truth (several windows per query, or saliency scores) also
gets moment_detr's protocol under the key "qvhighlights".
"""

import collections
import re

import numpy as np
from absl import logging

from cimha_tf.evaluation import metrics as metrics_lib
from cimha_tf.evaluation import predictions as predictions_lib
from cimha_tf.evaluation import qvhighlights


def is_qvhighlights_style(gt_rows):
  return any("saliency_scores" in r or len(r["relevant_windows"]) > 1 for r in gt_rows)


def score_predictions(pred_rows, gt_rows, allow_missing=False, source="predictions",
                      qvh=None):
  """Metrics dict for in-memory rows (see score_files)."""
  # Files are checked when read; rows from a model run are not, and a dict would keep the last.
  counts = collections.Counter(r["qid"] for r in pred_rows)
  dups = [q for q, c in counts.items() if c > 1]
  if dups:
    raise ValueError(f"{source}: {len(dups)} qids have more than one prediction row, e.g. {dups[:5]}")
  unknown, missing = predictions_lib.match_qids(pred_rows, gt_rows)
  if unknown:
    gt_qid_text = {str(r["qid"]): r["qid"] for r in gt_rows}
    same = [q for q in unknown if str(q) in gt_qid_text]
    hint = (f"; {len(same)} of them differ from a ground-truth qid only in type, e.g. prediction"
            f" {same[0]!r} vs ground truth {gt_qid_text[str(same[0])]!r}" if same else "")
    raise ValueError(f"{source}: {len(unknown)} predicted qids are not in the ground truth,"
                     f" e.g. {unknown[:5]}{hint}")
  if missing:
    msg = (f"{source}: {len(missing)} of {len(gt_rows)} ground-truth queries have no prediction,"
           f" e.g. {missing[:5]}")
    if not allow_missing:
      raise ValueError(msg + " (allow_missing=True, --allow_missing in the evaluate binary, "
                       "scores them as misses)")
    logging.warning("%s; scored as misses", msg)
  qid2pred = {r["qid"]: r for r in pred_rows}
  scored = [r for r in gt_rows if r["qid"] in qid2pred]
  predictions_lib.check_same_videos(qid2pred, scored, source)
  if not scored:
    raise ValueError(f"{source}: no prediction matches the ground truth")
  pred_windows = [np.asarray(qid2pred[r["qid"]]["pred_relevant_windows"], np.float64).reshape(-1, 3)
                  for r in scored]
  for r, w in zip(scored, pred_windows):
    if len(w) == 0:
      raise ValueError(f"{source}: qid {r['qid']!r} has no predicted windows")
  unordered = sum(1 for w in pred_windows if np.any(np.diff(w[:, 2]) > 0))
  if unordered:
    # Not re-sorted: moment_detr's R1 also takes the first listed window; only mAP ranks by score.
    logging.warning("%s: %d of %d queries list their windows out of score order; R@k and mIoU "
                    "take them in the order listed (best first by contract), mAP by score",
                    source, unordered, len(pred_windows))
  gt_windows = [np.asarray(r["relevant_windows"], np.float64).reshape(-1, 2) for r in scored]
  out = metrics_lib.moment_metrics(pred_windows, gt_windows, num_missing=len(missing))
  out.update({"num_queries": len(gt_rows), "num_missing": len(missing)})
  if qvh is None:
    qvh = is_qvhighlights_style(gt_rows)
  if qvh:
    out["qvhighlights"] = qvhighlights.eval_submission(pred_rows, gt_rows)
  return out


def score_files(pred_path, gt_path, allow_missing=False, qvh=None):
  """Score prediction file pred_path against ground-truth file gt_path.

  Returns {'R1@0.3', ..., 'R5@0.7', 'mIoU' (percent), 'num_queries', 'num_missing'} and,
  for QVHighlights-style ground truth (or qvh=True), 'qvhighlights': moment_detr's
  metrics dict ('brief', 'full', 'short', ..., 'HL-min-VeryGood').
  Predicted qids absent from the ground truth are an error; ground-truth queries
  without a prediction are an error unless allow_missing, which scores them as misses.
  """
  pred_rows = predictions_lib.read_predictions(pred_path)
  gt_rows = predictions_lib.read_ground_truth(gt_path)
  return score_predictions(pred_rows, gt_rows, allow_missing,
                           source=f"{pred_path} vs {gt_path}", qvh=qvh)


_RECALL_KEY = re.compile(r"^R(\d+)@([0-9.]+)$")


def format_table(metrics):
  """A readable table of a metrics dict (score_files output or WORKDIR/metrics/SPLIT.json)."""
  recalls = {}
  for key, value in metrics.items():
    m = _RECALL_KEY.match(key)
    if m:
      recalls[(int(m.group(1)), float(m.group(2)))] = value
  ks = sorted({k for k, _ in recalls})
  thds = sorted({t for _, t in recalls})
  lines = []
  if recalls:
    lines.append("        " + "".join(f"IoU={t:<7g}" for t in thds))
    for k in ks:
      cells = "".join(f"{recalls[(k, t)]:<11.2f}" if (k, t) in recalls else f"{'-':<11}"
                      for t in thds)
      lines.append(f"R@{k:<6}" + cells)
  if "mIoU" in metrics:
    lines.append(f"mIoU    {metrics['mIoU']:.2f}")
  if metrics.get("num_missing"):
    lines.append(f"({metrics['num_missing']} of {metrics['num_queries']} queries had no"
                 " prediction and count as misses)")
  brief = metrics.get("qvhighlights", {}).get("brief")
  if brief:
    lines.append("QVHighlights (moment_detr protocol):")
    width = max(len(k) for k in brief)
    lines.extend(f"  {k:<{width}}  {v:6.2f}" for k, v in brief.items())
  return "\n".join(lines)

"""Runs a trained model over a prepared split -> per-query prediction rows + metrics.

Used by the evaluate binary, by training's best-checkpoint callback (val split) and by
the demo. Rows are the moment_detr JSONL predictions (docs/design.md, "Predictions"):
windows in seconds, best first, with the decoding score P_start(i) * P_end(j), and
pred_saliency_scores = inside_probs over the video's valid steps.
"""

import math
import os

import numpy as np
import tensorflow as tf
import tqdm

from cimha_tf import timeline
from cimha_tf.evaluation import predictions as predictions_lib
from cimha_tf.evaluation import scorer


def ground_truth_path(data_dir, split):
  return os.path.join(data_dir, "annotations", f"{split}.jsonl")


def read_ground_truth(data_dir, split):
  """Ground-truth rows of a prepared split (DIR/annotations/SPLIT.jsonl)."""
  path = ground_truth_path(data_dir, split)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: split {split!r} is not in the prepared folder {data_dir}")
  return predictions_lib.read_ground_truth(path)


def _decode(outputs, video_mask, top_k):
  """(B, k) start steps, end steps, scores as numpy."""
  from cimha_tf.model import decode_spans
  starts, ends, scores = decode_spans(outputs["start_probs"], outputs["end_probs"], video_mask, top_k)
  return np.asarray(starts), np.asarray(ends), np.asarray(scores)


def predict_rows(model, dataset, top_k, queries=None, total_batches=None, progress=True):
  """Prediction rows for every query of an eval dataset ((inputs, meta) batches).

  queries: optional {qid: text} to fill the rows' "query" field.
  """
  @tf.function(reduce_retracing=True)
  def forward(inputs):
    return model(inputs, training=False)

  rows = []
  for inputs, meta in tqdm.tqdm(dataset, total=total_batches, desc="predict", unit="batch",
                                disable=not progress, leave=False):
    outputs = forward(inputs)
    starts, ends, scores = _decode(outputs, inputs["video_mask"], top_k)
    inside = outputs["inside_probs"].numpy()
    num_steps = meta["num_steps"].numpy().astype(np.int64)
    duration = meta["duration"].numpy().astype(np.float64)
    start_s, end_s = timeline.steps_to_seconds(starts, ends, duration[:, None], num_steps[:, None])
    for b, qid in enumerate(meta["qid"].numpy().tolist()):
      vid = meta["vid"].numpy()[b]
      rows.append({
          "qid": int(qid),
          "query": (queries or {}).get(int(qid), ""),
          "vid": vid.decode() if isinstance(vid, bytes) else str(vid),
          "pred_relevant_windows": [[round(float(s), 4), round(float(e), 4), float(sc)]
                                    for s, e, sc in zip(start_s[b], end_s[b], scores[b])],
          "pred_saliency_scores": [round(float(x), 6) for x in inside[b, :num_steps[b]]],
      })
  return rows


def evaluate_split(model, data_dir, split, batch_size, top_k, progress=True):
  """(metrics, rows) of `model` on a prepared split; metrics as scorer.score_predictions
  (R1@0.3 ... R5@0.7, mIoU in percent, num_queries, num_missing)."""
  from cimha_tf.data import pipeline
  gt = read_ground_truth(data_dir, split)
  dataset = pipeline.eval_dataset(data_dir, split, batch_size)
  rows = predict_rows(model, dataset, top_k, queries={r["qid"]: r.get("query", "") for r in gt},
                      total_batches=math.ceil(len(gt) / batch_size), progress=progress)
  # Every kept query must come back; a missing one is a pipeline bug, not a miss to hide.
  metrics = scorer.score_predictions(rows, gt, source=f"{data_dir} split {split!r}")
  return metrics, rows

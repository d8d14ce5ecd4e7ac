"""Runs a trained model over a prepared split -> per-query prediction rows + metrics.

Used by the evaluate binary, by training's best-checkpoint callback (val split) and by
the demo. Rows are the moment_detr JSONL predictions (docs/design.md, "Predictions"):
windows in seconds, best first, with the decoding score P_start(i) * P_end(j), and
pred_saliency_scores = inside_probs over the video's valid steps.
"""

import math
import os
import weakref

import numpy as np
import tensorflow as tf
import tqdm

from cimha_tf.common import timeline
from cimha_tf.evaluation import metrics as metrics_lib
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


def longest_moment_fraction(data_dir, split):
  """The longest first relevant window of `split` as a fraction of its video's duration,
  rounded up to 0.01 (at most 1)."""
  rows = read_ground_truth(data_dir, split)
  longest = max((float(r["relevant_windows"][0][1]) - float(r["relevant_windows"][0][0]))
                / float(r["duration"]) for r in rows)
  return min(1.0, math.ceil(round(longest * 100, 6)) / 100)


def resolve_max_span(config):
  """The decoding bound of `config` (None: every pair). With eval.max_span_from_train it is
  the training split's longest moment fraction, written into config.eval as a number
  (max_span_from_train then False): the workdir's config.json keeps the bound training
  selected with, and evaluate and export decode the same way whatever data they read."""
  if config.eval.get("max_span_from_train", False):
    config.eval.max_span_fraction = longest_moment_fraction(config.data.dir,
                                                            config.data.train_split)
    config.eval.max_span_from_train = False
  fraction = float(config.eval.get("max_span_fraction", 1.0))
  return fraction if fraction < 1.0 else None


_FORWARD = weakref.WeakKeyDictionary()  # model -> {(top_k, ...): tf.function}; one trace each


def _forward_fn(model, top_k, with_curves, max_span_fraction=None):
  from cimha_tf.model import decode_spans
  fns = _FORWARD.setdefault(model, {})
  key = (top_k, with_curves, max_span_fraction)
  if key not in fns:
    model_ref = weakref.ref(model)  # no strong reference from value to key

    @tf.function(reduce_retracing=True)
    def forward(inputs):
      outputs = model_ref()(inputs, training=False)
      spans = decode_spans(outputs["start_probs"], outputs["end_probs"], inputs["video_mask"],
                           top_k, max_span_fraction=max_span_fraction)
      if with_curves:
        return outputs, spans
      return {"inside_probs": outputs["inside_probs"]}, spans
    fns[key] = forward
  return fns[key]


def predict_rows(model, dataset, top_k, queries=None, total_batches=None, progress=True,
                 curves=None, max_span_fraction=None):
  """Prediction rows for every query of an eval dataset ((inputs, meta) batches).

  queries: optional {qid: text} to fill the rows' "query" field.
  curves: optional dict, filled with {qid: (start_probs, end_probs, inside_probs)} over
  the valid steps (for figures).
  """
  forward = _forward_fn(model, top_k, curves is not None, max_span_fraction)
  rows = []
  for inputs, meta in tqdm.tqdm(dataset, total=total_batches, desc="predict", unit="batch",
                                disable=not progress, leave=False):
    outputs, (starts, ends, scores) = forward(inputs)
    outputs = {k: v.numpy() for k, v in outputs.items()}
    inside = outputs["inside_probs"]
    starts, ends, scores = starts.numpy(), ends.numpy(), scores.numpy()
    num_steps = meta["num_steps"].numpy().astype(np.int64)
    duration = meta["duration"].numpy().astype(np.float64)
    start_s, end_s = timeline.steps_to_seconds(starts, ends, duration[:, None], num_steps[:, None])
    for b, qid in enumerate(meta["qid"].numpy().tolist()):
      vid = meta["vid"].numpy()[b]
      rows.append({
          "qid": int(qid),
          "query": (queries or {}).get(int(qid), ""),
          "vid": vid.decode() if isinstance(vid, bytes) else str(vid),
          # start step -1: the video has fewer than top_k windows (decode_spans)
          "pred_relevant_windows": [[round(float(s), 4), round(float(e), 4), float(sc)]
                                    for s, e, sc, i in zip(start_s[b], end_s[b], scores[b], starts[b])
                                    if i >= 0],
          "pred_saliency_scores": [round(float(x), 6) for x in inside[b, :num_steps[b]]],
      })
      if curves is not None:
        curves[int(qid)] = tuple(outputs[k][b, :num_steps[b]]
                                 for k in ("start_probs", "end_probs", "inside_probs"))
  return rows


EVAL_BUCKET_WIDTH = 8


def evaluate_split(model, data_dir, split, batch_size, top_k, progress=True, curves=None,
                   bucket_width=EVAL_BUCKET_WIDTH, max_span_fraction=None):
  """(metrics, rows) of `model` on a prepared split; metrics as scorer.score_predictions
  (R1@0.3 ... R5@0.7, mIoU in percent, num_queries, num_missing). Rows come in the split's
  annotation order, with max(top_k, 5) windows each (fewer only where a video has fewer
  pairs): with top_k < 5, "R5" would silently be recall among top_k windows.

  bucket_width: batches from bands of video lengths, cut to their longest video
  (pipeline.eval_dataset): the same outputs for less work; 0 batches in file order.
  max_span_fraction: decode_spans's bound on a window's length (None: every pair).
  """
  from cimha_tf.data import pipeline
  gt = read_ground_truth(data_dir, split)
  dataset = pipeline.eval_dataset(data_dir, split, batch_size, bucket_width=bucket_width)
  meta = pipeline.read_metadata(data_dir)
  bands = -(-int(meta["max_video_len"]) // bucket_width) if bucket_width else 1
  rows = predict_rows(model, dataset, max(int(top_k), max(metrics_lib.KS)),
                      queries={r["qid"]: r.get("query", "") for r in gt},
                      total_batches=math.ceil(len(gt) / batch_size) + bands - 1,
                      progress=progress, curves=curves, max_span_fraction=max_span_fraction)
  order = {r["qid"]: i for i, r in enumerate(gt)}
  rows.sort(key=lambda r: order.get(r["qid"], len(order)))
  # Every kept query must come back; a missing one is a pipeline bug, not a miss to hide.
  metrics = scorer.score_predictions(rows, gt, source=f"{data_dir} split {split!r}")
  return metrics, rows

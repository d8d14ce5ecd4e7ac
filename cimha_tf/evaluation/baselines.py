"""Two honest baselines the demo prints beside the model.

Both predict windows in normalised time (fraction of the video's duration), fitted on the
training split's ground truth only, and are scored like the model:
- fixed prior: the one window that is right (IoU >= 0.5) for the most training moments,
  i.e. the best any predictor can do that looks at neither the video nor the query;
- video-blind: the same fit done separately for each distinct query text (texts seen fewer
  than MIN_COUNT times fall back to the fixed prior): the best window that a predictor seeing only the query
  (and the duration) can learn from these training moments. It needs no training run,
  and it bounds what a video-blind model could learn about *where* a query's moment lies.
"""

import collections

import numpy as np

from cimha_tf.evaluation import metrics as metrics_lib

GRID = 50  # candidate boundaries at multiples of 2% of the duration
MIN_COUNT = 5  # query texts seen fewer times in training use the fixed prior


def _candidates(grid=GRID):
  i, j = np.triu_indices(grid + 1, k=1)
  return np.stack([i, j], axis=1) / grid  # (C, 2) normalised [start, end], start < end


def _normalised(rows):
  """(M, 2) first relevant window of each row as a fraction of its duration."""
  out = []
  for r in rows:
    duration = float(r["duration"])
    if duration <= 0:
      raise ValueError(f"qid {r['qid']}: duration {duration}, expected > 0")
    s, e = r["relevant_windows"][0]
    out.append((s / duration, e / duration))
  return np.clip(np.asarray(out, np.float64).reshape(-1, 2), 0.0, 1.0)


def best_window(moments, threshold=0.5, grid=GRID):
  """The candidate window with IoU >= threshold for the most moments (ties: higher mean IoU)."""
  cands = _candidates(grid)
  hits = np.zeros(len(cands))
  mean_iou = np.zeros(len(cands))
  for chunk in np.array_split(moments, max(1, len(moments) // 2000)):
    iou = metrics_lib.temporal_iou(cands, chunk)  # (C, chunk)
    hits += (iou >= threshold).sum(axis=1)
    mean_iou += iou.sum(axis=1)
  best = np.lexsort((mean_iou, hits))[-1]
  return tuple(cands[best])


def _query_key(text):
  return " ".join(str(text).lower().split())


def fit_fixed_prior(train_rows):
  return best_window(_normalised(train_rows))


def fit_video_blind(train_rows):
  """{query text: window} plus the fixed prior under key None."""
  by_text = collections.defaultdict(list)
  for r in train_rows:
    by_text[_query_key(r.get("query", ""))].append(r)
  table = {k: best_window(_normalised(v)) for k, v in by_text.items() if len(v) >= MIN_COUNT}
  table[None] = fit_fixed_prior(train_rows)
  return table


def _rows(test_rows, window_of):
  out = []
  for r in test_rows:
    a, b = window_of(r)
    d = float(r["duration"])
    out.append({"qid": r["qid"], "query": r.get("query", ""), "vid": r.get("vid", ""),
                "pred_relevant_windows": [[a * d, b * d, 1.0]]})
  return out


def predict_fixed_prior(window, test_rows):
  return _rows(test_rows, lambda r: window)


def predict_video_blind(table, test_rows):
  return _rows(test_rows, lambda r: table.get(_query_key(r.get("query", "")), table[None]))

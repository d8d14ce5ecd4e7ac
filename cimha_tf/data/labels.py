"""Per-query training labels on the pooled step grid, via `cimha_tf.common.timeline`.

Several relevant windows (QVHighlights-style files): the start / end steps are those
of the FIRST window in the record (the annotation's order; the single-moment heads need
one target), and the inside labels are the UNION of all windows: every relevant window
is "inside a moment", so marking the others 0 would teach the segmentation head that
relevant frames are irrelevant. With one window (Charades-STA, ActivityNet, TACoS) both
rules reduce to that window.
"""

import dataclasses

import numpy as np

from cimha_tf.common import timeline


@dataclasses.dataclass
class QueryLabels:
  start_step: int
  end_step: int
  window_steps: np.ndarray   # (W, 2) int64 inclusive step windows, all of the record's windows
  inside: np.ndarray         # (max_len,) float32: 1 inside any window, 0 outside, -1 padded


def window_steps(windows, duration, num_steps):
  """[(start_s, end_s), ...] -> (W, 2) int64 inclusive step windows."""
  if not windows:
    raise ValueError("a query needs at least one relevant window")
  if duration <= 0:
    raise ValueError(f"duration must be > 0 seconds, got {duration}")
  w = np.asarray(windows, np.float64).reshape(-1, 2)
  start, end = timeline.seconds_to_steps(w[:, 0], w[:, 1], duration, num_steps)
  return np.stack([start, end], axis=1).astype(np.int64)


def union_inside(steps, num_steps, max_len):
  """(W, 2) inclusive step windows -> (max_len,) float32 union mask, -1 on padded steps."""
  inside = np.zeros(max_len, np.float32)
  for s, e in steps:
    inside = np.maximum(inside, timeline.inside_mask(s, e, num_steps, max_len))
  inside[num_steps:] = -1.0
  return inside


def query_labels(windows, duration, num_steps, max_len):
  """Labels of one query over a video with `num_steps` valid steps padded to `max_len`."""
  if not 1 <= num_steps <= max_len:
    raise ValueError(f"num_steps must be in [1, {max_len}], got {num_steps}")
  steps = window_steps(windows, duration, num_steps)
  return QueryLabels(int(steps[0, 0]), int(steps[0, 1]), steps,
                     union_inside(steps, num_steps, max_len))

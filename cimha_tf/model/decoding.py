"""Span decoding (docs/paper.md "Decoding"): top-k (i, j), i <= j, by P_start(i) * P_end(j).

No non-maximum suppression: overlapping pairs all rank (what R@5 is computed over).

Vectorised: outer product (B, N, N), invalid pairs (j < i, padded steps, span longer than
max_span) pushed below every valid score, one top_k over the flattened N*N pairs. TF ops,
so it runs inside a tf.function / serving graph. Ties: tf.math.top_k returns the lower
flat index first, i.e. smaller start, then smaller end: deterministic.
When a video has fewer than k valid pairs, the missing entries are start = end = -1 with
score 0 (filter them with `scores > 0` or `start_steps >= 0`).
"""

import tensorflow as tf

from cimha_tf.common import timeline


def decode_spans(start_probs, end_probs, video_mask, top_k, max_span=None,
                 max_span_fraction=None):
  """The top_k windows of each video, best first.

  Args:
    start_probs, end_probs: (B, N) the model's probabilities.
    video_mask: (B, N), 1 on valid steps.
    top_k: windows per video (>= 1).
    max_span: at most this many steps (j - i + 1); None: any length.
    max_span_fraction: at most ceil(fraction * valid steps) steps per video (>= 1 step);
      None or >= 1: every pair, the paper's decoding.

  Returns:
    (start_steps int32 (B, k), end_steps int32 (B, k), scores float32 (B, k)).
  """
  start_probs = tf.convert_to_tensor(start_probs, tf.float32)
  end_probs = tf.convert_to_tensor(end_probs, tf.float32)
  valid = tf.convert_to_tensor(video_mask) > 0
  k = int(top_k)
  if k < 1:
    raise ValueError(f"top_k={top_k}: expected >= 1")
  n = tf.shape(start_probs)[1]
  scores = start_probs[:, :, None] * end_probs[:, None, :]
  i = tf.range(n)[:, None]
  j = tf.range(n)[None, :]
  ok = j >= i
  if max_span is not None:
    ok &= (j - i) < int(max_span)
  ok = ok[None] & valid[:, :, None] & valid[:, None, :]
  if max_span_fraction is not None and float(max_span_fraction) < 1.0:
    if not float(max_span_fraction) > 0.0:
      raise ValueError(f"max_span_fraction={max_span_fraction}: expected in (0, 1]")
    n_valid = tf.reduce_sum(tf.cast(valid, tf.float32), axis=1)
    # A small tolerance: fraction * steps that is a whole number in exact arithmetic.
    limit = tf.maximum(1.0, tf.math.ceil(float(max_span_fraction) * n_valid - 1e-4))
    ok &= tf.cast(j - i, tf.float32)[None] < limit[:, None, None]
  flat = tf.reshape(tf.where(ok, scores, -1.0), [tf.shape(scores)[0], n * n])
  # Pad so that top_k works when k > N*N (e.g. one-step videos).
  flat = tf.concat([flat, -tf.ones([tf.shape(flat)[0], k], tf.float32)], axis=1)
  best, idx = tf.math.top_k(flat, k=k, sorted=True)
  found = best >= 0.0
  idx = tf.cast(idx, tf.int32)
  none = -tf.ones_like(idx)
  start = tf.where(found, idx // n, none)
  end = tf.where(found, idx % n, none)
  return start, end, tf.where(found, best, tf.zeros_like(best))


def spans_to_seconds(start_steps, end_steps, duration, num_steps):
  """Step windows (B, k) -> (start_s, end_s) float32 (B, k) via timeline.steps_to_seconds.

  Args:
    start_steps, end_steps: (B, k) int steps, as decode_spans returns them.
    duration: (B,) video durations in seconds (or a scalar).
    num_steps: (B,) valid steps per video (or a scalar).
  """
  start = tf.cast(start_steps, tf.float32)
  end = tf.cast(end_steps, tf.float32)
  duration = tf.cast(duration, tf.float32)
  num_steps = tf.cast(num_steps, tf.float32)
  if duration.shape.rank == 1:
    duration = duration[:, None]
  if num_steps.shape.rank == 1:
    num_steps = num_steps[:, None]
  return timeline.steps_to_seconds(start, end, duration, num_steps)

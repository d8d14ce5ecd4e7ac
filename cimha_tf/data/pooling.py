"""Fixing a video's length to at most `max_len` steps (docs/paper.md, "Training details")."""

import numpy as np


def pool_to_max_len(features, max_len):
  """(T, D) -> (min(T, max_len), D) float32.

  Longer sequences are mean-pooled into `max_len` equal bins: bin k averages rows
  [floor(k*T/max_len), floor((k+1)*T/max_len)), each non-empty since T > max_len.
  Shorter ones are returned unchanged (the pipeline pads and masks them).
  """
  features = np.asarray(features)
  if features.ndim != 2:
    raise ValueError(f"expected (T, D) features, got shape {features.shape}")
  if max_len < 1:
    raise ValueError(f"max_len must be >= 1, got {max_len}")
  t = features.shape[0]
  if t <= max_len:
    return features.astype(np.float32, copy=False)
  starts = (np.arange(max_len, dtype=np.int64) * t) // max_len
  counts = np.diff(np.append(starts, t))
  # float64 sums: long videos summed in float32 lose precision.
  sums = np.add.reduceat(features.astype(np.float64), starts, axis=0)
  return (sums / counts[:, None]).astype(np.float32)

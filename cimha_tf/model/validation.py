"""validate_inputs: clear errors for bad model inputs before they reach the graph.

Inside the graph a wrong shape gives an opaque Keras/TF error (or, for an all-padding
row, a meaningless but finite output); serving, predict and evaluation call this first.
"""

import numpy as np

KEYS = ("video_features", "video_mask", "query_tokens")


def _fail(name, what, expected):
  raise ValueError(f"{name}: {what}; expected {expected}")


def validate_inputs(inputs, model_config, video_dim, vocab_size=None):
  """Checks a dict of numpy arrays against docs/design.md; raises ValueError naming the
  input and the expected shape/values. Padded video steps are not checked for NaN/inf:
  the model zeroes them before any computation.

  Args:
    inputs: {"video_features", "video_mask", "query_tokens"} numpy arrays.
    model_config: the model's config (max_video_len, max_query_len).
    video_dim: the feature width Dv the model was built for.
    vocab_size: token ids must be below it; None: not checked.
  """
  c = model_config
  for key in KEYS:
    if key not in inputs:
      _fail(key, f"missing (got keys {sorted(inputs)})", f"all of {KEYS}")
  feats = np.asarray(inputs["video_features"])
  mask = np.asarray(inputs["video_mask"])
  tokens = np.asarray(inputs["query_tokens"])
  n_max, l_max = c.max_video_len, c.max_query_len
  exp_v = f"shape (B, N, {video_dim}) with 1 <= N <= max_video_len={n_max}"
  if feats.ndim != 3:
    _fail("video_features", f"rank {feats.ndim}, shape {feats.shape}", exp_v)
  b, n, dv = feats.shape
  if dv != video_dim:
    _fail("video_features", f"feature dim {dv} (shape {feats.shape})", exp_v)
  if not 1 <= n <= n_max:
    _fail("video_features", f"{n} steps (shape {feats.shape})", exp_v)
  if mask.shape != (b, n):
    _fail("video_mask", f"shape {mask.shape}", f"(B, N) = ({b}, {n}) like video_features")
  if not np.isin(mask, (0, 1)).all():
    _fail("video_mask", "values other than 0/1", "1 = valid step, 0 = padding")
  valid = mask > 0
  if (~valid.any(axis=1)).any():
    rows = np.flatnonzero(~valid.any(axis=1)).tolist()
    _fail("video_mask", f"all-padding video in rows {rows[:10]}", "at least one valid step")
  if (np.diff(valid.astype(np.int8), axis=1) > 0).any():
    _fail("video_mask", "a valid step after a padded one", "valid steps first, then padding")
  if not np.issubdtype(feats.dtype, np.floating):
    _fail("video_features", f"dtype {feats.dtype}", "float features")
  bad = ~np.isfinite(feats).all(axis=2) & valid
  if bad.any():
    rows = sorted(set(np.nonzero(bad)[0].tolist()))
    _fail("video_features", f"NaN/inf at valid steps in rows {rows[:10]}", "finite values")
  exp_q = f"int shape (B, L) = ({b}, L) with 1 <= L <= max_query_len={l_max}"
  if tokens.ndim != 2 or tokens.shape[0] != b:
    _fail("query_tokens", f"shape {tokens.shape}", exp_q)
  if not np.issubdtype(tokens.dtype, np.integer):
    _fail("query_tokens", f"dtype {tokens.dtype}", exp_q)
  if not 1 <= tokens.shape[1] <= l_max:
    _fail("query_tokens", f"{tokens.shape[1]} tokens", exp_q)
  if tokens.size and (tokens.min() < 0 or (vocab_size is not None and tokens.max() >= vocab_size)):
    _fail("query_tokens", f"ids in [{tokens.min()}, {tokens.max()}]",
          f"ids in [0, vocab_size={vocab_size})")
  words = tokens != 0
  if (~words.any(axis=1)).any():
    rows = np.flatnonzero(~words.any(axis=1)).tolist()
    _fail("query_tokens", f"empty (all-padding) query in rows {rows[:10]}", "at least one word")
  if (np.diff(words.astype(np.int8), axis=1) > 0).any():
    _fail("query_tokens", "a word after padding (0)", "words first, then 0 padding")

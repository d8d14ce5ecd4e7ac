"""What both clients share: turning (query, features, duration) into signature inputs.

Videos of one request are zero-padded to the longest one (N <= max_video_len, longer
videos mean-pooled first); `video_length` tells the server how many steps are real.
"""

import numpy as np

MODEL_NAME = "cimha"
SIGNATURE_TEXT = "serving_default"
SIGNATURE_TOKENS = "serving_tokens"


def batch_inputs(queries, features, durations, max_video_len):
  """Lists of B queries (str, or int token-id lists for serving_tokens), (T, Dv) feature
  arrays and durations in seconds -> dict of numpy arrays named like the signature."""
  from cimha_tf.data.pooling import pool_to_max_len
  if not (len(queries) == len(features) == len(durations)) or not queries:
    raise ValueError(f"need as many queries ({len(queries)}), feature arrays ({len(features)}) "
                     f"and durations ({len(durations)}), at least one")
  feats = [pool_to_max_len(np.asarray(f, np.float32), max_video_len) for f in features]
  n = max(f.shape[0] for f in feats)
  dims = {f.shape[1] for f in feats}
  if len(dims) != 1:
    raise ValueError(f"feature arrays have different dimensions {sorted(dims)}")
  video = np.zeros((len(feats), n, dims.pop()), np.float32)
  for b, f in enumerate(feats):
    video[b, :f.shape[0]] = f
  out = {"video_features": video,
         "video_length": np.array([f.shape[0] for f in feats], np.int32),
         "duration": np.asarray(durations, np.float32)}
  if all(isinstance(q, str) for q in queries):
    out["query"] = np.array(queries, dtype=object)
  else:
    length = max(len(q) for q in queries)
    tokens = np.zeros((len(queries), length), np.int32)
    for b, q in enumerate(queries):
      tokens[b, :len(q)] = q
    out["query_tokens"] = tokens
  return out


def windows(outputs, b, top_k=None):
  """[[start_s, end_s, score], ...] of batch row b from the signature's outputs."""
  rows = zip(outputs["start_seconds"][b], outputs["end_seconds"][b], outputs["scores"][b])
  found = [[float(s), float(e), float(p)] for s, e, p in rows if p > 0]
  return found[:top_k] if top_k else found

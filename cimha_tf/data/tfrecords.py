"""On-disk records: one tf.train.Example per VIDEO, all its queries inside.

A video's (pooled) features are stored once, as raw little-endian float32 or float16
bytes, however many queries it has (ActivityNet: ~3.7 per video). Per-query fields are
parallel lists; token ids and windows are flattened with a length per query:

  vid bytes, num_steps int64, feature_dim int64, features bytes (num_steps * D values)
  qid [Q] int64, duration [Q] float, start_step [Q], end_step [Q] int64 (first window),
  token_ids [sum of lengths] int64, token_lengths [Q],
  window_steps [2 * sum of num_windows] int64 (inclusive start, end pairs), num_windows [Q]

`parse_video` (graph code for tf.data) decodes one record into padded per-video tensors
and per-query label tensors, vectorised over the queries; `unroll` turns that into one
element per query without copying the video's features. Shards are SPLIT-00000-of-0000N.tfrecord.
"""

import collections
import dataclasses
import os
from typing import List

import numpy as np
import tensorflow as tf

FEATURE_DTYPES = {"float32": "<f4", "float16": "<f2"}


def shard_name(split, index, num_shards):
  return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


@dataclasses.dataclass
class QueryEntry:
  qid: int
  duration: float
  token_ids: List[int]        # unpadded, at most max_query_len
  start_step: int
  end_step: int
  window_steps: np.ndarray    # (W, 2) inclusive steps


def _int64(values):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float(values):
  return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _bytes(value):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def encode_video(vid, features, queries, feature_dtype="float32"):
  """Serialises one video (pooled (T, D) features) and its QueryEntry list."""
  if feature_dtype not in FEATURE_DTYPES:
    raise ValueError(f"feature_dtype {feature_dtype!r}: expected one of {list(FEATURE_DTYPES)}")
  if not queries:
    raise ValueError(f"video {vid!r}: no queries to write")
  features = np.asarray(features)
  windows = [np.asarray(q.window_steps, np.int64).reshape(-1, 2) for q in queries]
  example = tf.train.Example(features=tf.train.Features(feature={
      "vid": _bytes(vid.encode("utf-8")),
      "num_steps": _int64([features.shape[0]]),
      "feature_dim": _int64([features.shape[1]]),
      "features": _bytes(features.astype(FEATURE_DTYPES[feature_dtype]).tobytes()),
      "qid": _int64([q.qid for q in queries]),
      "duration": _float([q.duration for q in queries]),
      "start_step": _int64([q.start_step for q in queries]),
      "end_step": _int64([q.end_step for q in queries]),
      "token_ids": _int64([t for q in queries for t in q.token_ids]),
      "token_lengths": _int64([len(q.token_ids) for q in queries]),
      "window_steps": _int64(np.concatenate(windows).ravel()),
      "num_windows": _int64([len(w) for w in windows]),
  }))
  return example.SerializeToString()


class ShardWriter:
  """Writes serialised videos, `videos_per_shard` per file, one file open at a time.

  Files get temporary names while writing; `close()` renames them to
  SPLIT-XXXXX-of-YYYYY.tfrecord once the number of shards is known (videos may be
  skipped on the way) and returns the final basenames.
  """

  def __init__(self, output_dir, split, videos_per_shard=256):
    if videos_per_shard < 1:
      raise ValueError(f"videos_per_shard must be >= 1, got {videos_per_shard}")
    self.output_dir, self.split, self.videos_per_shard = output_dir, split, videos_per_shard
    self._tmp, self._writer, self._in_shard, self.videos = [], None, 0, 0

  def write(self, serialized):
    if self._writer is None or self._in_shard == self.videos_per_shard:
      self._close_current()
      path = os.path.join(self.output_dir, f".{self.split}-{len(self._tmp):05d}.tfrecord.tmp")
      self._tmp.append(path)
      self._writer = tf.io.TFRecordWriter(path)
      self._in_shard = 0
    self._writer.write(serialized)
    self._in_shard += 1
    self.videos += 1

  def _close_current(self):
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  def abort(self):
    """Closes and deletes the temporary files (preparation failed midway)."""
    self._close_current()
    for tmp in self._tmp:
      if os.path.exists(tmp):
        os.remove(tmp)
    self._tmp = []

  def close(self):
    self._close_current()
    names = [shard_name(self.split, i, len(self._tmp)) for i in range(len(self._tmp))]
    for tmp, name in zip(self._tmp, names):
      os.replace(tmp, os.path.join(self.output_dir, name))
    self._tmp = []
    return names


def _list(dtype):
  return tf.io.FixedLenSequenceFeature([], dtype, allow_missing=True)


_SPEC = {
    "vid": tf.io.FixedLenFeature([], tf.string),
    "num_steps": tf.io.FixedLenFeature([], tf.int64),
    "feature_dim": tf.io.FixedLenFeature([], tf.int64),
    "features": tf.io.FixedLenFeature([], tf.string),
    "qid": _list(tf.int64),
    "duration": _list(tf.float32),
    "start_step": _list(tf.int64),
    "end_step": _list(tf.int64),
    "token_ids": _list(tf.int64),
    "token_lengths": _list(tf.int64),
    "window_steps": _list(tf.int64),
    "num_windows": _list(tf.int64),
}


def queries_by_num_steps(files):
  """{num_steps: queries} over the videos of `files`, parsing those two fields only."""
  spec = {k: _SPEC[k] for k in ("num_steps", "qid")}
  counts = collections.Counter()
  for ex in tf.data.TFRecordDataset(files).map(lambda r: tf.io.parse_single_example(r, spec)):
    counts[int(ex["num_steps"])] += int(ex["qid"].shape[0])
  return counts


def _padded_tokens(token_ids, token_lengths, max_query_len):
  """(Q, max_query_len) int32 from the concatenated ids and each query's length.

  The same checks as RaggedTensor.from_row_lengths' (lengths >= 0, summing to the number
  of ids), but as reshapes, whose mismatch is a kernel error: the ragged factory's checks
  are Assert ops, which are stateful, and under op determinism (train.deterministic)
  tf.data then runs the whole parse map on one thread and logs a NodeDef error for it.
  """
  ids = tf.reshape(token_ids, [tf.reduce_sum(token_lengths)])
  ids = tf.reshape(ids, [tf.reduce_sum(tf.abs(token_lengths))])  # fails on a negative length
  tokens = tf.RaggedTensor.from_row_lengths(ids, token_lengths, validate=False)
  return tf.cast(tokens.to_tensor(0, shape=[None, max_query_len]), tf.int32)


def parse_video(serialized, feature_dim, max_video_len, max_query_len, feature_dtype="float32"):
  """One serialised video -> dict of tensors (N = max_video_len, L = max_query_len, Q queries):

  video_features (N, D) float32 zero-padded, video_mask (N,) float32, num_steps int32,
  vid string; per query: qid (Q,) int64, duration (Q,) float32, query_tokens (Q, L) int32,
  start_step / end_step (Q,) int32, inside (Q, N) float32 (union of the query's windows,
  -1 on padded steps; same rule as labels.union_inside).
  """
  dtype = {"float32": tf.float32, "float16": tf.float16}[feature_dtype]
  ex = tf.io.parse_single_example(serialized, _SPEC)
  n = tf.cast(ex["num_steps"], tf.int32)
  feats = tf.io.decode_raw(ex["features"], dtype, little_endian=True)
  feats = tf.cast(tf.reshape(feats, [n, feature_dim]), tf.float32)
  feats = tf.pad(feats, [[0, max_video_len - n], [0, 0]])
  feats = tf.ensure_shape(feats, [max_video_len, feature_dim])
  t = tf.range(max_video_len)
  valid = t < n
  num_queries = tf.shape(ex["qid"])[0]

  tokens = _padded_tokens(ex["token_ids"], ex["token_lengths"], max_query_len)

  windows = tf.reshape(tf.cast(ex["window_steps"], tf.int32), [-1, 2])
  owner = tf.repeat(tf.range(num_queries), tf.cast(ex["num_windows"], tf.int32))
  in_window = tf.cast((t[None, :] >= windows[:, :1]) & (t[None, :] <= windows[:, 1:]), tf.float32)
  inside = tf.math.unsorted_segment_max(in_window, owner, num_queries)
  inside = tf.where(valid[None, :], inside, -1.0)

  return {
      "video_features": feats,
      "video_mask": tf.cast(valid, tf.float32),
      "num_steps": n,
      "vid": ex["vid"],
      "qid": ex["qid"],
      "duration": ex["duration"],
      "query_tokens": tokens,
      "start_step": tf.cast(ex["start_step"], tf.int32),
      "end_step": tf.cast(ex["end_step"], tf.int32),
      "inside": inside,
  }


PER_VIDEO = ("video_features", "video_mask", "num_steps", "vid")


def unroll(video):
  """Per-video dict from `parse_video` -> Dataset of (video part, query part) per query.

  The video part is the same tensor for all of the video's queries (captured by the map,
  which shares the buffer), so unrolling and shuffle buffers hold references, not copies:
  the features are copied once, when batched. `merge` joins the parts afterwards.
  Not Dataset.from_tensors(...).repeat(): TensorDataset is a stateful op that tf.data's
  determinism rewrite does not trust, and under op determinism (train.deterministic) it
  would then run every parallel map, batch and prefetch of the pipeline sequentially.
  """
  whole = {k: video[k] for k in PER_VIDEO}
  parts = tf.data.Dataset.from_tensor_slices({k: v for k, v in video.items() if k not in PER_VIDEO})
  return parts.map(lambda part: (whole, part))


def merge(video_part, query_part):
  return {**video_part, **query_part}


def check_video(serialized, feature_dim, max_video_len, max_query_len, feature_dtype, source):
  """Python-side consistency check of one serialised video against the folder's metadata;
  returns its number of queries, or raises ValueError naming `source` and the field."""
  try:
    ex = tf.train.Example.FromString(serialized).features.feature
  except Exception as e:  # protobuf's DecodeError
    raise ValueError(f"{source}: not a tf.train.Example ({e})") from e
  missing = [k for k in _SPEC if k not in ex]
  if missing:
    raise ValueError(f"{source}: fields {missing} missing; not written by cimha_tf.prepare_data?")
  ints = lambda k: list(ex[k].int64_list.value)  # noqa: E731
  vid = ex["vid"].bytes_list.value[0].decode("utf-8", "replace")
  where = f"{source}, video {vid!r}"
  n, dim = ints("num_steps")[0], ints("feature_dim")[0]
  if dim != feature_dim:
    raise ValueError(f"{where}: feature_dim {dim}, metadata.json says {feature_dim}")
  if not 1 <= n <= max_video_len:
    raise ValueError(f"{where}: num_steps {n}, expected 1..{max_video_len} (max_video_len)")
  nbytes = len(ex["features"].bytes_list.value[0])
  want = n * dim * np.dtype(FEATURE_DTYPES[feature_dtype]).itemsize
  if nbytes != want:
    raise ValueError(f"{where}: {nbytes} feature bytes, expected {want} ({n} x {dim} {feature_dtype})")
  q = len(ints("qid"))
  lengths, windows, num_windows = ints("token_lengths"), ints("window_steps"), ints("num_windows")
  per_query = {"duration": len(ex["duration"].float_list.value), "start_step": len(ints("start_step")),
               "end_step": len(ints("end_step")), "token_lengths": len(lengths),
               "num_windows": len(num_windows)}
  bad = {k: v for k, v in per_query.items() if v != q}
  if q == 0 or bad:
    raise ValueError(f"{where}: {q} qids but per-query field lengths {bad or per_query}")
  if sum(lengths) != len(ints("token_ids")) or not all(1 <= l <= max_query_len for l in lengths):
    raise ValueError(f"{where}: token lengths {lengths} inconsistent with {len(ints('token_ids'))} "
                     f"token ids or max_query_len {max_query_len}")
  if len(windows) != 2 * sum(num_windows) or min(num_windows) < 1:
    raise ValueError(f"{where}: {len(windows)} window step values for windows per query {num_windows}")
  steps = ints("start_step") + ints("end_step") + windows
  if not all(0 <= s < n for s in steps) or any(s > e for s, e in zip(ints("start_step"), ints("end_step"))):
    raise ValueError(f"{where}: step labels outside [0, {n}) or start > end")
  return q

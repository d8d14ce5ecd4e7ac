"""tf.data pipelines over a prepared folder (docs/design.md, "Prepared folder").

Training order: shards shuffled, read interleaved, videos shuffled, each video unrolled
into its queries, then a query-level shuffle buffer, so neighbouring batch entries come
from different videos and shards. Small splits (decoded videos under `cache_bytes`) are
decoded once and cached in memory; later epochs only shuffle and batch. Unrolling shares
each video's feature tensor among its queries (tfrecords.unroll), so the features are
copied once per query, into the batch, and the shuffle buffers hold references.

Distribution: with several workers (`num_workers` > 1) input is auto-sharded by DATA over
a deterministic, seeded stream: every worker builds the same global batches and takes its
1/W of each, so a step's global batch is the one a single machine would train on and
batches_per_pass steps are exactly one pass, every query once. The price: each worker
reads and decodes the whole split. FILE sharding (each worker its own shards) cannot
promise that, since shards differ in size, nor pass `group_by_window`.

Length buckets (`bucket_width` > 0): queries are batched with others whose video falls in
the same band of `bucket_width` steps, and each batch's time axis is cut to its longest
video, rounded up to a multiple of `bucket_width`. The model is exact under padding, so
this changes which queries share a batch, not what a batch computes, and a batch of short
videos costs what its length does (docs/benchmarks.md, figure 1); nothing is gained when
most videos fill max_video_len. Evaluation can bucket too (eval_dataset(bucket_width=...);
runner.evaluate_split does, and puts rows back in order).
"""

import collections
import contextlib
import math
import os

import tensorflow as tf

from cimha_tf.common.jsonfile import read_json_object
from cimha_tf.data import tfrecords

METADATA = "metadata.json"
VIDEO_SHUFFLE_BUFFER = 256
QUERY_SHUFFLE_BUFFER = 2048
DEFAULT_CACHE_BYTES = 2 << 30
_REQUIRED = ("feature_dim", "vocab_size", "max_video_len", "max_query_len", "feature_dtype", "splits")


def read_metadata(data_dir):
  """The prepared folder's metadata.json as a dict; clear errors when it is not one."""
  data_dir = os.fspath(data_dir)
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f"prepared data folder {data_dir} not found "
                            "(run python -m cimha_tf.prepare_data first)")
  path = os.path.join(data_dir, METADATA)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} not found: {data_dir} is not a folder written by "
                            "python -m cimha_tf.prepare_data")
  meta = read_json_object(path, "metadata", expected="a JSON object (a damaged metadata.json?)")
  missing = [k for k in _REQUIRED if k not in meta]
  if missing:
    raise ValueError(f"{path}: missing fields {missing}")
  return meta


def split_files(data_dir, split, meta=None):
  """Absolute shard paths of `split`, checked to exist and, where metadata.json records
  them (`record_bytes`; older folders lack it), to have their prepared sizes: a shard that
  lost whole records (0 bytes, or cut at a record boundary) reads without any tf.data
  error, and training or evaluation would run on part of the split without a word."""
  meta = meta or read_metadata(data_dir)
  if split not in meta["splits"]:
    raise KeyError(f"split {split!r} not in {os.path.join(data_dir, METADATA)}; "
                   f"available: {sorted(meta['splits'])}")
  names = meta["splits"][split]["records"]
  if not names:
    raise ValueError(f"split {split!r} in {data_dir} has no records (all its videos were skipped?)")
  files = [os.path.join(data_dir, n) for n in names]
  missing = [f for f in files if not os.path.isfile(f)]
  if missing:
    raise FileNotFoundError(f"split {split!r}: {len(missing)} shard(s) listed in metadata.json "
                            f"are missing, e.g. {missing[0]}")
  for path, size in zip(files, meta["splits"][split].get("record_bytes", ())):
    if os.path.getsize(path) != size:
      raise ValueError(f"{path}: {os.path.getsize(path)} bytes, but metadata.json says {size} "
                       f"(a damaged or partly copied shard of split {split!r}); re-run "
                       "python -m cimha_tf.prepare_data, or copy the prepared folder again")
  return files


def _workers(num_workers):
  """Workers reading this input: the current strategy's cluster (chief + workers), or
  `num_workers` (the trainer's, from TF_CONFIG: it builds its dataset outside
  strategy.scope())."""
  spec = {}
  if tf.distribute.has_strategy():
    resolver = getattr(tf.distribute.get_strategy(), "cluster_resolver", None)
    try:
      spec = resolver.cluster_spec().as_dict() if resolver else {}
    except (ValueError, AttributeError):
      spec = {}
  in_spec = sum(len(spec.get(job, [])) for job in ("chief", "worker"))
  return max(1, in_spec, int(num_workers))


def _inputs(q):
  return {"video_features": q["video_features"], "video_mask": q["video_mask"],
          "query_tokens": q["query_tokens"]}


def _to_train(v, q):
  q = tfrecords.merge(v, q)
  return _inputs(q), {"start_probs": q["start_step"], "end_probs": q["end_step"],
                      "inside_probs": q["inside"]}


def _to_eval(v, q):
  q = tfrecords.merge(v, q)
  return _inputs(q), {"qid": q["qid"], "vid": q["vid"], "duration": q["duration"],
                      "num_steps": q["num_steps"]}


def band(length, bucket_width):
  """A length's bucket (python int or int64 tensor): lengths 1..w are band 0, w+1..2w band 1."""
  return (length - 1) // bucket_width


def _bucket_key(bucket_width, length_fn):
  def key(*element):
    return band(tf.cast(length_fn(*element), tf.int64), bucket_width)
  return key


def batch_by_length(ds, batch_size, bucket_width, length_fn, drop_remainder=False,
                    deterministic=None):
  """`ds` batched; with bucket_width > 0, only elements whose length_fn(*element) falls in
  the same band ((length - 1) // bucket_width) share a batch. A band's last, partial batch
  comes out when `ds` ends (kept unless drop_remainder), so no element is lost."""
  if not bucket_width:
    return ds.batch(batch_size, drop_remainder=drop_remainder,
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
  if bucket_width < 0:
    raise ValueError(f"bucket_width must be >= 0 (0 = no length buckets), got {bucket_width}")
  return ds.group_by_window(
      _bucket_key(bucket_width, length_fn),
      lambda _, window: window.batch(batch_size, drop_remainder=drop_remainder),
      window_size=batch_size)


def valid_length(video_mask):
  """Per row: 1 + the last valid step's index (0 for an all-padding row)."""
  steps = tf.range(1, tf.shape(video_mask)[-1] + 1)
  return tf.reduce_max(tf.where(video_mask > 0, steps, 0), axis=-1)


def cut_time_axis(inputs, labels, multiple):
  """A batch with its time axis cut to its longest video rounded up to `multiple` (never
  past its current length): padded steps reach no output or loss, so the cut ones were
  pure cost. `labels`: training labels (inside_probs is cut too) or eval meta."""
  n = tf.shape(inputs["video_mask"])[1]
  longest = tf.reduce_max(valid_length(inputs["video_mask"]))
  w = tf.minimum(n, (longest + multiple - 1) // multiple * multiple)
  inputs = {**inputs, "video_features": inputs["video_features"][:, :w],
            "video_mask": inputs["video_mask"][:, :w]}
  if "inside_probs" in labels:
    labels = {**labels, "inside_probs": labels["inside_probs"][:, :w]}
  return inputs, labels


def _parse_videos(files, meta, deterministic):
  parse_raw = lambda s: tfrecords.parse_video(  # noqa: E731
      s, meta["feature_dim"], meta["max_video_len"], meta["max_query_len"], meta["feature_dtype"])
  return files.map(parse_raw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def train_dataset(data_dir, split, batch_size, shuffle=True, seed=None, deterministic=False,
                  repeat=False, drop_remainder=False, cache_bytes=DEFAULT_CACHE_BYTES,
                  bucket_width=0, num_workers=1):
  """(inputs, labels) batches of `split` for Model.fit (docs/design.md "Model inputs").

  deterministic=True fixes the order: with shuffle and no seed, seed 0 is used. Always on
  under multi-worker training (DATA sharding needs the same stream on every worker).
  drop_remainder=True keeps every batch at `batch_size`.
  bucket_width > 0: length buckets (module docstring); the time axis then varies by batch,
  a multiple of bucket_width up to max_video_len. 0: every batch is max_video_len long.
  num_workers: the workers training together (training.strategy.num_workers()), told
  rather than looked up so that data stays below training.
  """
  meta = read_metadata(data_dir)
  files = split_files(data_dir, split, meta)
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if _workers(num_workers) > 1:
    deterministic = True  # DATA sharding partitions only streams that agree across workers
  if deterministic and seed is None:
    seed = 0
  # The cache holds decoded videos padded to max_video_len, in float32.
  videos_bytes = meta["splits"][split]["videos"] * meta["max_video_len"] * meta["feature_dim"] * 4
  cache = videos_bytes <= cache_bytes

  names = tf.data.Dataset.from_tensor_slices(files)
  if cache:
    # Decode once in file order; shuffling happens after the cache.
    videos = _parse_videos(tf.data.TFRecordDataset(names), meta, True).cache()
    if shuffle:
      num_videos = meta["splits"][split].get("videos", VIDEO_SHUFFLE_BUFFER)
      videos = videos.shuffle(max(1, num_videos), seed=seed, reshuffle_each_iteration=True)
  else:
    if shuffle:
      names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    records = names.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if shuffle:
      records = records.shuffle(VIDEO_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    videos = _parse_videos(records, meta, deterministic)

  queries = videos.flat_map(tfrecords.unroll)
  if shuffle:
    queries = queries.shuffle(QUERY_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
  # Parallel batch: copying a batch of features (100 x 128 x 1024 float32 = 52 MB) is the
  # pipeline's main cost per step.
  ds = batch_by_length(queries, batch_size, bucket_width, lambda v, q: v["num_steps"],
                       drop_remainder=drop_remainder, deterministic=deterministic)
  ds = ds.map(_to_train, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
  if bucket_width:
    ds = ds.map(lambda x, y: cut_time_axis(x, y, bucket_width),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
  if repeat:
    # After batching: each pass is batched on its own (every query once, the bands' partial
    # batches flushed at its end), so batches_per_pass steps are exactly one pass. Repeated
    # before, a band's leftovers waited for the next pass: queries were missed, repeated,
    # and could meet themselves in one batch.
    ds = ds.repeat()
  options = tf.data.Options()
  options.deterministic = deterministic
  # DATA on the identical streams every worker builds (above): an exact split of each
  # global batch (module docstring). One worker: nothing is sharded.
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def eval_dataset(data_dir, split, batch_size, bucket_width=0):
  """(inputs, meta) batches of `split`: every kept query exactly once, in file order, last
  batch possibly smaller. meta: qid int64, vid string, duration float32, num_steps int32.

  bucket_width > 0: length buckets as in training (batches from one band of video lengths,
  time axis cut to the longest video); still every query once and a fixed order, but not
  file order (each band's last, partial batch comes at the end). Outputs over valid steps
  are those of the uncut batch: the model is exact under padding.
  """
  meta = read_metadata(data_dir)
  files = split_files(data_dir, split, meta)
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  records = tf.data.TFRecordDataset(files)
  ds = _parse_videos(records, meta, True).flat_map(tfrecords.unroll)
  ds = batch_by_length(ds, batch_size, bucket_width, lambda v, q: v["num_steps"],
                       deterministic=True)
  ds = ds.map(_to_eval, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if bucket_width:
    ds = ds.map(lambda x, m: cut_time_axis(x, m, bucket_width),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def verify_split(data_dir, split, progress=False):
  """Reads every record of `split` once and checks it against metadata.json (field sizes,
  dtypes, label ranges, video and query counts). Slow on big splits (a full read), so run
  only once tf.data has failed (naming_damaged_shards): its own errors on a truncated
  shard do not name the file, this does."""
  from tqdm import tqdm
  meta = read_metadata(data_dir)
  files = split_files(data_dir, split, meta)
  videos = queries = 0
  for path in tqdm(files, desc=f"verify {split}", unit="shard", disable=not progress):
    try:
      for i, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
        queries += tfrecords.check_video(record, meta["feature_dim"], meta["max_video_len"],
                                         meta["max_query_len"], meta["feature_dtype"],
                                         f"{path} record {i}")
        videos += 1
    except tf.errors.OpError as e:
      raise ValueError(f"{path}: unreadable TFRecord shard ({type(e).__name__}: {e.message}); "
                       "re-run python -m cimha_tf.prepare_data") from e
  info = meta["splits"][split]
  if (videos, queries) != (info["videos"], info["queries"]):
    raise ValueError(f"{data_dir} split {split!r}: shards hold {videos} videos / {queries} queries, "
                     f"metadata.json says {info['videos']} / {info['queries']}")
  return {"videos": videos, "queries": queries}


@contextlib.contextmanager
def naming_damaged_shards(data_dir, splits):
  """Around work that reads `splits`: tf.data's DataLossError on a damaged shard names no
  file, so on one every shard of those splits is read (verify_split) and the error names
  the damaged one; the original error stands if none is found."""
  try:
    yield
  except tf.errors.DataLossError:
    for split in dict.fromkeys(splits):
      verify_split(data_dir, split)
    raise


def batches_per_pass(data_dir, split, batch_size, bucket_width=0, drop_remainder=False):
  """Batches train_dataset gives for one pass over `split` (steps_per_epoch with
  repeat=True): with length buckets, each band's own batches, partial ones included."""
  meta = read_metadata(data_dir)
  files = split_files(data_dir, split, meta)
  per = (lambda n: n // batch_size) if drop_remainder else (lambda n: math.ceil(n / batch_size))
  if not bucket_width:
    return per(int(meta["splits"][split]["queries"]))
  # Folders prepared before metadata.json recorded the counts: read from the records.
  by_steps = (meta["splits"][split].get("queries_by_num_steps")
              or tfrecords.queries_by_num_steps(files))
  bands = collections.Counter()
  for steps, count in by_steps.items():
    bands[band(int(steps), bucket_width)] += count
  return sum(per(n) for n in bands.values())

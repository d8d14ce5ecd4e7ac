"""The library behind `python -m cimha_tf.prepare_data` (docs/design.md, "Prepared folder").

Annotations are small, so every split's records are read and grouped by video first
(videos in order of first appearance). Features are then read, validated, pooled and
written one video at a time: memory holds one video's features, never the dataset's.

Accounting per split: read = kept + sum(dropped). The reader's repairs and drops are
carried over; preparation adds its own drops, by reason, for the queries of skipped
videos (with skip_bad_videos: "missing_video", "wrong_dim", "non_finite", "empty",
"bad_shape", ...), counts the skipped videos by the same reasons, and drops queries whose
text has no token at all ("no_tokens"; the readers already drop empty sentences).
Duplicates (same video, tokens and windows as an earlier query of the split; 12-14% of
each split of 2D-TAN's TACoS) are kept, since the benchmarks' published counts and scores
include them, but counted ("duplicates_kept") and warned about, as are queries longer than
max_query_len tokens, cut to their first max_query_len ("queries_truncated").
"""

import collections
import json
import os
import re

import numpy as np
from absl import logging
from tqdm import tqdm

from cimha_tf.common import atomic
from cimha_tf.data import features as features_lib
from cimha_tf.data import labels as labels_lib
from cimha_tf.common import lock
from cimha_tf.data import pipeline
from cimha_tf.data import text as text_lib
from cimha_tf.data import tfrecords
from cimha_tf.data.pooling import pool_to_max_len
from cimha_tf.data.records import ReadReport

VOCAB = "vocab.json"
EMBEDDINGS = "embeddings.npy"
ANNOTATIONS = "annotations"
FORMAT_VERSION = 1
F16_MAX = float(np.finfo(np.float16).max)


def training_split(names):
  """The split the vocabulary comes from: the first one named "train", else the first whose
  name contains "train"."""
  names = list(names)
  for cond in (lambda n: n == "train", lambda n: "train" in n):
    for n in names:
      if cond(n):
        return n
  raise ValueError(f"no training split among {names}: the vocabulary is built from the "
                   "training split only")


def group_by_video(records):
  groups = collections.OrderedDict()
  for r in records:
    groups.setdefault(r.vid, []).append(r)
  return groups


def _check_unique_qids(split, records):
  seen = set()
  for r in records:
    if r.qid in seen:
      raise ValueError(f"split {split!r}: qid {r.qid} appears twice; qids must be unique per split")
    seen.add(r.qid)


def _count_duplicates(records):
  """Queries identical to an earlier one of the split for the model and the scorer."""
  seen = collections.Counter(
      (r.vid, tuple(text_lib.tokenize(r.query)), tuple(map(tuple, r.windows))) for r in records)
  return sum(n - 1 for n in seen.values())


def _load_video(store, vid, max_video_len, feature_dtype):
  raw = store.get(vid)
  feats = pool_to_max_len(raw, max_video_len)
  if feature_dtype == "float16" and np.abs(feats).max() > F16_MAX:
    raise features_lib.FeatureError(
        "float16_overflow", f"video {vid!r}: features up to {np.abs(feats).max():.4g} exceed "
        f"float16's range ({F16_MAX}); prepare without --float16")
  return feats, raw.shape[0] > max_video_len


def _write_video(writer, vid, feats, recs, vocab, max_video_len, max_query_len, feature_dtype,
                 dropped, kept_records):
  entries, kept = [], []
  for r in recs:
    if not text_lib.tokenize(r.query, 1):  # e.g. only dropped symbols: nothing to condition on
      dropped["no_tokens"] += 1
      continue
    ids = vocab.encode(r.query, max_query_len)
    try:
      lab = labels_lib.query_labels(r.windows, r.duration, feats.shape[0], max_video_len)
    except ValueError as e:  # readers repair windows; this is a reader bug or a hand-made record
      raise ValueError(f"query qid={r.qid} of video {vid!r}: {e}") from e
    entries.append(tfrecords.QueryEntry(
        qid=r.qid, duration=r.duration, token_ids=ids[ids != text_lib.PAD_ID].tolist(),
        start_step=lab.start_step, end_step=lab.end_step, window_steps=lab.window_steps))
    kept.append(r)
  if entries:
    writer.write(tfrecords.encode_video(vid, feats, entries, feature_dtype))
    kept_records.extend(kept)


def _write_split(split, records, report, store, vocab, output_dir, max_video_len,
                 max_query_len, feature_dtype, skip_bad_videos, videos_per_shard, progress):
  _check_unique_qids(split, records)
  groups = group_by_video(records)
  dropped = collections.Counter(report.dropped)
  skipped_videos = collections.Counter()
  kept_records, pooled_videos = [], 0
  by_steps = collections.Counter()  # kept queries per video length: training's batch count
  writer = tfrecords.ShardWriter(output_dir, split, videos_per_shard)
  try:
    for vid, recs in tqdm(groups.items(), desc=f"{split} videos", unit="video", disable=not progress):
      try:
        feats, pooled = _load_video(store, vid, max_video_len, feature_dtype)
      except features_lib.FeatureError as e:
        if not skip_bad_videos:
          raise features_lib.FeatureError(
              e.reason, f"{e} ({len(recs)} {split} queries need video {vid!r}; pass "
              "--skip_bad_videos to skip such videos and count their queries as dropped)") from e
        skipped_videos[e.reason] += 1
        dropped[e.reason] += len(recs)
        continue
      pooled_videos += pooled
      before = len(kept_records)
      _write_video(writer, vid, feats, recs, vocab, max_video_len, max_query_len, feature_dtype,
                   dropped, kept_records)
      by_steps[int(feats.shape[0])] += len(kept_records) - before
  except BaseException:
    writer.abort()
    raise
  shards = writer.close()

  os.makedirs(os.path.join(output_dir, ANNOTATIONS), exist_ok=True)
  with open(os.path.join(output_dir, ANNOTATIONS, f"{split}.jsonl"), "w", encoding="utf-8") as f:
    for r in kept_records:
      f.write(json.dumps(r.to_json(), ensure_ascii=False) + "\n")

  info = {
      "source": report.source,
      "records": shards,
      # Read back by pipeline.split_files: a shard cut at a record boundary (a partial
      # copy) reads without any tf.data error, so its size is the only sign of the loss.
      "record_bytes": [os.path.getsize(os.path.join(output_dir, s)) for s in shards],
      "videos": writer.videos,
      "queries": len(kept_records),
      "read": report.read,
      "kept": len(kept_records),
      "repaired": dict(report.repaired),
      "dropped": dict(dropped),
      "videos_read": len(groups),
      "videos_skipped": dict(skipped_videos),
      "videos_pooled": int(pooled_videos),
      "queries_by_num_steps": {str(n): c for n, c in sorted(by_steps.items()) if c},
      "duplicates_kept": _count_duplicates(kept_records),
      # Cut to their first max_query_len tokens (punctuation counts): 5.5% of ActivityNet's.
      "queries_truncated": sum(len(text_lib.tokenize(r.query, max_query_len + 1)) > max_query_len
                               for r in kept_records),
      "annotations": f"{ANNOTATIONS}/{split}.jsonl",
  }
  if info["queries_truncated"]:
    logging.warning("split %r: %d of %d kept queries have more than max_query_len=%d tokens "
                    "(punctuation included) and are cut to their first %d", split,
                    info["queries_truncated"], info["kept"], max_query_len, max_query_len)
  if info["duplicates_kept"]:
    logging.warning("split %r: %d of %d kept queries repeat an earlier query of the split "
                    "(same video, words and window); kept, as the benchmark's published counts "
                    "include them", split, info["duplicates_kept"], info["kept"])
  if info["kept"] + sum(dropped.values()) != info["read"]:
    raise AssertionError(f"split {split!r}: read {info['read']} != kept {info['kept']} + dropped "
                         f"{sum(dropped.values())} ({dict(dropped)})")
  return info


def prepare_splits(splits, features, output_dir, dataset="custom", glove=None,
                   max_video_len=128, max_query_len=25, feature_layout="auto", float16=False,
                   skip_bad_videos=False, videos_per_shard=256, progress=True):
  """Writes the prepared folder from already-read annotations {split: (records, ReadReport)}.

  Returns the metadata dict (also written to OUTPUT_DIR/metadata.json).
  """
  if max_video_len < 1 or max_query_len < 1:
    raise ValueError(f"max_video_len and max_query_len must be >= 1, got {max_video_len}, {max_query_len}")
  if not splits:
    raise ValueError("no splits to prepare")
  for name, (records, report) in splits.items():
    report.check()
  train = training_split(splits)
  if not splits[train][0]:
    report = splits[train][1]
    raise ValueError(f"training split {train!r} ({report.source}) has no usable query: read "
                     f"{report.read}, dropped {dict(report.dropped) or 0}; the vocabulary and "
                     "the training set come from it")
  vocab = text_lib.Vocabulary.build((r.query for r in splits[train][0]), max_len=max_query_len)
  # The feature store opens (and its dimension is probed) before anything is written or
  # GloVe is read (minutes for 840B): a mistyped --features fails at once, leaving no files.
  with features_lib.open_feature_store(features, feature_layout) as store:
    store.probe_feature_dim(dict.fromkeys(r.vid for r in splits[train][0]))
    recipe = feature_recipe(features, store.feature_dim)
    # One writer per folder; the new folder is built beside the old one (which stays
    # readable meanwhile) and swapped in whole once complete: a kill or an error leaves the
    # old folder as it was, and no reader ever sees a half-written one.
    with lock.hold(output_dir, "preparing data"):
      parent, name = os.path.split(os.path.abspath(output_dir))
      atomic.remove_temporaries(parent, name)  # builds of killed runs
      with atomic.folder(output_dir, keep=_not_written_here) as build:
        meta = _write_folder(splits, train, vocab, store, features, recipe, build, dataset,
                             glove, max_video_len, max_query_len, float16, skip_bad_videos,
                             videos_per_shard, progress)
  return meta


def _not_written_here(name):
  """Entries of an earlier OUTPUT_DIR that prepare_data did not write: moved into the new
  folder (e.g. a feature store kept there), not deleted with the old one."""
  return not (name in (pipeline.METADATA, VOCAB, EMBEDDINGS, ANNOTATIONS)
              or _SHARD.match(name))


_SHARD = re.compile(r"^.+-\d{5}-of-\d{5}\.tfrecord$")


def _write_folder(splits, train, vocab, store, features, recipe, output_dir, dataset, glove,
                  max_video_len, max_query_len, float16, skip_bad_videos, videos_per_shard,
                  progress):
  feature_dtype = "float16" if float16 else "float32"
  split_info = {}
  vocab.save(os.path.join(output_dir, VOCAB))
  embeddings, glove_report = None, None
  if glove:
    from cimha_tf.data import glove as glove_lib
    matrix, glove_report = glove_lib.load_glove(glove, vocab, progress=progress)
    np.save(os.path.join(output_dir, EMBEDDINGS), np.asarray(matrix, np.float32))
    embeddings = EMBEDDINGS
  for name, (records, report) in splits.items():
    split_info[name] = _write_split(name, records, report, store, vocab, output_dir,
                                    max_video_len, max_query_len, feature_dtype,
                                    skip_bad_videos, videos_per_shard, progress)
    if name == train and not split_info[name]["kept"]:
      raise ValueError(f"training split {train!r}: no query kept of {split_info[name]['read']} "
                       f"(dropped: {split_info[name]['dropped']}); nothing to train on")
  meta = {
      "format_version": FORMAT_VERSION,
      "dataset": dataset,
      "feature_dim": int(store.feature_dim),
      "vocab_size": len(vocab),
      "max_video_len": max_video_len,
      "max_query_len": max_query_len,
      "feature_dtype": feature_dtype,
      "feature_layout": store.layout,
      "features": os.path.abspath(os.fspath(features)),
      "feature_recipe": recipe,
      "vocab": VOCAB,
      "vocab_split": train,
      "embeddings": embeddings,
      "glove": _report_json(glove_report),
      "splits": split_info,
  }
  with open(os.path.join(output_dir, pipeline.METADATA), "w") as f:
    json.dump(meta, f, indent=2)
  return meta


RECIPE_FILE = "recipe.json"  # cimha_tf.video.recipe.RECIPE_FILE (data does not import video)


def feature_recipe(features, feature_dim):
  """The recipe.json that extract_features writes beside its features (copied into
  metadata.json, so that export and predict --video know how the training features were
  made), or None for features from elsewhere (their recipe is unknown)."""
  path = os.path.join(os.fspath(features), RECIPE_FILE)
  if not os.path.isfile(path):
    return None
  from cimha_tf.common.jsonfile import read_json_object
  recipe = read_json_object(path, "feature recipe", expected="a feature recipe object")
  dim = recipe.get("output_dim")
  if feature_dim is not None and dim != feature_dim:
    raise ValueError(f"{path}: the recipe says {dim}-d features but the folder's features are "
                     f"{feature_dim}-d; the recipe is not these features'")
  return recipe


def _report_json(report):
  if report is None:
    return None
  if hasattr(report, "to_json"):
    return report.to_json()
  if isinstance(report, dict):
    return report
  return str(report)


def carve_val(splits, every, videos="the training split", setting="--val_every"):
  """Moves every `every`-th training video (in file order) with all its queries to a "val"
  split: a validation split for datasets that have none (Charades-STA), with no video
  shared between the two. `videos` and `setting` name, in an error, where the number of
  videos and `every` come from."""
  if "val" in splits:
    raise ValueError(f"{setting}={every}: the annotations already have a 'val' split")
  records, report = splits["train"]
  vids = list(dict.fromkeys(r.vid for r in records))
  val_vids = set(vids[every - 1::every])
  if not val_vids or len(val_vids) == len(vids):
    raise ValueError(f"{videos} gives {len(vids)} training videos: too few to move one in"
                     f" {setting}={every} to the val split and keep the rest (expected"
                     f" at least {max(every, 2)})")
  train = [r for r in records if r.vid not in val_vids]
  val = [r for r in records if r.vid in val_vids]
  report.read -= len(val)
  report.kept -= len(val)
  val_report = ReadReport(source=f"{report.source} (every {every}th video)", read=len(val),
                          kept=len(val))
  out = dict(splits)
  out["train"], out["val"] = (train, report), (val, val_report)
  return out


def prepare(dataset, annotations, features, output_dir, val_every=0, **kwargs):
  """Reads `dataset`'s annotations at `annotations` (cimha_tf.data.annotations) and
  prepares them; val_every > 0 first carves a "val" split (carve_val); kwargs as for
  prepare_splits."""
  from cimha_tf.data.annotations import read_dataset
  splits = read_dataset(dataset, annotations)
  if val_every:
    splits = carve_val(splits, val_every)
  return prepare_splits(splits, features, output_dir, dataset=dataset, **kwargs)


def _counts(counter):
  total = sum(counter.values())
  return f"{total} ({', '.join(f'{k} {v}' for k, v in sorted(counter.items()))})" if total else "0"


def format_accounting(meta):
  """Human-readable per-split accounting for the console."""
  lines = [f"{meta['dataset']}: feature_dim {meta['feature_dim']}, vocab {meta['vocab_size']} "
           f"(from {meta['vocab_split']}), features {meta['feature_dtype']}, "
           f"embeddings {meta['embeddings']}"]
  for name, s in meta["splits"].items():
    lines.append(f"  {name}: read {s['read']}, kept {s['kept']} in {s['videos']} videos "
                 f"({len(s['records'])} shards), dropped {_counts(s['dropped'])}, repaired "
                 f"{_counts(s['repaired'])}, duplicates kept {s.get('duplicates_kept', 0)}, "
                 f"truncated to {meta['max_query_len']} tokens {s.get('queries_truncated', 0)}, "
                 f"videos skipped {_counts(s['videos_skipped'])} of "
                 f"{s['videos_read']}, videos pooled {s['videos_pooled']}")
  g = meta.get("glove")
  if isinstance(g, dict):
    lines.append("  glove: " + ", ".join(f"{k} {g[k]}" for k in ("found", "missing", "case_fallback",
                                                                   "bad_lines", "duplicates") if k in g))
  return "\n".join(lines)

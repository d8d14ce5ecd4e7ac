"""tf.data pipeline over a tiny prepared folder, checked against the source arrays."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from cimha_tf.data import labels, pipeline, pooling, prepare, text
from cimha_tf.data.records import QueryRecord, ReadReport

N, L, D = 8, 5, 4
WORDS = ["a", "person", "opens", "the", "door", "walks", "sits", "down", "on", "chair"]


def make_split(root, name, num_videos, seed, first_qid=0):
  """Writes VIDEO.npy files under root/feats and returns (records, report); lengths 3..20
  (some pooled), 1..3 queries per video, one query with two windows."""
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(root, "feats"), exist_ok=True)
  records, qid = [], first_qid
  for v in range(num_videos):
    vid = f"{name}_v{v}"
    np.save(os.path.join(root, "feats", vid + ".npy"),
            rng.normal(size=(int(rng.integers(3, 21)), D)).astype(np.float32))
    duration = float(rng.uniform(10, 40))
    for _ in range(int(rng.integers(1, 4))):
      words = rng.choice(WORDS, size=int(rng.integers(1, 8)))
      s, e = sorted(rng.uniform(0, duration, 2))
      windows = [(s, e)]
      if qid == first_qid + 1:
        windows.append((0.0, duration / 4))
      records.append(QueryRecord(qid, vid, duration, " ".join(words), windows))
      qid += 1
  report = ReadReport(source=name, read=len(records), kept=len(records))
  return records, report


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("pipe"))
  splits = {"train": make_split(root, "train", 7, 0), "test": make_split(root, "test", 3, 1, 100)}
  out = os.path.join(root, "out")
  prepare.prepare_splits(splits, os.path.join(root, "feats"), out, max_video_len=N,
                         max_query_len=L, videos_per_shard=2, progress=False)
  return root, out, splits


def expected(root, out, records, n_max=N):
  """Independent per-query expectation from the source files."""
  vocab = text.Vocabulary.load(os.path.join(out, "vocab.json"))
  rows = {}
  for r in records:
    x = pooling.pool_to_max_len(np.load(os.path.join(root, "feats", r.vid + ".npy")), n_max)
    n = len(x)
    lab = labels.query_labels(r.windows, r.duration, n, n_max)
    rows[r.qid] = dict(video_features=np.pad(x, [(0, n_max - n), (0, 0)]),
                       video_mask=(np.arange(n_max) < n).astype(np.float32),
                       query_tokens=vocab.encode(r.query, L), start=lab.start_step,
                       end=lab.end_step, inside=lab.inside, num_steps=n, vid=r.vid,
                       duration=np.float32(r.duration))
  return rows


def flat(ds):
  parts = [(x, y) for x, y in ds.as_numpy_iterator()]
  xs = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
  ys = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
  return parts, xs, ys


def test_eval_matches_source_every_query_once(prepared):
  root, out, splits = prepared
  for split, (records, _) in splits.items():
    parts, x, m = flat(pipeline.eval_dataset(out, split, batch_size=4))
    sizes = [len(p[1]["qid"]) for p in parts]
    assert sizes[:-1] == [4] * (len(sizes) - 1) and sum(sizes) == len(records)
    assert sorted(m["qid"].tolist()) == sorted(r.qid for r in records)
    assert m["qid"].dtype == np.int64 and m["duration"].dtype == np.float32
    assert m["num_steps"].dtype == np.int32 and x["query_tokens"].dtype == np.int32
    exp = expected(root, out, records)
    for i, qid in enumerate(m["qid"]):
      e = exp[qid]
      np.testing.assert_allclose(x["video_features"][i], e["video_features"], rtol=1e-6)
      np.testing.assert_array_equal(x["video_mask"][i], e["video_mask"])
      np.testing.assert_array_equal(x["query_tokens"][i], e["query_tokens"])
      assert m["vid"][i].decode() == e["vid"] and m["num_steps"][i] == e["num_steps"]
      assert m["duration"][i] == e["duration"]
  # fixed order: a second pass over the last split gives the same qids
  np.testing.assert_array_equal(flat(pipeline.eval_dataset(out, split, batch_size=4))[2]["qid"], m["qid"])


def _row_key(x, y, i):
  return (x["query_tokens"][i].tobytes(), x["video_features"][i].tobytes(),
          int(y["start_probs"][i]), int(y["end_probs"][i]))


@pytest.mark.parametrize("cache_bytes", [pipeline.DEFAULT_CACHE_BYTES, 0])
def test_train_rows_are_the_source_rows(prepared, cache_bytes):
  root, out, splits = prepared
  records = splits["train"][0]
  exp = expected(root, out, records)
  want = {}
  for e in exp.values():
    key = (e["query_tokens"].tobytes(), e["video_features"].astype(np.float32).tobytes(), e["start"], e["end"])
    want.setdefault(key, []).append(e)
  ds = pipeline.train_dataset(out, "train", batch_size=3, seed=1, cache_bytes=cache_bytes)
  parts, x, y = flat(ds)
  assert x["video_features"].shape == (len(records), N, D)
  assert x["query_tokens"].shape == (len(records), L) and y["inside_probs"].shape == (len(records), N)
  assert y["start_probs"].dtype == np.int32 and y["inside_probs"].dtype == np.float32
  for i in range(len(records)):
    matches = want[_row_key(x, y, i)]
    e = matches.pop()
    np.testing.assert_array_equal(x["video_mask"][i], e["video_mask"])
    np.testing.assert_array_equal(y["inside_probs"][i], e["inside"])
    # padded steps: zero features, -1 inside labels
    n = e["num_steps"]
    assert not x["video_features"][i, n:].any() and (y["inside_probs"][i, n:] == -1).all()
  assert all(not v for v in want.values())  # every query exactly once


@pytest.mark.parametrize("cache_bytes", [pipeline.DEFAULT_CACHE_BYTES, 0])
def test_length_buckets_cut_the_time_axis_and_keep_every_row(prepared, tmp_path, cache_bytes):
  root, _, splits = prepared
  records = splits["train"][0]
  n_max, bw = 24, 4  # no pooling: the fixture's 3..20 steps span several bands
  out = str(tmp_path / "out24")
  prepare.prepare_splits({"train": splits["train"]}, os.path.join(root, "feats"), out,
                         max_video_len=n_max, max_query_len=L, videos_per_shard=2, progress=False)
  exp = list(expected(root, out, records, n_max).values())
  ds = pipeline.train_dataset(out, "train", batch_size=2, seed=1, bucket_width=bw,
                              cache_bytes=cache_bytes)
  assert ds.element_spec[0]["video_features"].shape.as_list() == [None, None, D]
  widths, rows = set(), 0
  for x, y in ds.as_numpy_iterator():
    lengths = x["video_mask"].sum(1).astype(int)
    w = x["video_features"].shape[1]
    widths.add(w)
    # one band per batch; the axis is the longest video rounded up to bw, at most n_max
    assert len(set((lengths - 1) // bw)) == 1
    assert w == min(n_max, -(-lengths.max() // bw) * bw)
    assert x["video_mask"].shape[1] == y["inside_probs"].shape[1] == w
    for i in range(len(lengths)):
      match = [e for e in exp if e["query_tokens"].tobytes() == x["query_tokens"][i].tobytes()
               and (e["start"], e["end"], e["num_steps"]) == (y["start_probs"][i], y["end_probs"][i], lengths[i])
               and np.array_equal(e["video_features"][:w], x["video_features"][i])]
      assert match, "a batch row matches no source row"
      e = match[0]
      exp = [r for r in exp if r is not e]
      assert not e["video_mask"][w:].any()  # the cut removed padding only
      np.testing.assert_array_equal(x["video_mask"][i], e["video_mask"][:w])
      np.testing.assert_array_equal(y["inside_probs"][i], e["inside"][:w])
      rows += 1
  assert rows == len(records) and not exp  # every query exactly once
  assert len(widths) > 2


def test_multi_worker_input_keeps_length_buckets_and_a_fixed_order(prepared, capsys):
  # DATA sharding splits each global batch (one band): buckets stay on (they were off, with a
  # warning, under FILE sharding), and the order is fixed so that every worker's stream agrees.
  # The trainer tells the pipeline the number of workers (training.strategy.num_workers()).
  _, out, _ = prepared
  ds = pipeline.train_dataset(out, "train", batch_size=2, seed=1, bucket_width=4, num_workers=2)
  assert ds.element_spec[0]["video_features"].shape.as_list() == [None, None, D]  # cut per batch
  assert ds.options().deterministic and "off under multi-worker" not in capsys.readouterr().out


def test_cut_time_axis_and_valid_length_against_numpy():
  rng = np.random.default_rng(0)
  mask = np.zeros((3, 10), np.float32)
  for i, n in enumerate([2, 5, 0]):
    mask[i, :n] = 1
  mask[2, 3] = 1  # not a prefix: length is 1 + the last valid index
  np.testing.assert_array_equal(pipeline.valid_length(tf.constant(mask)).numpy(), [2, 5, 4])
  x = {"video_features": rng.normal(size=(3, 10, 2)).astype(np.float32), "video_mask": mask,
       "query_tokens": np.ones((3, 4), np.int32)}
  y = {"start_probs": np.zeros(3, np.int32), "inside_probs": rng.normal(size=(3, 10)).astype(np.float32)}
  for multiple, w in [(1, 5), (4, 8), (3, 6), (16, 10)]:
    cx, cy = pipeline.cut_time_axis(x, y, multiple)
    np.testing.assert_array_equal(np.asarray(cx["video_features"]), x["video_features"][:, :w])
    np.testing.assert_array_equal(np.asarray(cx["video_mask"]), mask[:, :w])
    np.testing.assert_array_equal(np.asarray(cy["inside_probs"]), y["inside_probs"][:, :w])
    np.testing.assert_array_equal(cx["query_tokens"], x["query_tokens"])
  with pytest.raises(ValueError, match="bucket_width must be >= 0"):
    pipeline.batch_by_length(tf.data.Dataset.range(3), 2, -1, lambda v: v)


def test_batch_by_length_flushes_partial_bands():
  ds = tf.data.Dataset.from_tensor_slices(np.array([1, 9, 2, 10, 3, 11, 12, 4, 5], np.int64))
  got = [b.tolist() for b in pipeline.batch_by_length(ds, 3, 8, lambda v: v).as_numpy_iterator()]
  assert sorted(sum(got, [])) == list(range(1, 6)) + list(range(9, 13))
  assert all(len({(v - 1) // 8 for v in b}) == 1 for b in got)
  assert [1, 2, 3] in got and [9, 10, 11] in got and [4, 5] in got and [12] in got
  dropped = pipeline.batch_by_length(ds, 3, 8, lambda v: v, drop_remainder=True)
  assert sorted(b.tolist() for b in dropped.as_numpy_iterator()) == [[1, 2, 3], [9, 10, 11]]


def _order(ds):
  return [b[0]["query_tokens"].tobytes() + b[1]["start_probs"].tobytes() for b in ds.as_numpy_iterator()]


def test_deterministic_and_shuffled(prepared):
  _, out, _ = prepared
  a = _order(pipeline.train_dataset(out, "train", 2, seed=5, deterministic=True))
  b = _order(pipeline.train_dataset(out, "train", 2, seed=5, deterministic=True))
  assert a == b
  c = _order(pipeline.train_dataset(out, "train", 2, deterministic=True, cache_bytes=0))
  assert c == _order(pipeline.train_dataset(out, "train", 2, deterministic=True, cache_bytes=0))
  # no shuffle: file order, the same rows as eval
  ordered = pipeline.train_dataset(out, "train", 2, shuffle=False, deterministic=True)
  ev = pipeline.eval_dataset(out, "train", 2)
  got = np.concatenate([y["start_probs"] for _, y in ordered.as_numpy_iterator()])
  toks = np.concatenate([x["query_tokens"] for x, _ in ordered.as_numpy_iterator()])
  np.testing.assert_array_equal(toks, np.concatenate([x["query_tokens"] for x, _ in ev.as_numpy_iterator()]))
  assert a != _order(ordered) or len(got) < 3  # a seeded shuffle does move rows


def test_repeat_and_drop_remainder(prepared):
  _, out, splits = prepared
  q = len(splits["train"][0])
  ds = pipeline.train_dataset(out, "train", 4, repeat=True, drop_remainder=True, seed=0)
  batches = list(ds.take(5).as_numpy_iterator())
  assert len(batches) == 5 and all(len(b[1]["start_probs"]) == 4 for b in batches)
  assert ds.element_spec[0]["video_features"].shape.as_list() == [4, N, D]
  assert pipeline.batches_per_pass(out, "train", 4) == -(-q // 4)
  assert pipeline.batches_per_pass(out, "train", 4, drop_remainder=True) == q // 4


@pytest.mark.parametrize("bucket_width", [0, 3])
def test_each_pass_of_a_repeated_dataset_is_every_query_once(monkeypatch, tmp_path, bucket_width):
  """What fit sees with repeat=True and steps_per_epoch = batches_per_pass: every pass holds
  each query exactly once, and no batch holds a query twice (with the repeat before the
  batching, a band's leftovers met the next pass's queries)."""
  import collections
  import shutil
  from tests import helpers
  out = helpers.write_tiny_prepared(str(tmp_path), num_videos=(10, 1, 1), steps=(2, 16))
  lengths = {}  # independent of the pipeline: the source files and the annotations
  for line in open(os.path.join(out, "annotations", "train.jsonl")):
    r = json.loads(line)
    lengths[r["qid"]] = min(16, len(np.load(tmp_path / "features" / f"{r['vid']}.npy")))
  bands = collections.Counter((n - 1) // bucket_width if bucket_width else 0 for n in lengths.values())
  assert any(c % 6 for c in bands.values())  # partial batches, or the test proves nothing
  per = pipeline.batches_per_pass(out, "train", 6, bucket_width)
  assert per == sum(-(-c // 6) for c in bands.values())
  old = tmp_path / "old"  # a folder prepared before metadata.json counted queries by length
  shutil.copytree(out, old)
  meta = json.load(open(old / "metadata.json"))
  del meta["splits"]["train"]["queries_by_num_steps"]
  json.dump(meta, open(old / "metadata.json", "w"))
  assert pipeline.batches_per_pass(str(old), "train", 6, bucket_width) == per
  to_train = pipeline._to_train
  monkeypatch.setattr(pipeline, "_to_train", lambda v, q: (  # qid along, to count
      lambda xy: (xy[0], {**xy[1], "qid": q["qid"]}))(to_train(v, q)))
  ds = pipeline.train_dataset(out, "train", 6, seed=0, deterministic=True, repeat=True,
                              bucket_width=bucket_width)
  batches = [y["qid"].tolist() for _, y in ds.take(3 * per).as_numpy_iterator()]
  for p in range(3):
    one_pass = batches[p * per:(p + 1) * per]
    assert sorted(q for b in one_pass for q in b) == sorted(lengths)
    assert all(len(set(b)) == len(b) for b in one_pass)
  assert batches[:per] != batches[per:2 * per]  # reshuffled each pass


def test_float16_storage_round_trip(prepared, tmp_path):
  root, _, splits = prepared
  out = str(tmp_path / "f16")
  meta = prepare.prepare_splits({"train": splits["train"]}, os.path.join(root, "feats"), out,
                                max_video_len=N, max_query_len=L, float16=True, progress=False)
  assert meta["feature_dtype"] == "float16"
  x, m = flat(pipeline.eval_dataset(out, "train", 8))[1:]
  exp = expected(root, out, splits["train"][0])
  for i, qid in enumerate(m["qid"]):
    want = exp[qid]["video_features"].astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(x["video_features"][i], want)
    assert x["video_features"].dtype == np.float32


def test_read_metadata_errors(prepared, tmp_path):
  _, out, _ = prepared
  with pytest.raises(FileNotFoundError, match="prepare_data"):
    pipeline.read_metadata(str(tmp_path / "none"))
  with pytest.raises(FileNotFoundError, match="metadata.json not found"):
    pipeline.read_metadata(str(tmp_path))
  (tmp_path / "metadata.json").write_text("{bad")
  with pytest.raises(ValueError, match="not valid JSON"):
    pipeline.read_metadata(str(tmp_path))
  (tmp_path / "metadata.json").write_text(json.dumps({"feature_dim": 3}))
  with pytest.raises(ValueError, match="missing fields"):
    pipeline.read_metadata(str(tmp_path))
  with pytest.raises(KeyError, match=r"'val'.*available: \['test', 'train'\]"):
    pipeline.train_dataset(out, "val", 2)
  with pytest.raises(ValueError, match="batch_size"):
    pipeline.eval_dataset(out, "test", 0)


def test_missing_shard(prepared, tmp_path):
  _, out, _ = prepared
  copy = tmp_path / "copy"
  copy.mkdir()
  meta = pipeline.read_metadata(out)
  (copy / "metadata.json").write_text(json.dumps(meta))
  with pytest.raises(FileNotFoundError, match="shard"):
    pipeline.eval_dataset(str(copy), "test", 2)


def test_verify_split(prepared, tmp_path):
  import shutil
  _, out, splits = prepared
  assert pipeline.verify_split(out, "train") == {
      "videos": 7, "queries": len(splits["train"][0])}
  copy = str(tmp_path / "copy")
  shutil.copytree(out, copy)
  meta = pipeline.read_metadata(copy)
  shard = os.path.join(copy, meta["splits"]["train"]["records"][1])
  # One byte flipped inside a record: the size is right, the record's checksum is not.
  data = bytearray(open(shard, "rb").read())
  data[len(data) // 2] ^= 0xFF
  open(shard, "wb").write(bytes(data))
  with pytest.raises(ValueError, match=f"{os.path.basename(shard)}: unreadable TFRecord"):
    pipeline.verify_split(copy, "train")
  # What training and evaluation see: tf.data's DataLossError, which names no file, turned
  # into the error that does; one not caused by a shard propagates untouched.
  with pytest.raises(tf.errors.DataLossError) as raw:
    for _ in pipeline.train_dataset(copy, "train", batch_size=2, shuffle=False):
      pass
  assert os.path.basename(shard) not in str(raw.value)
  with pytest.raises(ValueError, match=f"{os.path.basename(shard)}: unreadable TFRecord"):
    with pipeline.naming_damaged_shards(copy, ["test", "train", "test"]):
      for _ in pipeline.train_dataset(copy, "train", batch_size=2, shuffle=False):
        pass
  with pytest.raises(tf.errors.DataLossError, match="not from a shard"):
    with pipeline.naming_damaged_shards(out, ["train"]):
      raise tf.errors.DataLossError(None, None, "not from a shard")
  meta["feature_dim"] = D + 1
  with open(os.path.join(copy, "metadata.json"), "w") as f:
    json.dump(meta, f)
  with pytest.raises(ValueError, match=r"test-00000-of-00002.tfrecord record 0, video 'test_v0': feature_dim 4"):
    pipeline.verify_split(copy, "test")
  meta["feature_dim"], meta["splits"]["test"]["queries"] = D, 999
  with open(os.path.join(copy, "metadata.json"), "w") as f:
    json.dump(meta, f)
  with pytest.raises(ValueError, match="metadata.json says 3 / 999"):
    pipeline.verify_split(copy, "test")


def test_check_video_rejects_inconsistent_records():
  from cimha_tf.data import tfrecords
  entry = tfrecords.QueryEntry(1, 10.0, [3, 4], 0, 1, np.array([[0, 1]]))
  good = tfrecords.encode_video("v", np.ones((3, D), np.float32), [entry])
  assert tfrecords.check_video(good, D, N, L, "float32", "x") == 1
  with pytest.raises(ValueError, match="feature bytes"):
    tfrecords.check_video(good, D, N, L, "float16", "x")
  with pytest.raises(ValueError, match="num_steps 3, expected 1..2"):
    tfrecords.check_video(good, D, 2, L, "float32", "x")
  with pytest.raises(ValueError, match="token lengths"):
    tfrecords.check_video(good, D, N, 1, "float32", "x")
  bad = tfrecords.encode_video("v", np.ones((3, D), np.float32),
                               [tfrecords.QueryEntry(1, 10.0, [3], 2, 5, np.array([[2, 5]]))])
  with pytest.raises(ValueError, match="outside"):
    tfrecords.check_video(bad, D, N, L, "float32", "x")
  with pytest.raises(ValueError, match="not a tf.train.Example"):
    tfrecords.check_video(b"\xff\x00garbage", D, N, L, "float32", "x")


@pytest.mark.parametrize("videos_per_shard,cache_bytes", [
    (2, 0), (2, pipeline.DEFAULT_CACHE_BYTES), (100, 0)])
def test_auto_sharding_splits_queries_across_workers(prepared, tmp_path, cache_bytes,
                                                     videos_per_shard):
  """2 workers, as tf.distribute shards input (by DATA, on any number of shards): the
  workers' queries are disjoint and together every query once, since train_dataset gives
  every worker the same stream, even when asked for a non-deterministic one."""
  input_ops = pytest.importorskip("tensorflow.python.distribute.input_ops")
  root, _, splits = prepared
  out = str(tmp_path / "out")
  meta = prepare.prepare_splits({"train": splits["train"]}, os.path.join(root, "feats"), out,
                                max_video_len=N, max_query_len=L, progress=False,
                                videos_per_shard=videos_per_shard)
  assert len(meta["splits"]["train"]["records"]) == (4 if videos_per_shard == 2 else 1)
  policy = tf.data.experimental.AutoShardPolicy
  seen = []
  for w in range(2):  # a fresh dataset per worker: in one process they would share the cache
    ds = pipeline.train_dataset(out, "train", 3, seed=0, cache_bytes=cache_bytes,
                                deterministic=False, num_workers=2)
    assert ds.options().experimental_distribute.auto_shard_policy == policy.DATA
    part = input_ops.auto_shard_dataset(ds, 2, w, 2)
    seen += [x["video_features"][i].tobytes() + x["query_tokens"][i].tobytes()
             for x, _ in part.as_numpy_iterator() for i in range(len(x["query_tokens"]))]
  _, x, m = flat(pipeline.eval_dataset(out, "train", 8))
  want = [x["video_features"][i].tobytes() + x["query_tokens"][i].tobytes() for i in range(len(m["qid"]))]
  assert sorted(seen) == sorted(want)


# Stateful ops that tf.data's determinism rewrite (grappler's make_deterministic) lets run
# in parallel; If/While/calls are looked into rather than counted.
_PARALLEL_SAFE_STATEFUL = {"TFRecordDataset", "TensorSliceDataset", "RangeDataset",
                           "FixedLengthRecordDataset", "TextLineDataset",
                           "If", "While", "StatefulPartitionedCall"}


def _stateful_ops_in_functions(ds):
  from tensorflow.python.framework import op_def_registry
  graph = tf.compat.v1.GraphDef.FromString(ds._as_serialized_graph().numpy())
  ops = {n.op for f in graph.library.function for n in f.node_def}
  return {op for op in ops if op_def_registry.get(op).is_stateful} - _PARALLEL_SAFE_STATEFUL


@pytest.mark.parametrize("cache_bytes,bucket_width", [(0, 0), (pipeline.DEFAULT_CACHE_BYTES, 4)])
def test_pipelines_stay_parallel_under_op_determinism(prepared, cache_bytes, bucket_width):
  # Any other stateful op in a dataset function (an Assert, Dataset.from_tensors' TensorDataset)
  # makes tf.data turn every parallel map and batch, and the prefetch, sequential once
  # train.deterministic enables op determinism (a NodeDef error line says so).
  _, out, _ = prepared
  train = pipeline.train_dataset(out, "train", 2, seed=0, deterministic=True,
                                 cache_bytes=cache_bytes, bucket_width=bucket_width)
  assert _stateful_ops_in_functions(train) == set()
  assert _stateful_ops_in_functions(pipeline.eval_dataset(out, "test", 2, bucket_width)) == set()


def test_parse_video_rejects_token_lengths_that_do_not_fit_the_ids():
  from cimha_tf.data import tfrecords
  entries = [tfrecords.QueryEntry(1, 10.0, [3, 4, 5], 0, 1, np.array([[0, 1]])),
             tfrecords.QueryEntry(2, 10.0, [6], 1, 2, np.array([[1, 2]]))]
  good = tfrecords.encode_video("v", np.ones((3, D), np.float32), entries)
  parse = lambda s: tfrecords.parse_video(s, D, N, L)  # noqa: E731
  np.testing.assert_array_equal(parse(good)["query_tokens"].numpy(),
                                [[3, 4, 5, 0, 0], [6, 0, 0, 0, 0]])
  for lengths in ([3, 2], [2, 1], [5, -1]):  # too many, too few, a negative one summing right
    ex = tf.train.Example.FromString(good)
    ex.features.feature["token_lengths"].int64_list.value[:] = lengths
    with pytest.raises(tf.errors.InvalidArgumentError):
      parse(ex.SerializeToString())

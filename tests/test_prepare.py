"""prepare: accounting, skipped videos, vocabulary from train only, files, and the binary."""

import collections
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from cimha_tf.data import features as fl
from cimha_tf.data import pipeline, prepare, synthetic, text
from cimha_tf.data.records import QueryRecord, ReadReport

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup(root):
  """train: good videos g0,g1 (g1 long: pooled), a missing video, a wrong-dim video, a NaN
  video, a query with no token; the reader dropped 2 and repaired 1. test: one video."""
  feats = os.path.join(root, "feats")
  os.makedirs(feats)
  rng = np.random.default_rng(0)
  np.save(os.path.join(feats, "g0.npy"), rng.normal(size=(6, 3)).astype(np.float32))
  np.save(os.path.join(feats, "g1.npy"), rng.normal(size=(20, 3)).astype(np.float32))
  np.save(os.path.join(feats, "wide.npy"), np.ones((5, 4), np.float32))
  np.save(os.path.join(feats, "nan.npy"), np.full((5, 3), np.nan, np.float32))
  np.save(os.path.join(feats, "t0.npy"), rng.normal(size=(4, 3)).astype(np.float32))
  q = lambda i, vid, s: QueryRecord(i, vid, 10.0, s, [(1.0, 4.0)])  # noqa: E731
  train = [q(0, "g0", "a person opens the door"), q(1, "g1", "Person sits down."),
           q(2, "gone", "someone walks"), q(3, "g0", "the person laughs"),
           q(4, "wide", "a person eats"), q(5, "wide", "a person drinks"),
           q(6, "nan", "person runs"), q(7, "g1", "\u2022\u2022"), q(8, "gone", "x")]
  report = ReadReport("train.txt", read=11, kept=9, repaired=collections.Counter(end_clipped=1),
                      dropped=collections.Counter(empty_query=2))
  test = [QueryRecord(100, "t0", 8.0, "a zebra opens the door", [(0.0, 8.0)])]
  return feats, {"train": (train, report), "test": (test, ReadReport("test.txt", read=1, kept=1))}


def test_accounting_with_skipped_videos(tmp_path, capsys):
  feats, splits = _setup(str(tmp_path))
  out = str(tmp_path / "out")
  meta = prepare.prepare_splits(splits, feats, out, dataset="toy", max_video_len=8,
                                max_query_len=4, skip_bad_videos=True, videos_per_shard=1,
                                progress=False)
  tr = meta["splits"]["train"]
  assert tr["read"] == 11 and tr["kept"] == tr["queries"] == 3
  assert tr["dropped"] == {"empty_query": 2, "missing_video": 2, "wrong_dim": 2,
                           "non_finite": 1, "no_tokens": 1}
  assert tr["read"] == tr["kept"] + sum(tr["dropped"].values())
  assert tr["repaired"] == {"end_clipped": 1}
  assert tr["videos"] == 2 and tr["videos_read"] == 5 and tr["videos_pooled"] == 1
  assert tr["videos_skipped"] == {"missing_video": 1, "wrong_dim": 1, "non_finite": 1}
  assert tr["records"] == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  assert meta["splits"]["test"]["records"] == ["test-00000-of-00001.tfrecord"]
  for k, v in {"dataset": "toy", "feature_dim": 3, "max_video_len": 8, "max_query_len": 4,
               "feature_dtype": "float32", "embeddings": None, "vocab_split": "train"}.items():
    assert meta[k] == v
  assert pipeline.read_metadata(out) == meta
  assert sorted(f for f in os.listdir(out) if f.endswith(".tfrecord")) == sorted(
      tr["records"] + meta["splits"]["test"]["records"])
  assert not [f for f in os.listdir(out) if f.endswith(".tmp")]

  # vocabulary: training split only, kept and skipped queries alike ("zebra" is test-only)
  vocab = text.Vocabulary.load(os.path.join(out, "vocab.json"))
  assert meta["vocab_size"] == len(vocab) and vocab.tokens[:2] == ["<pad>", "<unk>"]
  assert "opens" in vocab and "eats" in vocab and "zebra" not in vocab
  # annotations/SPLIT.jsonl: the kept records, in order
  with open(os.path.join(out, "annotations", "train.jsonl")) as f:
    lines = [json.loads(line) for line in f]
  assert [r["qid"] for r in lines] == [0, 3, 1]
  assert lines[0] == splits["train"][0][0].to_json()
  # the test query's unknown word is UNK in the records
  batch = next(iter(pipeline.eval_dataset(out, "test", 4).as_numpy_iterator()))
  np.testing.assert_array_equal(batch[0]["query_tokens"][0], vocab.encode("a zebra opens the door", 4))
  assert batch[0]["query_tokens"][0][1] == text.UNK_ID

  summary = prepare.format_accounting(meta)
  assert "read 11, kept 3" in summary and "missing_video" in summary


def test_bad_video_is_an_error_by_default(tmp_path):
  feats, splits = _setup(str(tmp_path))
  with pytest.raises(fl.FeatureError, match=r"'gone'.*--skip_bad_videos") as e:
    prepare.prepare_splits(splits, feats, str(tmp_path / "out"), progress=False)
  assert e.value.reason == "missing_video"


def test_a_training_split_with_nothing_to_train_on_is_an_error(tmp_path):
  """Empty as read (an empty annotation file), or empty once every video is skipped: no
  vocabulary or training set can come from it, so preparation fails, not training later."""
  feats, splits = _setup(str(tmp_path))
  with pytest.raises(ValueError, match=r"training split 'train' \(empty.txt\) has no usable "
                                       r"query: read 2, dropped \{'empty_query': 2\}"):
    prepare.prepare_splits(
        {"train": ([], ReadReport("empty.txt", read=2, dropped=collections.Counter(empty_query=2))),
         "test": splits["test"]}, feats, str(tmp_path / "o1"), progress=False)
  bad = [r for r in splits["train"][0] if r.vid in ("gone", "nan")]
  with pytest.raises(ValueError, match=r"training split 'train': no query kept of 3 \(dropped: "
                                       r"\{'missing_video': 2, 'non_finite': 1\}\); nothing to train on"):
    prepare.prepare_splits({"train": (bad, ReadReport("t.txt", read=3, kept=3)),
                            "test": splits["test"]}, feats, str(tmp_path / "o2"),
                           skip_bad_videos=True, progress=False)
  assert not os.path.exists(os.path.join(tmp_path, "o2", pipeline.METADATA))


def test_rerun_removes_stale_shards(tmp_path):
  feats, splits = _setup(str(tmp_path))
  out = str(tmp_path / "out")
  kw = dict(skip_bad_videos=True, progress=False, max_video_len=8)
  prepare.prepare_splits(splits, feats, out, videos_per_shard=1, **kw)
  meta = prepare.prepare_splits(splits, feats, out, videos_per_shard=10, **kw)
  assert meta["splits"]["train"]["records"] == ["train-00000-of-00001.tfrecord"]
  assert sorted(f for f in os.listdir(out) if f.startswith("train-")) == ["train-00000-of-00001.tfrecord"]


def test_bad_arguments(tmp_path):
  feats, splits = _setup(str(tmp_path))
  with pytest.raises(ValueError, match="no training split among"):
    prepare.prepare_splits({"test": splits["test"]}, feats, str(tmp_path / "o"), progress=False)
  assert prepare.training_split(["val", "my_train", "train"]) == "train"
  assert prepare.training_split(["val", "my_train"]) == "my_train"
  with pytest.raises(ValueError, match="max_video_len"):
    prepare.prepare_splits(splits, feats, str(tmp_path / "o"), max_video_len=0)
  dup = [QueryRecord(1, "g0", 5.0, "a", [(0, 1)])] * 2
  with pytest.raises(ValueError, match="qid 1 appears twice"):
    prepare.prepare_splits({"train": (dup, ReadReport("x", read=2, kept=2))}, feats,
                           str(tmp_path / "o"), progress=False)
  with pytest.raises(AssertionError, match="read 5"):
    prepare.prepare_splits({"train": (dup[:1], ReadReport("x", read=5, kept=1))}, feats,
                           str(tmp_path / "o"), progress=False)


def test_binary_end_to_end_on_synthetic(tmp_path):
  paths = synthetic.write_synthetic_dataset(str(tmp_path / "syn"), num_train_videos=4,
                                            num_test_videos=2, queries_per_video=4,
                                            feature_dim=16, glove_dim=300, seed=0, progress=False)
  out = str(tmp_path / "prep")
  cmd = [sys.executable, "-m", "cimha_tf.prepare_data", "--dataset=charades_sta",
         f"--annotations={paths['annotations']}", f"--features={paths['features']}",
         f"--output_dir={out}", "--max_video_len=32", "--float16", f"--glove={paths['glove']}"]
  res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stderr[-3000:]
  assert "train: read 16, kept 16" in res.stdout
  meta = pipeline.read_metadata(out)
  assert meta["feature_dim"] == 16 and meta["feature_dtype"] == "float16"
  assert meta["embeddings"] == "embeddings.npy"
  emb = np.load(os.path.join(out, "embeddings.npy"))
  assert emb.shape == (meta["vocab_size"], 300) and emb.dtype == np.float32
  vocab = text.Vocabulary.load(os.path.join(out, "vocab.json"))
  with open(paths["glove"], encoding="utf-8") as f:  # "person" is in the synthetic GloVe
    row = next(line.split(" ") for line in f if line.startswith("person "))
  np.testing.assert_allclose(emb[vocab.ids(["person"])[0]], np.float32(row[1:]), rtol=1e-6)
  for split, n in (("train", 16), ("test", 8)):
    s = meta["splits"][split]
    assert s["read"] == s["kept"] == s["queries"] == n and s["videos"] == n // 4
    assert sum(s["repaired"].values()) >= 1  # each split's first video: an end past the duration
  qids = np.concatenate([m["qid"] for _, m in pipeline.eval_dataset(out, "test", 4).as_numpy_iterator()])
  with open(os.path.join(out, "annotations", "test.jsonl")) as f:
    assert sorted(qids.tolist()) == sorted(json.loads(line)["qid"] for line in f)


def test_real_charades_accounting_with_partial_features(shared_data, tmp_path):
  """The real Charades-STA annotations with features for a few videos only: every query
  read is accounted for, the missing videos' queries as dropped "missing_video"."""
  from cimha_tf.data.annotations import read_dataset
  splits = read_dataset("charades_sta", str(shared_data / "charades_sta"))
  feats = tmp_path / "feats"
  feats.mkdir()
  rng = np.random.default_rng(0)
  have = {}
  for name, (records, _) in splits.items():
    vids = sorted({r.vid for r in records})[:5]
    have[name] = set(vids)
    for vid in vids:
      np.save(feats / f"{vid}.npy", rng.normal(size=(int(rng.integers(50, 300)), 8)).astype(np.float32))
  meta = prepare.prepare_splits(splits, str(feats), str(tmp_path / "out"), dataset="charades_sta",
                                skip_bad_videos=True, progress=False)
  assert meta["splits"]["train"]["read"] == 12408 and meta["splits"]["test"]["read"] == 3720
  for name, (records, report) in splits.items():
    s = meta["splits"][name]
    kept = [r for r in records if r.vid in have[name]]
    assert s["kept"] == len(kept) and s["videos"] == 5
    assert s["dropped"]["missing_video"] == len(records) - len(kept)
    assert s["videos_skipped"] == {"missing_video": len({r.vid for r in records}) - 5}
    assert s["read"] == s["kept"] + sum(s["dropped"].values())
    assert s["repaired"] == dict(report.repaired)
  # the vocabulary covers all training queries, not only the kept ones
  vocab = text.Vocabulary.load(str(tmp_path / "out" / "vocab.json"))
  train_words = {t for r in splits["train"][0] for t in text.tokenize(r.query)}
  assert len(vocab) == len(train_words) + 2


@pytest.mark.parametrize("layout", ["npz_dir", "hdf5"])
def test_same_records_from_every_layout(tmp_path, layout):
  import h5py
  feats, splits = _setup(str(tmp_path))
  kw = dict(skip_bad_videos=True, progress=False, max_video_len=8)
  ref = prepare.prepare_splits(splits, feats, str(tmp_path / "ref"), **kw)
  other = tmp_path / layout
  if layout == "hdf5":
    other = tmp_path / "feats.h5"
    with h5py.File(other, "w") as f:
      for name in os.listdir(feats):
        f.create_group(name[:-4]).create_dataset("c3d_features", data=np.load(os.path.join(feats, name)))
  else:
    other.mkdir()
    for name in os.listdir(feats):
      np.savez(other / (name[:-4] + ".npz"), features=np.load(os.path.join(feats, name)))
  meta = prepare.prepare_splits(splits, str(other), str(tmp_path / "out"), feature_layout=layout, **kw)
  assert meta["feature_layout"] == layout
  assert meta["splits"] == ref["splits"]
  for split, info in meta["splits"].items():
    for shard in info["records"]:
      assert (tmp_path / "out" / shard).read_bytes() == (tmp_path / "ref" / shard).read_bytes()


def test_failed_run_leaves_no_partial_folder(tmp_path):
  """A re-prepare that fails midway leaves the previous complete folder as it was (it used
  to delete it first), and nothing of its own."""
  feats, splits = _setup(str(tmp_path))
  out = str(tmp_path / "out")
  prepare.prepare_splits(splits, feats, out, skip_bad_videos=True, progress=False)
  before = {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)
            if os.path.isfile(os.path.join(out, n))}
  with pytest.raises(fl.FeatureError):  # the same folder, without skipping: fails on 'gone'
    prepare.prepare_splits(splits, feats, out, videos_per_shard=1, progress=False)
  assert {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)
          if os.path.isfile(os.path.join(out, n))} == before
  assert sorted(os.listdir(tmp_path)) == sorted(["out", os.path.basename(feats)])
  pipeline.read_metadata(out)
  # Where no folder was: none is left.
  with pytest.raises(fl.FeatureError):
    prepare.prepare_splits(splits, feats, str(tmp_path / "new"), progress=False)
  assert not os.path.exists(tmp_path / "new")


def test_float16_overflow(tmp_path):
  feats, splits = _setup(str(tmp_path))
  np.save(os.path.join(feats, "g1.npy"), np.full((20, 3), 1e6, np.float32))
  kw = dict(skip_bad_videos=True, progress=False, float16=True)
  meta = prepare.prepare_splits(splits, feats, str(tmp_path / "out"), **kw)
  assert meta["splits"]["train"]["videos_skipped"]["float16_overflow"] == 1
  assert meta["splits"]["train"]["dropped"]["float16_overflow"] == 2  # g1's two queries
  kw["skip_bad_videos"] = False
  with pytest.raises(fl.FeatureError, match="'g1'.*exceed float16's range"):
    prepare.prepare_splits({"train": ([splits["train"][0][1]], ReadReport("x", read=1, kept=1))},
                           feats, str(tmp_path / "out2"), **kw)


def test_unusable_record_names_the_query(tmp_path):
  feats, _ = _setup(str(tmp_path))
  recs = [QueryRecord(7, "g0", 0.0, "a person", [(0.0, 1.0)])]
  with pytest.raises(ValueError, match="qid=7 of video 'g0': duration must be > 0"):
    prepare.prepare_splits({"train": (recs, ReadReport("x", read=1, kept=1))}, feats,
                           str(tmp_path / "out"), progress=False)


def test_binary_bad_feature_path_fails_first_in_one_line(tmp_path):
  """A mistyped --features ends the binary (status 1, one FATAL line naming the path, no
  traceback) before anything is written or GloVe is read."""
  paths = synthetic.write_synthetic_dataset(str(tmp_path / "syn"), num_train_videos=2,
                                            num_test_videos=1, queries_per_video=2,
                                            feature_dim=8, glove_dim=8, seed=0, progress=False)
  out = tmp_path / "prep"
  from tests import helpers
  res = helpers.run_binary("cimha_tf.prepare_data", "--dataset=charades_sta",
                           f"--annotations={paths['annotations']}",
                           f"--features={tmp_path / 'typo'}", f"--output_dir={out}",
                           "--glove=/nonexistent/glove.txt", check=False)
  assert res.returncode == 1, res.stderr[-3000:]
  assert "Traceback" not in res.stderr
  fatal = [line for line in res.stderr.splitlines() if line.startswith("FATAL:")]
  assert len(fatal) == 1 and f"feature path {tmp_path / 'typo'} not found" in fatal[0]
  assert not out.exists()
  # An --output_dir under a file: the standard library's error names the path, one line.
  (tmp_path / "a_file").write_text("x")
  res = helpers.run_binary("cimha_tf.prepare_data", "--dataset=charades_sta",
                           f"--annotations={paths['annotations']}",
                           f"--features={paths['features']}",
                           f"--output_dir={tmp_path / 'a_file' / 'prep'}", check=False)
  assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
  assert (f"FATAL: NotADirectoryError: [Errno 20] Not a directory: '{tmp_path / 'a_file' / 'prep'}'"
          in res.stderr)


def test_val_every_carves_whole_training_videos_into_a_val_split(tmp_path):
  """prepare_data --val_every=N (Charades-STA has no validation split): every Nth training
  video, all its queries with it, becomes 'val'; no video is in both, none is lost."""
  paths = synthetic.write_synthetic_dataset(str(tmp_path / "syn"), num_train_videos=12,
                                            num_test_videos=2, queries_per_video=3,
                                            feature_dim=8, glove_dim=8, seed=1, progress=False)
  out = str(tmp_path / "prep")
  res = subprocess.run([sys.executable, "-m", "cimha_tf.prepare_data", "--dataset=charades_sta",
                        f"--annotations={paths['annotations']}", f"--features={paths['features']}",
                        f"--output_dir={out}", "--val_every=6"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert res.returncode == 0, res.stderr[-3000:]
  splits = pipeline.read_metadata(out)["splits"]
  assert {k: (s["videos"], s["queries"]) for k, s in splits.items()} == {
      "train": (10, 30), "val": (2, 6), "test": (2, 6)}
  with open(os.path.join(paths["annotations"], "charades_sta_train.txt")) as f:
    vids = list(dict.fromkeys(line.split()[0] for line in f))
  def vids_of(split):
    with open(os.path.join(out, "annotations", f"{split}.jsonl")) as f:
      return {json.loads(line)["vid"] for line in f}
  assert vids_of("val") == {vids[5], vids[11]} and not vids_of("val") & vids_of("train")
  with pytest.raises(ValueError, match=r"--val_every=13 to the val split"):
    prepare.prepare("charades_sta", paths["annotations"], paths["features"],
                    str(tmp_path / "p2"), val_every=13, progress=False)

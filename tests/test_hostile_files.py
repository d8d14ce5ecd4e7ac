"""Hostile or odd input files (issue 26, findings 7-12): each a clear error naming the file,
line, key or field, or a counted repair; never a traceback or a silently wrong result."""

import os
import re
import unicodedata

import h5py
import numpy as np
import pytest

from cimha_tf.data import features as fl
from cimha_tf.data import prepare, text
from cimha_tf.data.records import QueryRecord, ReadReport

NFC = unicodedata.normalize("NFC", "café_piñata")
NFD = unicodedata.normalize("NFD", NFC)
RNG = np.random.default_rng(0)


def _h5_with_group_features(path):
  """good: a dataset; nested: a group whose c3d_features is itself a group (not a dataset)."""
  with h5py.File(path, "w") as f:
    f.create_dataset("good", data=RNG.normal(size=(5, 3)).astype(np.float32))
    f.create_group("nested").create_group("c3d_features").create_dataset("x", data=np.ones((4, 3)))
  return str(path)


def _query(qid, vid, sentence="a person opens the door"):
  return QueryRecord(qid, vid, 10.0, sentence, [(1.0, 4.0)])


def _splits(train, test=None):
  test = test or [_query(100, train[0].vid)]
  return {"train": (train, ReadReport("train.jsonl", read=len(train), kept=len(train))),
          "test": (test, ReadReport("test.jsonl", read=len(test), kept=len(test)))}


def test_hdf5_feature_key_that_is_a_group_names_the_file_and_key(tmp_path):
  path = _h5_with_group_features(tmp_path / "feats.h5")
  with pytest.raises(fl.FeatureError, match=r"feats.h5\[nested\]: nested/c3d_features is an HDF5 "
                     r"Group, not a dataset") as e:
    fl.load_feature_file(path, "nested")
  assert e.value.reason == "bad_shape"
  with fl.open_feature_store(path) as store:
    with pytest.raises(fl.FeatureError, match=r"feats.h5\[nested\]: nested/c3d_features"):
      store.get("nested")
    assert store.get("good").shape == (5, 3)


def test_prepare_refuses_a_group_feature_or_skips_and_counts_it(tmp_path):
  path = _h5_with_group_features(tmp_path / "feats.h5")
  splits = _splits([_query(0, "good"), _query(1, "nested"), _query(2, "nested", "a dog barks")])
  with pytest.raises(fl.FeatureError, match=r"feats.h5\[nested\]: nested/c3d_features is an HDF5 Group"):
    prepare.prepare_splits(splits, path, str(tmp_path / "out"), progress=False)
  meta = prepare.prepare_splits(splits, path, str(tmp_path / "out"), skip_bad_videos=True,
                                progress=False)
  train = meta["splits"]["train"]
  assert train["kept"] == 1 and train["dropped"] == {"bad_shape": 2}
  assert train["videos_skipped"] == {"bad_shape": 1}


def test_predict_names_the_file_and_key_of_a_group_feature(tmp_path):
  from tests.helpers import run_module
  path = _h5_with_group_features(tmp_path / "feats.h5")
  proc = run_module("cimha_tf.predict", f"--model={tmp_path / 'none.tflite'}", f"--features={path}",
                    "--feature_key=nested", "--query=a door", "--duration=12", check=False)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert f"{path}[nested]: nested/c3d_features is an HDF5 Group, not a dataset" in proc.stderr


@pytest.mark.parametrize("layout", ["npy_dir", "npz_dir", "hdf5"])
def test_video_id_in_another_normalisation_form_is_found(tmp_path, layout):
  # macOS saves file names as NFD; annotations are typed as NFC (and the other way round).
  a = RNG.normal(size=(6, 3)).astype(np.float32)
  assert NFC != NFD
  if layout == "hdf5":
    path = str(tmp_path / "f.h5")
    with h5py.File(path, "w") as f:
      f.create_dataset(NFD, data=a)
    np.testing.assert_array_equal(fl.load_feature_file(path, NFC), a)
  else:
    path = str(tmp_path / layout)
    os.makedirs(path)
    if layout == "npy_dir":
      np.save(os.path.join(path, NFD + ".npy"), a)
    else:
      np.savez(os.path.join(path, NFD + ".npz"), features=a)
  with fl.open_feature_store(path) as store:
    assert NFC in store and NFD in store and "cafe_pinata" not in store
    np.testing.assert_array_equal(store.get(NFC), a)
    np.testing.assert_array_equal(store.get(NFD), a)
  meta = prepare.prepare_splits(_splits([_query(0, NFC)]), path, str(tmp_path / "out"),
                                progress=False)
  assert meta["splits"]["train"]["kept"] == 1 and meta["splits"]["train"]["videos_skipped"] == {}


def test_two_names_alike_after_normalisation_are_ambiguous(tmp_path):
  folder = tmp_path / "feats"
  folder.mkdir()
  for i, name in enumerate((NFC, NFD)):
    np.save(folder / (name + ".npy"), np.full((2, 3), i, np.float32))
  mixed = NFC[:4] + NFD[5:]  # é composed, ñ decomposed: neither file's exact name
  assert mixed not in (NFC, NFD) and unicodedata.normalize("NFC", mixed) == NFC
  with fl.open_feature_store(str(folder)) as store:
    np.testing.assert_array_equal(store.get(NFD), np.ones((2, 3)))  # exact names still match
    with pytest.raises(ValueError, match=rf"{folder}: .* are both .* after Unicode NFC normalisation"):
      store.get(mixed)


def test_prepare_vocabulary_from_the_tokens_the_model_sees(tmp_path):
  # One 6 MB query once gave a vocabulary of every word in it; the model reads max_query_len.
  folder = tmp_path / "feats"
  folder.mkdir()
  np.save(folder / "v.npy", np.ones((4, 3), np.float32))
  huge = "a man walks " + " ".join(f"w{i}" for i in range(600_000))
  splits = _splits([_query(0, "v", huge), _query(1, "v", "the dog sits")])
  meta = prepare.prepare_splits(splits, str(folder), str(tmp_path / "out"), max_query_len=4,
                                progress=False)
  vocab = text.Vocabulary.load(str(tmp_path / "out" / "vocab.json"))
  assert sorted(vocab.tokens[2:]) == ["a", "dog", "man", "sits", "the", "w0", "walks"]
  assert meta["vocab_size"] == 9 and meta["splits"]["train"]["queries_truncated"] == 1


@pytest.fixture(scope="module")
def small_workdir(tmp_path_factory):
  """A workdir as train leaves it (config, vocabulary, data metadata, best.keras), with a
  small untrained model: enough for export's loader and predict's TFLite vocabulary."""
  import json
  from cimha_tf.experiment import workdir as wd
  from cimha_tf.model import build_model
  from tests.helpers import tiny_model_config
  w = tmp_path_factory.mktemp("workdir")
  c = tiny_model_config()
  tokens = ["<pad>", "<unk>"] + [f"w{i}" for i in range(10)]
  build_model(c, video_dim=5, vocab_size=len(tokens)).save(str(w / wd.BEST))
  (w / wd.CONFIG).write_text(json.dumps({"model": c.to_dict(), "eval": {"top_k": 3}}))
  (w / wd.VOCAB).write_text(json.dumps({"tokens": tokens}))
  (w / wd.DATA_META).write_text(json.dumps({"feature_dim": 5, "vocab_size": len(tokens)}))
  return str(w)


DAMAGES = [b'{"model": {"wid', b"\xff\xfe{}", b"[1, 2]", b'{"model": 3, "tokens": {}, "feature_dim": "5"}']


@pytest.mark.parametrize("name", ["config.json", "vocab.json", "data_meta.json"])
def test_export_loader_names_a_damaged_workdir_file(small_workdir, tmp_path, name):
  # export and the demo load a workdir through deploy.source.load_workdir
  import shutil
  from cimha_tf.deploy.source import load_workdir
  assert load_workdir(small_workdir).model is not None  # the undamaged copy loads
  for damage in DAMAGES:
    w = tmp_path / "w"
    shutil.rmtree(w, ignore_errors=True)
    shutil.copytree(small_workdir, w)
    (w / name).write_bytes(damage)
    with pytest.raises(ValueError, match=re.escape(str(w / name))):
      load_workdir(str(w))


def test_predict_names_a_damaged_vocabulary_beside_the_tflite(tmp_path, monkeypatch):
  from cimha_tf.deploy import tflite
  from cimha_tf.deploy.predictor import load_predictor
  # The flatbuffer loads first; a stand-in keeps this test to the vocabulary file.
  monkeypatch.setattr(tflite, "TFLiteModel", lambda path: None)
  (tmp_path / "m.tflite").write_bytes(b"\0" * 64)
  for damage in DAMAGES:
    (tmp_path / "vocab.json").write_bytes(damage)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "vocab.json"))):
      load_predictor(str(tmp_path / "m.tflite"))


@pytest.mark.parametrize("name", ["metadata.json", "vocab.json"])
def test_prepared_folder_damaged_json_is_named(tmp_path, name):
  from cimha_tf.data import pipeline
  from cimha_tf.training.trainer import write_workdir_files
  from tests.helpers import tiny_config, write_tiny_prepared
  prepared = write_tiny_prepared(str(tmp_path), num_videos=(2, 1, 1))
  meta = pipeline.read_metadata(prepared)
  os.makedirs(tmp_path / "w")
  for damage in DAMAGES:
    with open(os.path.join(prepared, name), "wb") as f:
      f.write(damage)
    with pytest.raises(ValueError, match=re.escape(os.path.join(prepared, name))):
      if name == "metadata.json":
        pipeline.read_metadata(prepared)
      else:
        write_workdir_files(str(tmp_path / "w"), tiny_config(prepared), meta)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["config.json", "vocab.json", "data_meta.json"])
def test_export_binary_names_a_damaged_workdir_file_in_one_line(small_workdir, tmp_path, name):
  import shutil
  from tests.helpers import run_module
  w = tmp_path / "w"
  shutil.copytree(small_workdir, w)
  (w / name).write_bytes(DAMAGES[0])
  proc = run_module("cimha_tf.export", f"--workdir={w}", "--format=tflite",
                    f"--output={tmp_path / 'm.tflite'}", check=False)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert f"FATAL: ValueError: {w / name} is not valid JSON" in proc.stderr
  assert not (tmp_path / "m.tflite").exists()

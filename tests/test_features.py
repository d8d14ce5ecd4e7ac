"""Feature stores: each layout, auto-detection, and every bad input's error."""

import os

import h5py
import numpy as np
import pytest

from cimha_tf.data import features as fl

RNG = np.random.default_rng(0)
VIDEOS = {"v1": RNG.normal(size=(7, 5)).astype(np.float32),
          "v2": RNG.normal(size=(3, 5)).astype(np.float64)}


def _write(layout, root, videos=VIDEOS, group=False):
  if layout == "hdf5":
    path = os.path.join(root, "feats.hdf5")
    with h5py.File(path, "w") as f:
      for vid, a in videos.items():
        if group:
          f.create_group(vid).create_dataset("c3d_features", data=a)
        else:
          f.create_dataset(vid, data=a)
    return path
  folder = os.path.join(root, layout)
  os.makedirs(folder, exist_ok=True)
  for vid, a in videos.items():
    if layout == "npy_dir":
      np.save(os.path.join(folder, vid + ".npy"), a)
    else:
      np.savez(os.path.join(folder, vid + ".npz"), features=a)
  return folder


@pytest.mark.parametrize("layout,group", [("npy_dir", False), ("npz_dir", False),
                                          ("hdf5", False), ("hdf5", True)])
def test_layouts_round_trip_and_detect(tmp_path, layout, group):
  path = _write(layout, str(tmp_path), group=group)
  assert fl.detect_layout(path) == layout
  with fl.open_feature_store(path) as store:
    assert store.layout == layout
    assert store.vids() == ["v1", "v2"] and len(store) == 2
    assert "v1" in store and "nope" not in store
    assert store.feature_dim == 5
    for vid, a in VIDEOS.items():
      got = store.get(vid)
      assert got.dtype == np.float32 and got.shape == a.shape
      np.testing.assert_array_equal(got, a.astype(np.float32))


def test_layout_override(tmp_path):
  path = _write("npz_dir", str(tmp_path))
  np.save(os.path.join(path, "extra.npy"), np.ones((2, 5)))  # npy present but overridden
  with fl.open_feature_store(path, layout="npy_dir") as store:
    assert store.vids() == ["extra"]
  with pytest.raises(ValueError, match="layout 'bogus' unknown"):
    fl.open_feature_store(path, layout="bogus")


def test_missing_paths(tmp_path):
  with pytest.raises(FileNotFoundError, match="nothere"):
    fl.open_feature_store(str(tmp_path / "nothere"))
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match="no .npy or .npz"):
    fl.open_feature_store(str(empty))
  store = fl.open_feature_store(_write("npy_dir", str(tmp_path)))
  with pytest.raises(fl.FeatureError, match=r"'v9' not in the feature store.*v9\.npy") as e:
    store.get("v9")
  assert e.value.reason == "missing_video"


@pytest.mark.parametrize("bad,reason,message", [
    (np.zeros((0, 5), np.float32), "empty", "empty feature array"),
    (np.zeros((4,), np.float32), "bad_shape", r"expected a 2-D \(T, D\).*\(4,\)"),
    (np.zeros((2, 3, 5), np.float32), "bad_shape", "expected a 2-D"),
    (np.ones((4, 6), np.float32), "wrong_dim", "dimension 6, expected 5"),
    (np.array([[1.0] * 5, [np.nan] * 5]), "non_finite", "5 NaN/inf"),
    (np.array([[np.inf] * 5]), "non_finite", "NaN/inf"),
])
@pytest.mark.parametrize("layout", ["npy_dir", "npz_dir", "hdf5"])
def test_bad_arrays(tmp_path, layout, bad, reason, message):
  path = _write(layout, str(tmp_path), {"a_good": np.ones((2, 5), np.float32), "bad": bad})
  with fl.open_feature_store(path) as store:
    assert store.feature_dim == 5
    with pytest.raises(fl.FeatureError, match=message) as e:
      store.get("bad")
    assert e.value.reason == reason
    assert "bad" in str(e.value)  # names the entry


def test_object_array_is_refused_not_unpickled(tmp_path):
  path = tmp_path / "obj.npy"
  np.save(path, np.array([{"x": 1}], dtype=object), allow_pickle=True)
  with pytest.raises(fl.FeatureError, match="object data, which is refused"):
    fl.load_feature_file(str(path))


def test_corrupt_files(tmp_path):
  for name in ("junk.npy", "junk.npz", "junk.h5"):
    (tmp_path / name).write_bytes(b"not an array at all")
    with pytest.raises(fl.FeatureError, match=f"{name}.*not a readable"):
      fl.load_feature_file(str(tmp_path / name))


def _damaged_files(tmp_path):
  """Each way a feature file is left damaged in practice, with the entry key to read."""
  a = RNG.normal(size=(64, 8)).astype(np.float32)
  (tmp_path / "empty.npy").write_bytes(b"")  # an interrupted extraction
  np.savez(tmp_path / "cut.npz", features=a)
  data = (tmp_path / "cut.npz").read_bytes()
  (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
  np.savez(tmp_path / "crc.npz", features=a)  # stored, not deflated: flip a data byte
  data = bytearray((tmp_path / "crc.npz").read_bytes())
  data[len(data) // 2] ^= 0xFF
  (tmp_path / "crc.npz").write_bytes(bytes(data))
  with h5py.File(tmp_path / "chunk.h5", "w") as f:  # opens fine; one chunk does not inflate
    d = f.create_dataset("v", data=a, chunks=(16, 8), compression="gzip")
    info = d.id.get_chunk_info(1)
  with open(tmp_path / "chunk.h5", "r+b") as f:
    f.seek(info.byte_offset)
    f.write(b"\0" * info.size)
  return [("empty.npy", None, "not a readable .npy file"),
          ("cut.npz", None, "not a readable .npz file"),
          ("crc.npz", None, "not a readable .npz file.*CRC"),
          ("chunk.h5", "v", r"chunk.h5\[v\]: the dataset cannot be read")]


def test_damaged_files_are_feature_errors(tmp_path):
  """Not numpy's / zipfile's / h5py's own exceptions: a FeatureError naming the file, which
  --skip_bad_videos can count."""
  for name, key, message in _damaged_files(tmp_path):
    with pytest.raises(fl.FeatureError, match=message) as e:
      fl.load_feature_file(str(tmp_path / name), key)
    assert e.value.reason == "unreadable" and name in str(e.value)


def test_layout_that_does_not_fit_the_path(tmp_path):
  _write("npy_dir", str(tmp_path))
  with pytest.raises(ValueError, match="a folder, but layout hdf5 expects an HDF5 file"):
    fl.open_feature_store(str(tmp_path / "npy_dir"), "hdf5")
  path = _write("hdf5", str(tmp_path))
  with pytest.raises(ValueError, match=r"a file, but layout npz_dir expects a folder of VIDEO\.npz"):
    fl.open_feature_store(path, "npz_dir")


def test_load_feature_file(tmp_path):
  a = RNG.normal(size=(4, 3)).astype(np.float32)
  np.save(tmp_path / "x.npy", a)
  np.savez(tmp_path / "x.npz", features=a)
  np.savez(tmp_path / "other.npz", vid=a)
  with h5py.File(tmp_path / "x.h5", "w") as f:
    f.create_group("vid_a").create_dataset("c3d_features", data=a)
    f.create_dataset("vid_b", data=a * 2)
  np.testing.assert_array_equal(fl.load_feature_file(str(tmp_path / "x.npy")), a)
  np.testing.assert_array_equal(fl.load_feature_file(str(tmp_path / "x.npz")), a)
  np.testing.assert_array_equal(fl.load_feature_file(str(tmp_path / "other.npz")), a)  # single key
  np.testing.assert_array_equal(fl.load_feature_file(str(tmp_path / "x.h5"), "vid_a"), a)
  np.testing.assert_array_equal(fl.load_feature_file(str(tmp_path / "x.h5"), "vid_b"), a * 2)
  with pytest.raises(ValueError, match=r"holds 2 entries \(vid_a, vid_b\); pass the video id "
                                       r"as key \(--feature_key"):
    fl.load_feature_file(str(tmp_path / "x.h5"))
  with pytest.raises(fl.FeatureError, match=r"x.h5: no entry 'vid_c' \(it holds 2, e.g. vid_a"):
    fl.load_feature_file(str(tmp_path / "x.h5"), "vid_c")
  with pytest.raises(fl.FeatureError, match="no key 'nope'"):
    fl.load_feature_file(str(tmp_path / "x.npz"), "nope")
  with pytest.raises(FileNotFoundError, match="missing.npy"):
    fl.load_feature_file(str(tmp_path / "missing.npy"))
  (tmp_path / "x.txt").write_text("1 2")
  with pytest.raises(ValueError, match="unknown feature file type"):
    fl.load_feature_file(str(tmp_path / "x.txt"))


def test_real_sample_npz(shared_data):
  a = fl.load_feature_file(str(shared_data / "sample_video" / "charades_sample_clip_vid.npz"))
  assert a.shape == (15, 512) and a.dtype == np.float32


def test_probe_feature_dim_takes_the_majority(tmp_path):
  videos = {"odd": np.ones((2, 7), np.float32), "b": np.ones((2, 5), np.float32),
            "c": np.ones((3, 5), np.float32), "nan": np.full((2, 5), np.nan, np.float32)}
  with fl.open_feature_store(_write("npy_dir", str(tmp_path), videos)) as store:
    assert store.probe_feature_dim(["odd", "missing", "nan", "b", "c"]) == 5
    assert store.feature_dim == 5
    with pytest.raises(fl.FeatureError, match="dimension 7, expected 5"):
      store.get("odd")
    np.testing.assert_array_equal(store.get("c"), videos["c"])

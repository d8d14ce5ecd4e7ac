"""Video feature stores in the layouts users have on disk.

Layouts:
  "npy_dir": a folder of VIDEO.npy, each (T, D) (VSLNet's I3D release).
  "npz_dir": a folder of VIDEO.npz with key `features` (moment_detr / lighthouse).
  "hdf5":    one file; `f[VIDEO]` is the (T, D) array, or a group holding
             `c3d_features` (the ActivityNet C3D release, 2D-TAN's layout).
"auto" picks "hdf5" for a file ending .h5/.hdf5/.hdf, otherwise the folder's majority
of .npy or .npz files.

Every array returned is validated: 2-D, at least one row, finite, and of the store's
feature dimension; anything else raises `FeatureError` naming the file and what was
expected. `FeatureError.reason` is a short key ("missing_video", "wrong_dim", ...) so
callers that skip bad videos can count them by reason. Arrays are loaded with
allow_pickle=False always: an object array is refused, never unpickled.

Video ids match file names and HDF5 keys exactly, else after Unicode NFC normalisation of
both sides: "café" typed (NFC) finds "café.npy" saved by macOS (NFD). Two names that
normalise alike are ambiguous, an error naming both.
"""

import os
import unicodedata
import zipfile
import zlib

import numpy as np

LAYOUTS = ("npy_dir", "npz_dir", "hdf5")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
NPZ_KEY = "features"
HDF5_GROUP_KEY = "c3d_features"
_SUFFIXES = {"npy_dir": ".npy", "npz_dir": ".npz"}


class FeatureError(ValueError):
  """A video's features are missing or unusable. `reason` is a short countable key."""

  def __init__(self, reason, message):
    super().__init__(message)
    self.reason = reason


def validate_features(array, source, feature_dim=None,
                      dim_from="the dimension of the store's other videos"):
  """Checks a loaded array and returns it as float32 (T, D); `source` names it in errors,
  `dim_from` says where feature_dim comes from."""
  array = np.asarray(array)
  if array.dtype == object or not (np.issubdtype(array.dtype, np.floating)
                                   or np.issubdtype(array.dtype, np.integer)):
    raise FeatureError("bad_dtype", f"{source}: expected a numeric (T, D) array, got dtype {array.dtype}")
  if array.ndim != 2:
    raise FeatureError("bad_shape", f"{source}: expected a 2-D (T, D) array of clip features, "
                       f"got shape {array.shape}")
  if array.shape[0] == 0 or array.shape[1] == 0:
    raise FeatureError("empty", f"{source}: empty feature array, shape {array.shape} (expected T >= 1 steps)")
  if feature_dim is not None and array.shape[1] != feature_dim:
    raise FeatureError("wrong_dim", f"{source}: feature dimension {array.shape[1]}, expected {feature_dim} "
                       f"({dim_from})")
  array = array.astype(np.float32, copy=False)
  finite = np.isfinite(array)
  if not finite.all():
    bad = int(array.size - finite.sum())
    raise FeatureError("non_finite", f"{source}: {bad} NaN/inf values in the features (shape {array.shape})")
  return array


def _load_npy(path):
  try:
    return np.load(path, allow_pickle=False)
  except ValueError as e:  # numpy says "pickled" for anything without the .npy header
    raise FeatureError("unreadable", f"{path}: not a readable numeric .npy array (truncated, "
                       f"not .npy, or pickled / object data, which is refused: {e})") from e
  except (OSError, EOFError) as e:  # EOFError: a 0-byte file, e.g. an interrupted extraction
    raise FeatureError("unreadable", f"{path}: not a readable .npy file ({e})") from e


def _load_npz(path, key=None):
  try:
    with np.load(path, allow_pickle=False) as data:
      keys = list(data.keys())
      if key is None:
        key = NPZ_KEY if NPZ_KEY in keys or len(keys) != 1 else keys[0]
      if key not in keys:
        raise FeatureError("bad_shape", f"{path}: no key {key!r} in the .npz (keys: {keys}); "
                           f"expected the features under {NPZ_KEY!r}")
      return data[key]
  except FeatureError:
    raise
  except ValueError as e:
    raise FeatureError("unreadable", f"{path}: not a readable numeric .npz (truncated, or "
                       f"pickled / object data, which is refused: {e})") from e
  except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # truncated / bad CRC
    raise FeatureError("unreadable", f"{path}: not a readable .npz file ({e})") from e


def match_name(name, names, where):
  """`name` if in `names`, else the one member equal to it after NFC normalisation, else
  None; two such members are a ValueError naming both and `where`."""
  if name in names:
    return name
  want = unicodedata.normalize("NFC", name)
  found = [n for n in names if unicodedata.normalize("NFC", n) == want]
  if len(found) > 1:
    raise ValueError(f"{where}: {found[0]!r} and {found[1]!r} are both {name!r} after Unicode "
                     "NFC normalisation; rename one")
  return found[0] if found else None


def _h5_entry(f, key, source):
  import h5py
  entry = f[key]
  if isinstance(entry, h5py.Group):
    if HDF5_GROUP_KEY not in entry:
      raise FeatureError("bad_shape", f"{source}: group {key!r} has no {HDF5_GROUP_KEY!r} dataset "
                         f"(members: {list(entry.keys())})")
    entry = entry[HDF5_GROUP_KEY]
    if not isinstance(entry, h5py.Dataset):
      raise FeatureError("bad_shape", f"{source}: {key}/{HDF5_GROUP_KEY} is an HDF5 "
                         f"{type(entry).__name__}, not a dataset of (T, D) features")
  if not isinstance(entry, h5py.Dataset):  # e.g. a committed datatype
    raise FeatureError("bad_shape", f"{source}: entry {key!r} is an HDF5 {type(entry).__name__}, "
                       f"not a (T, D) dataset or a group holding {HDF5_GROUP_KEY!r}")
  try:
    return entry[()]
  except OSError as e:  # the file opened, but this dataset's chunks do not decode
    raise FeatureError("unreadable", f"{source}: the dataset cannot be read ({e})") from e


def _open_h5(path):
  import h5py
  try:
    return h5py.File(path, "r")
  except OSError as e:
    raise FeatureError("unreadable", f"{path}: not a readable HDF5 file ({e})") from e


def load_feature_file(path, key=None):
  """One video's features from a .npy, a .npz (key `features` by default) or an HDF5 file
  (key = the video id; optional when the file holds one entry). Returns float32 (T, D)."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"feature file {path} not found")
  lower = path.lower()
  if lower.endswith(".npy"):
    array = _load_npy(path)
  elif lower.endswith(".npz"):
    array = _load_npz(path, key)
  elif lower.endswith(HDF5_SUFFIXES):
    with _open_h5(path) as f:
      keys = list(f.keys())
      if key is None:
        if len(keys) != 1:
          shown = ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
          raise ValueError(f"{path}: holds {len(keys)} entries ({shown}); pass the video id as "
                           "key (--feature_key in predict and the serving clients)")
        key = keys[0]
      key = match_name(key, keys, path) or key
      if key not in f:
        raise FeatureError("missing_video", f"{path}: no entry {key!r} (it holds {len(keys)}, "
                           f"e.g. {', '.join(keys[:5])})")
      array = _h5_entry(f, key, f"{path}[{key}]")
  else:
    raise ValueError(f"{path}: unknown feature file type; expected .npy, .npz or .h5/.hdf5")
  return validate_features(array, f"{path}" + (f"[{key}]" if key else ""))


def detect_layout(path):
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"feature path {path} not found (expected a folder of VIDEO.npy / "
                            "VIDEO.npz files or an HDF5 file)")
  if os.path.isfile(path):
    if path.lower().endswith(HDF5_SUFFIXES):
      return "hdf5"
    raise ValueError(f"{path}: a single file must be HDF5 (.h5/.hdf5/.hdf) to be a feature store")
  names = os.listdir(path)
  npy = sum(n.endswith(".npy") for n in names)
  npz = sum(n.endswith(".npz") for n in names)
  if npy == 0 and npz == 0:
    raise ValueError(f"{path}: no .npy or .npz files; cannot detect the feature layout")
  return "npy_dir" if npy >= npz else "npz_dir"


class FeatureStore:
  """`store.get(vid)` -> float32 (T, D); `vid in store`; `store.feature_dim`; `len(store)`.

  The feature dimension is the one given, else the first video's (first by sorted id);
  every video read must have it. Use as a context manager (or call close()) for HDF5.
  """

  def __init__(self, path, layout, feature_dim=None):
    if layout not in LAYOUTS:
      raise ValueError(f"feature layout {layout!r} unknown; expected one of {LAYOUTS} or 'auto'")
    self.path = os.fspath(path)
    self.layout = layout
    self._dim = feature_dim
    self._h5 = None
    self._suffix = _SUFFIXES.get(layout)
    self._names = None  # the stored ids, listed once, for NFC matching
    if layout == "hdf5":
      if os.path.isdir(self.path):
        raise ValueError(f"{self.path}: a folder, but layout hdf5 expects an HDF5 file "
                         "(--feature_layout=auto detects the layout)")
      if not os.path.isfile(self.path):
        raise FileNotFoundError(f"HDF5 feature file {self.path} not found")
      self._h5 = _open_h5(self.path)
    elif os.path.isfile(self.path):
      raise ValueError(f"{self.path}: a file, but layout {layout} expects a folder of "
                       f"VIDEO{self._suffix} files (--feature_layout=auto detects the layout)")
    elif not os.path.isdir(self.path):
      raise FileNotFoundError(f"feature folder {self.path} not found (layout {layout})")

  def vids(self):
    if self._h5 is not None:
      return sorted(self._h5.keys())
    return sorted(n[:-len(self._suffix)] for n in os.listdir(self.path) if n.endswith(self._suffix))

  def __len__(self):
    return len(self.vids())

  def _stored(self, vid):
    """The stored id for `vid` (itself, or its NFC match), or None."""
    if vid in self._h5 if self._h5 is not None else os.path.isfile(self._file(vid)):
      return vid
    if self._names is None:
      self._names = self.vids()
    return match_name(vid, self._names, self.path)

  def __contains__(self, vid):
    return self._stored(vid) is not None

  def _file(self, vid):
    return os.path.join(self.path, vid + self._suffix)

  def _source(self, vid):
    return f"{self.path}[{vid}]" if self._h5 is not None else self._file(vid)

  @property
  def feature_dim(self):
    if self._dim is None:
      vids = self.vids()
      if not vids:
        raise ValueError(f"feature store {self.path} ({self.layout}) holds no videos")
      self._dim = int(self._read(vids[0]).shape[1])
    return self._dim

  def _read(self, vid):
    stored = self._stored(vid)
    if stored is None:
      raise FeatureError("missing_video", f"video {vid!r} not in the feature store: "
                         f"{self._source(vid)} not found")
    vid, source = stored, self._source(stored)
    if self._h5 is not None:
      array = _h5_entry(self._h5, vid, source)
    elif self.layout == "npy_dir":
      array = _load_npy(source)
    else:
      array = _load_npz(source)
    return validate_features(array, source, self._dim)

  def get(self, vid):
    array = self._read(vid)
    if self._dim is None:
      self._dim = int(array.shape[1])
    return array

  def probe_feature_dim(self, vids, count=8):
    """Fixes the store's dimension to the most common one among the first `count` readable
    `vids` (so one odd first video cannot make every other video "wrong_dim"); returns it."""
    if self._dim is not None:
      return self._dim
    dims = []
    for vid in vids:
      if len(dims) == count:
        break
      try:
        dims.append(int(self._read(vid).shape[1]))
      except FeatureError:
        continue
    if dims:
      values, counts = np.unique(dims, return_counts=True)
      self._dim = int(values[np.argmax(counts)])
    return self._dim

  def close(self):
    if self._h5 is not None:
      self._h5.close()
      self._h5 = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def open_feature_store(path, layout="auto", feature_dim=None):
  """Opens a feature store; layout "auto" detects it from `path` (see module doc)."""
  if layout == "auto":
    layout = detect_layout(path)
  return FeatureStore(path, layout, feature_dim)

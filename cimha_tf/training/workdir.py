"""Paths inside a training workdir (docs/design.md) and loading what training left there."""

import json
import os

CONFIG = "config.json"
VOCAB = "vocab.json"
DATA_META = "data_meta.json"
BEST = "best.keras"
LAST = "last.keras"
BACKUP = "backup"
# What keras.callbacks.BackupAndRestore writes into BACKUP (its own fixed names).
BACKUP_WEIGHTS = "latest.weights.h5"
BACKUP_STATE = "training_metadata.json"
LOGS = "logs"


def path(workdir, name):
  return os.path.join(workdir, name)


def metrics_path(workdir, split):
  return os.path.join(workdir, "metrics", f"{split}.json")


def predictions_path(workdir, split):
  return os.path.join(workdir, "predictions", f"{split}.jsonl")


def figures_dir(workdir):
  return os.path.join(workdir, "figures")


def read_json(workdir, name):
  p = path(workdir, name)
  if not os.path.exists(p):
    raise FileNotFoundError(f"{p} not found: is {workdir} a cimha_tf training workdir?")
  with open(p) as f:
    return json.load(f)


def checkpoint_path(workdir, which="best"):
  """'best', 'last', or an explicit .keras path."""
  if which in ("best", "last"):
    p = path(workdir, BEST if which == "best" else LAST)
  else:
    p = which
  if not os.path.exists(p):
    raise FileNotFoundError(f"checkpoint {p} not found (train first, or pass --checkpoint=PATH)")
  return p


def load_model(checkpoint):
  """Loads a .keras checkpoint with the project's layers registered; clear error if corrupt."""
  import zipfile
  import keras
  import cimha_tf.model  # noqa: F401  registers the custom layers
  if str(checkpoint).endswith(".keras") and not zipfile.is_zipfile(checkpoint):
    # Keras reports a truncated archive as "File not found", which misleads.
    raise ValueError(f"cannot load checkpoint {checkpoint}: not a .keras (zip) archive "
                     f"({os.path.getsize(checkpoint)} bytes): truncated or corrupt? Use the "
                     "other checkpoint (--checkpoint=last or best) or retrain")
  try:
    return keras.models.load_model(checkpoint, compile=False)
  except Exception as e:  # zip/h5 errors are cryptic; name the file
    raise ValueError(f"cannot load checkpoint {checkpoint}: {type(e).__name__}: {e}") from e

"""Preflight checks run before any training or evaluation step.

Each failure names the file or config key and what was expected, so a wrong folder or a
stale workdir fails in a second instead of after an epoch (or, worse, trains silently on
mismatched data).
"""

import json
import os

import numpy as np

from cimha_tf.common.jsonfile import read_json_object
from cimha_tf.experiment import workdir as wd

DIM_KEYS = ("feature_dim", "vocab_size")


def check_data(config, meta, splits):
  """The prepared folder has each split, non-empty, within the model's length limits."""
  data_dir = config.data.dir
  available = meta.get("splits", {})
  for split in splits:
    if split not in available:
      hint = (" or prepare it again with --val_every=6, which carves a 'val' split from the "
              "training videos" if split == "val" else "")
      raise ValueError(f"{data_dir}/metadata.json has no split {split!r} (has {sorted(available)}); "
                       f"set --config.data.train_split/val_split/test_split (evaluate: --split){hint}")
    if int(available[split].get("queries", 0)) <= 0:
      raise ValueError(f"{data_dir}: split {split!r} is empty (0 queries kept; see its read/dropped "
                       "counts in metadata.json)")
  for key in ("max_video_len", "max_query_len"):
    if int(meta[key]) > int(config.model[key]):
      raise ValueError(f"{data_dir} was prepared with {key}={meta[key]} but config.model.{key}="
                       f"{config.model[key]}: re-prepare or raise the model's limit")
  for key in DIM_KEYS:
    if int(meta.get(key, 0)) <= 0:
      raise ValueError(f"{data_dir}/metadata.json: {key}={meta.get(key)!r}, expected a positive int")


def load_embeddings(data_dir, meta, embedding_dim=None):
  """DIR/embeddings.npy as float32 (vocab_size, D), or None when the folder has none; D must
  be `embedding_dim` (config.model.embedding_dim) when given."""
  name = meta.get("embeddings")
  if not name:
    return None
  path = os.path.join(data_dir, name)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{data_dir}/metadata.json names embeddings {name!r} but {path} is missing")
  emb = np.load(path, allow_pickle=False)
  if emb.ndim != 2 or emb.shape[0] != int(meta["vocab_size"]):
    raise ValueError(f"{path}: shape {emb.shape}, expected (vocab_size={meta['vocab_size']}, D)")
  if not np.all(np.isfinite(emb)):
    raise ValueError(f"{path}: contains NaN/inf")
  if embedding_dim is not None and emb.shape[1] != int(embedding_dim):
    raise ValueError(f"{path}: {emb.shape[1]}-d word vectors but config.model.embedding_dim="
                     f"{embedding_dim}: set --config.model.embedding_dim={emb.shape[1]}, or "
                     "prepare with GloVe vectors of that size")
  return emb.astype(np.float32)


def _normalise(d):
  return json.loads(json.dumps(d, sort_keys=True))


# What a resumed run may change: how long it trains, where the (dimension- and vocabulary-
# checked) data lives, and speed-only settings. Anything else would mix two runs' settings
# in one model, and config.json would describe neither.
RESUME_MAY_CHANGE = ("train.epochs", "data.dir", "eval.batch_size", "train.steps_per_execution",
                     "train.jit_compile")


def _flat(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def check_workdir(workdir, config, meta):
  """A workdir that already holds a run must hold this model on data of these dimensions."""
  config_path = wd.path(workdir, wd.CONFIG)
  if not os.path.exists(config_path):
    leftovers = [n for n in (wd.BEST, wd.LAST, wd.BACKUP) if os.path.exists(wd.path(workdir, n))]
    if leftovers:
      raise ValueError(f"{workdir} holds {leftovers} but no {wd.CONFIG}: not a workdir this "
                       "program wrote; use an empty workdir")
    return
  saved = wd.read_json(workdir, wd.CONFIG)
  if any(os.path.exists(wd.path(workdir, n)) for n in (wd.BEST, wd.LAST, wd.BACKUP)):
    old, new = _flat({k: v for k, v in saved.items() if k != "model"}), _flat(
        _normalise({k: v for k, v in config.to_dict().items() if k != "model"}))
    diff = sorted(k for k in set(old) | set(new)
                  if old.get(k) != new.get(k) and k not in RESUME_MAY_CHANGE)
    if diff:
      details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
      raise ValueError(f"{workdir} holds a run made with other settings ({config_path}: "
                       f"{details}); resuming would mix them, and {wd.CONFIG} would describe "
                       f"neither. Use a new --workdir, or the saved values (a resumed run may "
                       f"change only {', '.join(RESUME_MAY_CHANGE)})")
  new_model = _normalise(config.model.to_dict())
  old_model = saved.get("model", {})
  diff = sorted(k for k in set(new_model) | set(old_model) if new_model.get(k) != old_model.get(k))
  if diff:
    details = ", ".join(f"{k}: {old_model.get(k)!r} -> {new_model.get(k)!r}" for k in diff)
    raise ValueError(f"{workdir} holds checkpoints of a different model ({config_path} differs in "
                     f"model.{details}); use a new --workdir or the same model config")
  if os.path.exists(wd.path(workdir, wd.DATA_META)):
    check_same_dims(wd.read_json(workdir, wd.DATA_META), meta, where=f"{workdir} (trained on)",
                    data_dir=config.data.dir)
  check_same_vocab(workdir, config.data.dir)


def check_same_dims(trained_meta, meta, where, data_dir):
  for key in DIM_KEYS:
    if int(trained_meta.get(key, -1)) != int(meta.get(key, -2)):
      raise ValueError(f"{where} {key}={trained_meta.get(key)} but {data_dir}/metadata.json has "
                       f"{key}={meta.get(key)}: the checkpoint cannot read this data")


def check_checkpoint_data(model, checkpoint, workdir, data_dir, meta):
  """Before evaluating: the checkpoint's input dims and vocabulary match the prepared folder."""
  video_dim = model.input["video_features"].shape[-1] if isinstance(model.input, dict) else None
  if video_dim is not None and int(video_dim) != int(meta["feature_dim"]):
    raise ValueError(f"checkpoint {checkpoint} takes video features of dim {video_dim} but "
                     f"{data_dir}/metadata.json has feature_dim={meta['feature_dim']}")
  if os.path.exists(wd.path(workdir, wd.DATA_META)):
    check_same_dims(wd.read_json(workdir, wd.DATA_META), meta, where=f"{workdir} was trained on",
                    data_dir=data_dir)
  check_same_vocab(workdir, data_dir)


def check_same_vocab(workdir, data_dir):
  """The prepared folder's vocabulary is the one WORKDIR's model was trained with."""
  vocab_a, vocab_b = wd.path(workdir, wd.VOCAB), os.path.join(data_dir, "vocab.json")
  if os.path.exists(vocab_a) and os.path.exists(vocab_b):
    expected = 'a JSON object {"tokens": [...]}'
    if (read_json_object(vocab_a, "vocabulary", expected)
        != read_json_object(vocab_b, "vocabulary", expected)):
      raise ValueError(f"{vocab_b} differs from the vocabulary the model was trained with "
                       f"({vocab_a}): token ids would mean other words; prepare the data with "
                       "that vocabulary, or use a new --workdir")

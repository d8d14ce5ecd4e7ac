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
  from cimha_tf.common import jsonfile  # json's own errors name no file; this one's do
  return jsonfile.read_json_object(p, name, expected="a JSON object (a damaged workdir file?)")


def saved_model_config(workdir, config=None):
  """config.json's 'model' section over the model defaults, checked (unknown keys, ranges);
  `config`: config.json's contents when the caller has read them already."""
  from cimha_tf.model import check_config, default_config
  config = read_json(workdir, CONFIG) if config is None else config
  if not isinstance(config.get("model"), dict):
    raise ValueError(f"{path(workdir, CONFIG)}: no 'model' section")
  model_config = default_config()
  unknown = sorted(set(config["model"]) - set(model_config.keys()))
  if unknown:
    raise ValueError(f"{path(workdir, CONFIG)}: unknown model keys {unknown}")
  model_config.update(config["model"])
  check_config(model_config)
  return model_config


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


def _embedding(model):
  """The query embedding's weight (rows: vocabulary size), or None."""
  return next((w for w in model.weights if w.path.endswith("embedding/embeddings")), None)


def _layer_configs(model):
  layers = json.loads(json.dumps({l["name"]: l["config"] for l in model.get_config()["layers"]}))
  # Not architecture: whether the embedding trained (without a GloVe matrix it always does,
  # whatever config.model.train_embeddings says), the LSTM form and the attention and
  # dropout layers' private_fast_path (same weights, same function: both switch with
  # cimha_tf.model.with_lstm_implementation).
  for name in ("query_encoder", "span_head"):
    for key in ("train_embeddings", "lstm_implementation"):
      layers.get(name, {}).pop(key, None)
  for config in layers.values():
    config.pop("private_fast_path", None)
  return layers


def check_architecture(model, model_config, checkpoint, source):
  """The checkpoint's model must be the one model_config (from `source`) builds: evaluation
  writes its metrics under that config's workdir, and export rebuilds the graph from the
  config with the checkpoint's weights. Compared layer by layer against a model built from
  the config (weights aside), so every architecture key counts, not only those that change
  a weight's shape (cross_skip, cross_fusion, dropout)."""
  import numpy as np
  from cimha_tf.model import video_dim_of
  from cimha_tf.model import build_model
  emb = _embedding(model)
  vocab = int(emb.shape[0]) if emb is not None else 1
  ref = build_model(model_config, video_dim_of(model), vocab,
                    embeddings=np.zeros((vocab, model_config.embedding_dim), np.float32))
  ours, theirs = _layer_configs(ref), _layer_configs(model)
  diffs = [f"{name}.{key}: {theirs[name][key]!r}, config {ours[name][key]!r}"
           for name in sorted(set(ours) & set(theirs))
           for key in sorted(set(ours[name]) | set(theirs[name]))
           if ours[name].get(key) != theirs[name].get(key)]
  diffs += [f"layer {name!r} only in the {where}" for where, a, b in
            (("checkpoint", theirs, ours), ("config", ours, theirs)) for name in sorted(set(a) - set(b))]
  if diffs:
    raise ValueError(f"checkpoint {checkpoint} is not the model {source} describes "
                     f"({'; '.join(diffs[:6])}{'; ...' if len(diffs) > 6 else ''}): evaluate or "
                     "export it with the workdir (or config) it was trained with")


def load_checkpoint(workdir, which="best", model_config=None):
  """(path, model) of checkpoint `which` ('best', 'last' or a .keras path), checked to belong
  with WORKDIR, whose vocabulary and config evaluation and export pair it with: a .keras
  inside another workdir must come from the same model config and vocabulary (token ids
  would mean other words), and any checkpoint's embedding must have one row per token.
  Its architecture must be model_config's (default: WORKDIR's config.json; check_architecture)."""
  p = checkpoint_path(workdir, which)
  model = load_model(p)
  home = os.path.dirname(os.path.abspath(p))
  if home != os.path.abspath(workdir) and os.path.exists(path(home, CONFIG)):
    for name, part in ((CONFIG, "model"), (VOCAB, None)):
      if not (os.path.exists(path(home, name)) and os.path.exists(path(workdir, name))):
        continue
      theirs, ours = read_json(home, name), read_json(workdir, name)
      if part:
        theirs, ours = theirs.get(part), ours.get(part)
      if theirs != ours:
        what = f"{CONFIG} (its '{part}' section)" if part else VOCAB
        raise ValueError(f"checkpoint {p} was trained in {home}, whose {what} differs from "
                         f"{workdir}'s: evaluate or export it with --workdir={home}")
  source = "the given config"
  if model_config is None and os.path.exists(path(workdir, CONFIG)):
    model_config, source = saved_model_config(workdir), path(workdir, CONFIG)
  if model_config is not None:
    check_architecture(model, model_config, p, source)
  if os.path.exists(path(workdir, VOCAB)):
    from cimha_tf.data.text import Vocabulary
    tokens = len(Vocabulary.load(path(workdir, VOCAB)))
    emb = _embedding(model)
    if emb is not None and int(emb.shape[0]) != tokens:
      raise ValueError(f"checkpoint {p}: its word embedding has {emb.shape[0]} rows but "
                       f"{path(workdir, VOCAB)} has {tokens} tokens: not trained with this "
                       "vocabulary")
  return p, model

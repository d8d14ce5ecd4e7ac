"""What an export reads from a training workdir (docs/design.md, "Workdir")."""

import dataclasses
from typing import List, Optional

import ml_collections

from cimha_tf.experiment import workdir as workdir_lib


@dataclasses.dataclass
class TrainedModel:
  model: object                       # keras.Model, inputs/outputs as docs/design.md
  model_config: ml_collections.ConfigDict
  vocab_tokens: List[str]
  top_k: int
  checkpoint: str
  feature_recipe: Optional[dict] = None   # prepare_data's metadata: how the features were made
  # The decoding bound training selected with (config.eval.max_span_fraction; None: every
  # pair), so that exported models answer the windows evaluate scored.
  max_span_fraction: Optional[float] = None


def load_workdir(workdir, checkpoint="best"):
  """The trained Keras model with its model config, vocabulary and eval top_k.

  Clear errors for a missing file (names it), a corrupt checkpoint, or a vocabulary /
  feature size that does not match the checkpoint."""
  from cimha_tf.data.text import Vocabulary
  from cimha_tf.model import video_dim_of
  config = workdir_lib.read_json(workdir, workdir_lib.CONFIG)
  model_config = workdir_lib.saved_model_config(workdir, config)
  vocab = Vocabulary.load(workdir_lib.path(workdir, workdir_lib.VOCAB))
  path, model = workdir_lib.load_checkpoint(workdir, checkpoint, model_config)
  try:
    meta = workdir_lib.read_json(workdir, workdir_lib.DATA_META)
  except FileNotFoundError:
    meta = {}
  dim = meta.get("feature_dim", video_dim_of(model))
  if isinstance(dim, bool) or not isinstance(dim, int):
    raise ValueError(f"{workdir_lib.path(workdir, workdir_lib.DATA_META)}: feature_dim must be "
                     f"an integer, got {dim!r} (a damaged workdir file?)")
  if dim != video_dim_of(model):
    raise ValueError(f"{path}: model takes {video_dim_of(model)}-d features but "
                     f"data_meta.json says feature_dim={meta['feature_dim']}")
  top_k = int(config.get("eval", {}).get("top_k", 5))
  fraction = float(config.get("eval", {}).get("max_span_fraction", 1.0))
  return TrainedModel(model, model_config, vocab.tokens, top_k, path,
                      meta.get("feature_recipe"), fraction if fraction < 1.0 else None)

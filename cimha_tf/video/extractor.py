"""Feature extractors: uint8 frames in, one vector per clip out, with the recipe that says
what the vectors are.

  extractor = build_extractor("clip_vit_b32", weights="clip_vit_base_patch32")
  features, reader = extractor.extract_video("my.mp4")      # (clips, 512) float32

Built in: `clip_vit_b32`, the CLIP ViT-B/32 image tower (KerasHub's CLIPVisionEncoder,
the class token, the 768 -> 512 projection without bias), as moment_detr's run_on_video,
UniVTG and lighthouse use it (docs/video.md). Weights (`weights=`), never read at import:
a KerasHub preset name (downloaded on first use into KerasHub's cache), a local preset
folder (`backbone.save_to_preset(DIR)`), a `.weights.h5` file of this extractor's own
network (`Extractor.model.save_weights`), or "random" (seeded; tests and timing only:
the recipe says so, and predict refuses such features for a model trained on real ones).
Any user model: a `.keras` file or a SavedModel folder mapping float32 (B, size, size, 3)
preprocessed frames to (B, D), with its recipe given (`user_model_extractor`).
"""

import os

import numpy as np

from cimha_tf.video import decode as decode_lib
from cimha_tf.video.recipe import Recipe

CLIP_PRESET = "clip_vit_base_patch32"
RANDOM = "random"
BUILTIN = ("clip_vit_b32",)

# ViT-B/32's image tower (openai/CLIP model.py build_model for ViT-B-32; KerasHub's
# clip_vit_base_patch32 preset config).
_VIT_B32 = dict(patch_size=32, hidden_dim=768, num_layers=12, num_heads=12,
                intermediate_dim=3072, intermediate_activation="quick_gelu")


class WeightsError(ValueError):
  """The extractor's weights cannot be found or loaded."""


def preprocess(frames, recipe: Recipe):
  """uint8 (B, H, W, 3) RGB -> float32 ((x / 255) - mean) / (std + eps), the recipe's
  normalisation (lighthouse clip_v.py CLIPPreprocessing; moment_detr Preprocessing)."""
  x = np.asarray(frames, np.float32) / np.float32(255.0)
  mean = np.asarray(recipe.mean, np.float32)
  std = np.asarray(recipe.std, np.float32) + np.float32(recipe.std_epsilon)
  return (x - mean) / std


class Extractor:
  """A Keras (or SavedModel) network with its recipe. `__call__(frames)` maps uint8 frames
  to float32 (B, output_dim) features; `extract_video(path)` runs the whole video."""

  def __init__(self, fn, recipe: Recipe, model=None):
    self._fn = fn
    self.recipe = recipe
    self.model = model

  def __call__(self, frames):
    import tensorflow as tf
    x = preprocess(frames, self.recipe)
    out = self._fn(tf.constant(x))
    if isinstance(out, dict):
      if len(out) != 1:
        raise ValueError(f"the {self.recipe.extractor} model returns {sorted(out)}; expected one "
                         "(B, D) output")
      out = next(iter(out.values()))
    out = np.asarray(out, np.float32)
    if out.ndim != 2 or out.shape[0] != x.shape[0]:
      raise ValueError(f"the {self.recipe.extractor} model returned shape {out.shape} for "
                       f"{x.shape[0]} frames; expected (frames, {self.recipe.output_dim})")
    if out.shape[1] != self.recipe.output_dim:
      raise ValueError(f"the {self.recipe.extractor} model returns {out.shape[1]}-d vectors, but "
                       f"the recipe says output_dim={self.recipe.output_dim}")
    if self.recipe.l2_normalize:
      out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out

  def extract_video(self, path, batch_size=32, max_seconds=decode_lib.DEFAULT_MAX_SECONDS,
                    on_batch=None):
    """(features float32 (clips, D), the ClipReader: duration, repairs, info, seconds
    {"decode", "embed"}). Frames are decoded and embedded batch by batch; `on_batch(n)` is
    told each batch's size."""
    import time
    t0 = time.perf_counter()
    reader = decode_lib.ClipReader(path, self.recipe, max_seconds=max_seconds)
    parts, embed = [], 0.0
    for _, frames in reader.batches(batch_size):
      t = time.perf_counter()
      parts.append(self(frames))
      embed += time.perf_counter() - t
      if on_batch is not None:
        on_batch(len(frames))
    feats = np.concatenate(parts, 0)
    reader.seconds = {"decode": time.perf_counter() - t0 - embed, "embed": embed}
    if not np.all(np.isfinite(feats)):
      raise ValueError(f"{reader.path}: the extractor gave non-finite features")
    return feats, reader


def _compiled(model):
  import tensorflow as tf
  size = model.inputs[0].shape[1:] if getattr(model, "inputs", None) else (None, None, 3)
  return tf.function(lambda x: model(x, training=False), reduce_retracing=True,
                     input_signature=[tf.TensorSpec((None,) + tuple(size), tf.float32)])


def clip_vit_b32_model(size=224):
  """The CLIP ViT-B/32 image tower as one Keras model, weights fresh (uninitialised
  architecture): images (B, size, size, 3) -> (B, 512)."""
  import keras
  import keras_hub
  encoder = keras_hub.models.CLIPVisionEncoder(image_shape=(size, size, 3), **_VIT_B32)
  # KerasHub creates position_ids as zeros and relies on the preset to hold 0..P; fresh,
  # every patch would get position 0's embedding (a different network from CLIP's).
  ids = encoder.embedding.position_ids
  ids.assign(np.arange(ids.shape[1], dtype=ids.dtype)[None])
  projection = keras.layers.Dense(512, use_bias=False, name="vision_projection")
  return _tower(encoder, projection, size)


def _tower(encoder, projection, size):
  import keras
  images = keras.Input((size, size, 3), name="images")
  tokens = encoder({"images": images})
  cls = keras.layers.Lambda(lambda t: t[:, 0, :], name="class_token")(tokens)
  return keras.Model(images, projection(cls), name="clip_vit_b32_image_tower")


def _missing_weights(weights, cause):
  return WeightsError(
      f"CLIP ViT-B/32 weights {weights!r} could not be loaded ({cause}). Get the KerasHub preset "
      f"'{CLIP_PRESET}' on a machine with network access: python -c \"import keras_hub; "
      f"keras_hub.models.CLIPBackbone.from_preset('{CLIP_PRESET}').save_to_preset('clip_b32')\" "
      "(it downloads from Kaggle: KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json), then "
      "pass --weights=clip_b32 (the folder); --weights=random builds the same network with "
      "seeded random weights, for tests and timing only")


def _load_clip(weights, size):
  """The tower from a preset name, a preset folder or a .weights.h5 file."""
  if weights.endswith(".weights.h5"):
    if not os.path.isfile(weights):
      raise _missing_weights(weights, "no such file")
    model = clip_vit_b32_model(size)
    try:
      model.load_weights(weights)
    except Exception as e:  # noqa: BLE001  h5py / Keras errors, named in the message
      raise WeightsError(f"{weights}: not the weights of the clip_vit_b32 image tower "
                         f"({type(e).__name__}: {e})") from None
    return model
  looks_local = os.sep in weights or weights.startswith(".") or os.path.exists(weights)
  if looks_local and not os.path.isdir(weights):
    raise _missing_weights(weights, "no such folder")
  if looks_local and not os.path.isfile(os.path.join(weights, "config.json")):
    raise _missing_weights(weights, "the folder holds no KerasHub preset (no config.json)")
  import keras_hub
  try:
    backbone = keras_hub.models.CLIPBackbone.from_preset(weights)
  except Exception as e:  # noqa: BLE001  no network, unknown preset, damaged download
    raise _missing_weights(weights, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
  if backbone.vision_encoder.patch_size != 32 or backbone.projection_dim != 512:
    raise WeightsError(f"{weights}: a CLIP preset with patch size {backbone.vision_encoder.patch_size} "
                       f"and {backbone.projection_dim}-d projection, not ViT-B/32 (32, 512)")
  return _tower(backbone.vision_encoder, backbone.vision_projection, size)


def clip_vit_b32(weights=CLIP_PRESET, seed=0, size=224):
  """The built-in extractor (module docstring)."""
  import keras
  weights = os.fspath(weights)
  if weights == RANDOM:
    keras.utils.set_random_seed(seed)
    model = clip_vit_b32_model(size)
    recipe = Recipe("clip_vit_b32", size=size, weights=RANDOM, random_weights=True, seed=seed)
  else:
    model = _load_clip(weights, size)
    recipe = Recipe("clip_vit_b32", size=size, weights=weights)
  return Extractor(_compiled(model), recipe, model)


def user_model_extractor(path, recipe: Recipe):
  """A `.keras` file or SavedModel folder (float32 (B, size, size, 3) preprocessed frames
  -> (B, D)) with the recipe its features follow."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"extractor model {path} not found (a .keras file or a SavedModel folder)")
  if path.endswith(".keras"):
    import keras
    try:
      model = keras.saving.load_model(path)
    except Exception as e:  # noqa: BLE001
      raise ValueError(f"{path}: not a loadable Keras model ({type(e).__name__}: {e})") from None
    return Extractor(_compiled(model), recipe, model)
  if os.path.isdir(path):
    import tensorflow as tf
    try:
      loaded = tf.saved_model.load(path)
    except Exception as e:  # noqa: BLE001
      raise ValueError(f"{path}: not a loadable SavedModel ({type(e).__name__}: {e})") from None
    fn = loaded.signatures.get("serving_default") if hasattr(loaded, "signatures") else None
    if fn is not None:
      name = next(iter(fn.structured_input_signature[1]))
      return Extractor(lambda x: fn(**{name: x}), recipe, loaded)
    if callable(loaded):
      return Extractor(loaded, recipe, loaded)
    raise ValueError(f"{path}: the SavedModel has no serving_default signature and is not callable")
  raise ValueError(f"{path}: expected a .keras file or a SavedModel folder")


def build_extractor(name, weights=CLIP_PRESET, seed=0, recipe=None):
  """`name` is a built-in extractor (BUILTIN) or a user model path (then `recipe` gives its
  recipe: extractor name, clip_seconds, size, mean/std, output_dim)."""
  if name == "clip_vit_b32":
    size = recipe.size if recipe is not None else 224
    return clip_vit_b32(weights, seed, size)
  if recipe is None:
    raise ValueError(f"extractor {name!r}: not built in ({', '.join(BUILTIN)}); a user model "
                     "needs its recipe (clip seconds, size, mean/std, output width)")
  return user_model_extractor(name, recipe)


def extractor_for_recipe(recipe: Recipe, weights=None, model=None):
  """The extractor that produces `recipe`'s features: clip_vit_b32 with the recipe's
  weights (or `weights`), or the user `model` with this recipe."""
  if recipe.extractor == "clip_vit_b32":
    if recipe.random_weights:
      return clip_vit_b32(RANDOM, recipe.seed or 0, recipe.size)
    return clip_vit_b32(weights or recipe.weights, size=recipe.size)
  if model is None:
    raise ValueError(f"features of the user extractor {recipe.extractor!r}: pass its model "
                     "(--extractor_model=PATH) to extract them")
  return user_model_extractor(model, recipe)

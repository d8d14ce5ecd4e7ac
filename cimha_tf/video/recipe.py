"""A feature recipe: everything that decides what a clip feature means.

Two extractions give comparable features only when their recipes agree on the fields in
`COMPARED` (clip length, frame choice, pixels, backbone, width, normalisation, and whether
the weights were real). The recipe travels as JSON: extract_features writes it beside the
features (recipe.json), prepare_data copies it into metadata.json, export records it, and
predict --video extracts with the model's recipe or refuses, naming it (docs/video.md).
"""

import dataclasses
import json
import os
from typing import Optional, Tuple

# CLIP's normalisation constants (openai/CLIP clip.py _transform; moment_detr
# run_on_video/data_utils.py Preprocessing and lighthouse clip_v.py use the same numbers).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

RECIPE_FILE = "recipe.json"
FORMAT = "cimha-feature-recipe/1"


@dataclasses.dataclass(frozen=True)
class Recipe:
  """What one clip feature is. Frame choice and pixel steps: docs/video.md."""
  extractor: str                       # "clip_vit_b32", or the user model's name
  clip_seconds: float = 2.0            # one feature per clip_seconds of video
  frame_choice: str = "ffmpeg_fps"     # the frame ffmpeg's fps filter keeps for each clip
  short_video_rule: bool = True        # videos < clip_seconds + 0.1 s: HERO's denser rate
  size: int = 224                      # short side resized to size, then centre crop size x size
  resize: str = "bicubic"              # swscale interpolation (ffmpeg's default for -vf scale)
  center_crop: bool = True
  mean: Tuple[float, float, float] = CLIP_MEAN   # on pixels / 255
  std: Tuple[float, float, float] = CLIP_STD
  std_epsilon: float = 1e-8            # (x - mean) / (std + eps), as lighthouse writes it
  output_dim: int = 512
  l2_normalize: bool = False           # the published CLIP features are not normalised
  weights: str = "clip_vit_base_patch32"   # preset name, folder or file, or "random"
  random_weights: bool = False
  seed: Optional[int] = None           # the seed of random weights

  def to_dict(self):
    d = dataclasses.asdict(self)
    d["mean"], d["std"] = list(self.mean), list(self.std)
    d["format"] = FORMAT
    return d

  @classmethod
  def from_dict(cls, d, source="recipe"):
    if not isinstance(d, dict):
      raise ValueError(f"{source}: expected a feature recipe object, got {type(d).__name__}")
    d = dict(d)
    fmt = d.pop("format", FORMAT)
    if fmt != FORMAT:
      raise ValueError(f"{source}: recipe format {fmt!r}, expected {FORMAT!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
      raise ValueError(f"{source}: unknown recipe fields {unknown}; known: {sorted(names)}")
    if "extractor" not in d:
      raise ValueError(f"{source}: the recipe has no 'extractor' field")
    for key in ("mean", "std"):
      if key in d:
        if not (isinstance(d[key], (list, tuple)) and len(d[key]) == 3):
          raise ValueError(f"{source}: recipe field {key!r} must be 3 numbers (R, G, B)")
        d[key] = tuple(float(v) for v in d[key])
    recipe = cls(**d)
    recipe.validate(source)
    return recipe

  def validate(self, source="recipe"):
    if not (self.clip_seconds > 0):
      raise ValueError(f"{source}: clip_seconds={self.clip_seconds}, expected > 0")
    if self.frame_choice != "ffmpeg_fps":
      raise ValueError(f"{source}: frame_choice={self.frame_choice!r}; supported: 'ffmpeg_fps'")
    if self.resize not in ("bicubic", "bilinear", "area"):
      raise ValueError(f"{source}: resize={self.resize!r}; supported: bicubic, bilinear, area")
    if self.size < 1 or self.output_dim < 1:
      raise ValueError(f"{source}: size and output_dim must be >= 1")
    if any(s + self.std_epsilon <= 0 for s in self.std):
      raise ValueError(f"{source}: std {self.std} must be > 0")
    return self

  def to_json(self):
    return json.dumps(self.to_dict(), indent=1, sort_keys=True)

  @classmethod
  def from_json(cls, text, source="recipe"):
    try:
      d = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f"{source} is not valid JSON: {e}") from e
    return cls.from_dict(d, source)

  def save(self, folder):
    path = os.path.join(folder, RECIPE_FILE)
    with open(path, "w", encoding="utf-8") as f:
      f.write(self.to_json() + "\n")
    return path

  @classmethod
  def load(cls, path):
    """A recipe.json file, or the folder holding one."""
    if os.path.isdir(path):
      path = os.path.join(path, RECIPE_FILE)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"feature recipe {path} not found")
    with open(path, encoding="utf-8-sig") as f:
      return cls.from_json(f.read(), path)

  def describe(self):
    w = f"random weights (seed {self.seed})" if self.random_weights else f"weights {self.weights}"
    return (f"{self.extractor} ({self.output_dim}-d, one clip per {self.clip_seconds:g} s, "
            f"{self.size}px {self.resize}{' centre crop' if self.center_crop else ''}, "
            f"{'L2-normalised, ' if self.l2_normalize else ''}{w})")


# Fields that change what a feature means. `weights` itself is not compared (a preset
# downloaded by name and the same preset saved to a folder are one network); real vs
# random is.
COMPARED = ("extractor", "clip_seconds", "frame_choice", "short_video_rule", "size", "resize",
            "center_crop", "mean", "std", "std_epsilon", "output_dim", "l2_normalize",
            "random_weights")


def differences(expected: Recipe, got: Recipe):
  """[(field, expected value, got value)] over COMPARED; empty when compatible. Random
  weights also differ by seed (two random networks are unrelated)."""
  out = []
  for name in COMPARED:
    a, b = getattr(expected, name), getattr(got, name)
    if isinstance(a, float) or isinstance(b, float):
      same = abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
    elif isinstance(a, tuple):
      same = len(a) == len(b) and all(abs(x - y) <= 1e-9 for x, y in zip(a, b))
    else:
      same = a == b
    if not same:
      out.append((name, a, b))
  if expected.random_weights and got.random_weights and expected.seed != got.seed:
    out.append(("seed", expected.seed, got.seed))
  return out


def check_compatible(expected: Recipe, got: Recipe, what_expected="the model", what_got="the extraction"):
  """ValueError naming every differing field and the recipe `what_expected` needs."""
  diff = differences(expected, got)
  if not diff:
    return
  fields = "; ".join(f"{n}: {a!r} there, {b!r} here" for n, a, b in diff)
  hint = ""
  if got.random_weights and not expected.random_weights:
    hint = (" Random-weight features are for tests and timing only; extract with the real "
            f"weights ({expected.weights}).")
  raise ValueError(f"{what_got} does not match the features {what_expected} was trained on "
                   f"({fields}). It needs: {expected.describe()}.{hint}")

"""What both clients share: turning (query, features, duration) into signature inputs.

Videos of one request are zero-padded to the longest one (N <= max_video_len, longer
videos mean-pooled first); `video_length` tells the server how many steps are real.
"""

import importlib.util
import os
import sys

import numpy as np

# Run from a clone (python export/rest_client.py ...), cimha_tf is the folder above; an
# installed cimha_tf (pip install .) is found first.
if importlib.util.find_spec("cimha_tf") is None:
  sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODEL_NAME = "cimha"
SIGNATURE_TEXT = "serving_default"
SIGNATURE_TOKENS = "serving_tokens"


def batch_inputs(queries, features, durations, max_video_len):
  """Lists of B queries (str, or int token-id lists for serving_tokens), (T, Dv) feature
  arrays and durations in seconds -> dict of numpy arrays named like the signature."""
  from cimha_tf.data.pooling import pool_to_max_len
  if not (len(queries) == len(features) == len(durations)) or not queries:
    raise ValueError(f"need as many queries ({len(queries)}), feature arrays ({len(features)}) "
                     f"and durations ({len(durations)}), at least one")
  feats = [pool_to_max_len(np.asarray(f, np.float32), max_video_len) for f in features]
  n = max(f.shape[0] for f in feats)
  dims = {f.shape[1] for f in feats}
  if len(dims) != 1:
    raise ValueError(f"feature arrays have different dimensions {sorted(dims)}")
  video = np.zeros((len(feats), n, dims.pop()), np.float32)
  for b, f in enumerate(feats):
    video[b, :f.shape[0]] = f
  out = {"video_features": video,
         "video_length": np.array([f.shape[0] for f in feats], np.int32),
         "duration": np.asarray(durations, np.float32)}
  if all(isinstance(q, str) for q in queries):
    out["query"] = np.array(queries, dtype=object)
  else:
    length = max(len(q) for q in queries)
    tokens = np.zeros((len(queries), length), np.int32)
    for b, q in enumerate(queries):
      tokens[b, :len(q)] = q
    out["query_tokens"] = tokens
  return out


def windows(outputs, b, top_k=None):
  """[[start_s, end_s, score], ...] of batch row b from the signature's outputs."""
  rows = zip(outputs["start_seconds"][b], outputs["end_seconds"][b], outputs["scores"][b])
  found = [[float(s), float(e), float(p)] for s, e, p in rows if p > 0]
  return found[:top_k] if top_k else found


def _positive(kind):
  """An argparse type: a finite number > 0 of `kind` (a bad value is a command-line error,
  before any file is read; --top_k=-1 used to print all windows but the last)."""
  import argparse
  import math

  def parse(text):
    try:
      value = kind(text)
    except ValueError:
      value = None
    if value is None or not math.isfinite(value) or value <= 0:
      raise argparse.ArgumentTypeError(f"{text!r}: expected a {'whole ' * (kind is int)}"
                                       "number > 0")
    return value
  return parse


def argument_parser(doc, default_server):
  """The command line both clients share; each adds its own options."""
  import argparse
  p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--server", default=default_server)
  p.add_argument("--features", help=".npy, .npz or HDF5 feature file (or --video)")
  p.add_argument("--feature_key", default=None)
  p.add_argument("--video", help="a video file: decoded and embedded here, on the client, "
                 "with --recipe; the features are sent (docs/video.md)")
  p.add_argument("--recipe", help="with --video: the served model's feature recipe, its "
                 "export's assets.extra/cimha_export.json (or a recipe.json)")
  p.add_argument("--weights", help="with --video: where the recipe's CLIP weights are (a "
                 "preset folder, say; default: the recipe's own)")
  p.add_argument("--extractor_model", help="with --video: a user backbone (.keras / "
                 "SavedModel) the recipe names")
  p.add_argument("--query", required=True)
  p.add_argument("--duration", type=_positive(float),
                 help="video length in seconds (with --features; --video reads it)")
  p.add_argument("--max_video_len", type=_positive(int), default=128,
                 help="the served model's max_video_len (assets.extra/cimha_export.json); "
                 "longer videos are mean-pooled to it")
  p.add_argument("--top_k", type=_positive(int), default=5,
                 help="windows to print (at most the export's k)")
  return p


def check_source_args(args):
  """--features with --duration, or --video with --recipe: a ValueError otherwise."""
  if (args.features is None) == (args.video is None):
    raise ValueError("pass --features=FILE (with --duration) or --video=FILE (with --recipe)")
  if args.features is not None and args.duration is None:
    raise ValueError("--features: pass --duration=SECONDS, the video's length")
  if args.video is not None:
    if args.duration is not None:
      raise ValueError("--video: the duration comes from the video; drop --duration")
    if args.recipe is None:
      raise ValueError("--video needs --recipe: the served model's export "
                       "assets.extra/cimha_export.json (it records the features' recipe)")


def load_recipe(path):
  """The Recipe in a recipe.json or in an export's cimha_export.json (feature_recipe)."""
  from cimha_tf.common.jsonfile import read_json_object
  from cimha_tf.video.recipe import Recipe
  d = read_json_object(path, "feature recipe", "a recipe or an export's cimha_export.json")
  if "feature_recipe" in d or "max_video_len" in d:  # an export's metadata
    if not d.get("feature_recipe"):
      raise ValueError(f"{path}: the export records no feature recipe (its training features "
                       "did not come from extract_features), so a video cannot be turned into "
                       "its features; send --features")
    d = d["feature_recipe"]
  return Recipe.from_dict(d, path)


def video_features(args):
  """(features, duration) of --video, extracted on the client with --recipe."""
  from cimha_tf.video.extractor import extractor_for_recipe
  extractor = extractor_for_recipe(load_recipe(args.recipe), args.weights, args.extractor_model)
  features, reader = extractor.extract_video(args.video)
  return features, reader.duration


def inputs_from_args(args):
  """One request's inputs from the parsed command line (features pooled like the clients)."""
  check_source_args(args)
  if args.video is not None:
    features, args.duration = video_features(args)
  else:
    from cimha_tf.data.features import load_feature_file
    features = load_feature_file(args.features, args.feature_key)
  return batch_inputs([args.query], [features], [args.duration], args.max_video_len)


def run_cli(main):
  """A client's command line: bad input or an unreachable / refusing server ends it with
  one error line and exit status 1."""
  import re
  try:
    main()
  except (ValueError, FileNotFoundError, RuntimeError) as e:
    message = str(e)
    # The graph's own length check: the client pooled to --max_video_len (default 128),
    # which is not the served model's.
    limit = re.search(r"N must be <= max_video_len=(\d+)", message)
    if limit:
      message += (f" -- pass --max_video_len={limit.group(1)}, the served model's: the client "
                  "mean-pools longer videos to --max_video_len steps (default 128)")
    sys.exit(f"error: {message}")


def print_windows(args, outputs):
  import json
  print(json.dumps({"query": args.query, "windows": windows(outputs, 0, args.top_k)}, indent=1))

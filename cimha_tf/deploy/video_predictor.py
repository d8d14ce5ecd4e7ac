"""A video file and several queries -> moments, with an exported model (predict --video).

  predictor = load_predictor("EXPORT/cimha/1")
  video = encode_video(predictor, "my.mp4")               # decoded and embedded once
  result = predict_video(predictor, video, ["a person opens the door", "someone sits"])

The features are extracted with the recipe the model's training features had (the export
records it from prepare_data's metadata); a model without one (features from elsewhere,
I3D say) or with another recipe refuses, naming what it needs (video/recipe.py).
Videos longer than max_video_len clips: `long_video="pool"` mean-pools them to
max_video_len steps, as prepare_data pooled the training videos; `"window"` runs
overlapping windows of max_video_len clips and merges their candidates by score with
temporal non-maximum suppression (module docstring of `predict_video`).
"""

import dataclasses
import time
from typing import Dict, List, Optional

import numpy as np

LONG_VIDEO_MODES = ("pool", "window")


@dataclasses.dataclass
class EncodedVideo:
  path: str
  features: np.ndarray        # (clips, D) float32
  duration: float             # seconds the decoded frames cover
  recipe: object              # cimha_tf.video.recipe.Recipe
  seconds: Dict[str, float]   # {"load_extractor", "decode", "embed"}
  repairs: Dict[str, int]


def model_recipe(predictor, source="the model"):
  """The Recipe of the model's training features; ValueError when it records none."""
  from cimha_tf.video.recipe import Recipe
  d = getattr(predictor, "feature_recipe", None)
  if not d:
    raise ValueError(
        f"{source} records no feature recipe: its training features did not come from "
        "cimha_tf.extract_features (I3D / C3D / a peer's CLIP files, say), so a video cannot be "
        "turned into the features it expects. Extract your features as it was trained "
        "(--features=FILE), or train on features from extract_features (docs/video.md)")
  return Recipe.from_dict(d, f"{source}'s feature recipe")


def encode_video(predictor, path, weights=None, extractor_model=None, batch_size=32,
                 max_seconds=None, extractor=None):
  """Decodes and embeds `path` with the model's recipe. `weights` overrides where the
  recipe's CLIP weights come from (a local preset folder, say); `extractor_model` is a
  user backbone's file; `extractor` an already built Extractor (its recipe must match)."""
  from cimha_tf.video import decode as decode_lib
  from cimha_tf.video import extractor as extractor_lib
  from cimha_tf.video.recipe import check_compatible
  recipe = model_recipe(predictor)
  t0 = time.perf_counter()
  if extractor is None:
    extractor = extractor_lib.extractor_for_recipe(recipe, weights, extractor_model)
  check_compatible(recipe, extractor.recipe, "the model", f"the extractor ({extractor.recipe.describe()})")
  loaded = time.perf_counter() - t0
  feats, reader = extractor.extract_video(
      path, batch_size=batch_size,
      max_seconds=decode_lib.DEFAULT_MAX_SECONDS if max_seconds is None else max_seconds)
  return EncodedVideo(str(path), feats, reader.duration, extractor.recipe,
                      {"load_extractor": loaded, **reader.seconds}, dict(reader.repairs))


def window_starts(num_clips, length, overlap=0.5):
  """Starts of windows of `length` clips covering [0, num_clips): stride
  length * (1 - overlap) (at least 1), the last window ending at the last clip."""
  if num_clips <= length:
    return [0]
  stride = max(1, int(round(length * (1.0 - overlap))))
  starts = list(range(0, num_clips - length + 1, stride))
  if starts[-1] != num_clips - length:
    starts.append(num_clips - length)
  return starts


def temporal_nms(windows, iou_threshold):
  """[[start, end, score], ...] -> the windows kept, best first: each suppresses the
  later (lower-scored) ones overlapping it with IoU >= iou_threshold."""
  kept = []
  for w in sorted(windows, key=lambda w: -w[2]):
    if all(_iou(w, k) < iou_threshold for k in kept):
      kept.append(w)
  return kept


def _iou(a, b):
  inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
  union = max(a[1], b[1]) - min(a[0], b[0])
  return inter / union if union > 0 else float(a[0] == b[0] and a[1] == b[1])


def _decode(curves, duration, top_k):
  """Per query: [[start_s, end_s, score], ...] best first, from (Q, n) curves over a
  stretch of `duration` seconds."""
  from cimha_tf.model import decode_spans, spans_to_seconds
  q, n = curves["start_probs"].shape
  start, end, scores = decode_spans(curves["start_probs"], curves["end_probs"],
                                    np.ones((q, n), np.float32), top_k)
  s, e = spans_to_seconds(start, end, np.full((q,), duration, np.float32), np.full((q,), n))
  s, e, scores = s.numpy(), e.numpy(), scores.numpy()
  return [[[float(a), float(b), float(p)] for a, b, p in zip(s[i], e[i], scores[i]) if p > 0]
          for i in range(q)]


def predict_video(predictor, video: EncodedVideo, queries: List[str], top_k=5,
                  long_video="pool", window_overlap=0.5, nms_iou=0.5, window_top_k=None):
  """{"mode", "num_clips", "num_steps", "windows", "seconds": {"model"}, "predictions":
  [{"query", "vid", "pred_relevant_windows": [[s, e, score], ...], "pred_saliency_scores":
  [per clip], "unknown_words"}]}, the queries in one batch (a SavedModel) or one after
  another (TFLite, batch 1), on features encoded once.

  Modes: "full" (clips <= max_video_len), "pool" (mean-pooled to max_video_len steps;
  a step's saliency is given to each clip pooled into it), "window" (windows of
  max_video_len clips, stride max_video_len * (1 - window_overlap); each window's top
  window_top_k (default max(2 * top_k, 10)) candidates, shifted to the video's seconds,
  merged by score with temporal NMS at nms_iou; a clip's saliency is its mean over the
  windows covering it). Scores compare across windows as start x end probabilities, each
  window's a distribution over its own clips."""
  from cimha_tf.data.pooling import pool_to_max_len
  if long_video not in LONG_VIDEO_MODES:
    raise ValueError(f"long_video={long_video!r}: expected one of {LONG_VIDEO_MODES}")
  queries = list(queries)
  if not queries:
    raise ValueError("no query: pass at least one")
  feats = predictor.check_features(video.features, video.path)
  n, L = feats.shape[0], predictor.max_video_len
  duration = float(video.duration)
  t0 = time.perf_counter()
  if n <= L or long_video == "pool":
    mode = "full" if n <= L else "pool"
    pooled = pool_to_max_len(feats, L)
    curves = predictor.curves(pooled, queries, duration)
    windows = _decode(curves, duration, top_k)
    inside = curves["inside_probs"]
    if mode == "pool":  # clip i was pooled into bin k: starts[k] <= i < starts[k + 1]
      starts = (np.arange(L, dtype=np.int64) * n) // L
      inside = inside[:, np.searchsorted(starts, np.arange(n), side="right") - 1]
    num_windows = 1
  else:
    mode = "window"
    clip_s = duration / n
    per_window = window_top_k or max(2 * top_k, 10)
    candidates = [[] for _ in queries]
    inside_sum = np.zeros((len(queries), n), np.float64)
    covered = np.zeros((n,), np.float64)
    starts = window_starts(n, L, window_overlap)
    for s in starts:
      curves = predictor.curves(feats[s:s + L], queries, L * clip_s)
      for qi, ws in enumerate(_decode(curves, L * clip_s, per_window)):
        candidates[qi] += [[a + s * clip_s, b + s * clip_s, p] for a, b, p in ws]
      inside_sum[:, s:s + L] += curves["inside_probs"]
      covered[s:s + L] += 1
    windows = [temporal_nms(c, nms_iou)[:top_k] for c in candidates]
    for ws in windows:  # the last window's end is counted back from the duration
      for w in ws:
        w[1] = min(w[1], duration)
    inside = inside_sum / covered
    num_windows = len(starts)
  seconds = time.perf_counter() - t0
  predictions = []
  for qi, query in enumerate(queries):
    predictions.append({
        "query": query, "vid": video.path,
        "pred_relevant_windows": [[round(a, 4), round(b, 4), round(p, 4)] for a, b, p in windows[qi][:top_k]],
        "pred_saliency_scores": [round(float(v), 4) for v in inside[qi]],
        "unknown_words": predictor.unknown_words(query)})
  return {"mode": mode, "num_clips": n, "num_steps": min(n, L), "windows": num_windows,
          "duration": duration, "seconds": {"model": seconds}, "predictions": predictions}


def describe_run(video: EncodedVideo, result, max_video_len: Optional[int] = None):
  """The console line: which mode ran and the seconds per step."""
  s = {**video.seconds, **result["seconds"]}
  n = result["num_clips"]
  how = {"full": f"{n} clips <= max_video_len: the whole video in one pass",
         "pool": f"{n} clips > max_video_len {max_video_len}: mean-pooled to "
                 f"{result['num_steps']} steps (--long_video=window keeps every clip)",
         "window": f"{n} clips > max_video_len {max_video_len}: {result['windows']} overlapping "
                   "windows, candidates merged with NMS"}[result["mode"]]
  return (f"{video.path}: {result['duration']:.2f} s, {how}; seconds: load extractor "
          f"{s['load_extractor']:.2f}, decode {s['decode']:.2f}, embed {s['embed']:.2f}, "
          f"model {s['model']:.2f} ({len(result['predictions'])} queries)")

"""Many videos -> a feature folder prepare_data reads (the library behind extract_features).

OUTPUT/VIDEO.npz        key `features`, float32 (clips, D): the npz_dir layout
OUTPUT/durations.json   {VIDEO: {"duration": s, "num_clips": n, "source": path}}: the
                        form of Charades-STA's charades.json (charades_sta.load_durations
                        reads it); for a JSONL of queries, its `duration` field
OUTPUT/recipe.json      the feature recipe (prepare_data copies it into metadata.json)
OUTPUT/failed.json      {VIDEO: {"reason", "error"}}: the videos that could not be read

Resume: a video whose .npz and durations entry exist is skipped (overwrite=True redoes
it); a folder written under another recipe is refused rather than mixed. Every file is
written whole or not at all (a temporary name, then a rename).
"""

import json
import os
import time

import numpy as np

from cimha_tf.video import decode as decode_lib
from cimha_tf.video.recipe import RECIPE_FILE, Recipe, check_compatible

DURATIONS_FILE = "durations.json"
FAILED_FILE = "failed.json"
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv",
                  ".wmv", ".3gp", ".ts", ".ogv")
LIST_SUFFIXES = (".txt", ".lst", ".list")


def list_videos(videos):
  """[(video id, path)] from a folder (its video files, sorted), one video file, or a
  list file (.txt: one path per line, relative to the list's folder; # comments)."""
  videos = os.fspath(videos)
  if os.path.isdir(videos):
    names = sorted(n for n in os.listdir(videos) if n.lower().endswith(VIDEO_SUFFIXES))
    if not names:
      raise ValueError(f"--videos={videos}: no video file in the folder (suffixes "
                       f"{', '.join(VIDEO_SUFFIXES)})")
    paths = [os.path.join(videos, n) for n in names]
  elif os.path.isfile(videos) and videos.lower().endswith(LIST_SUFFIXES):
    base = os.path.dirname(os.path.abspath(videos))
    paths = []
    with open(videos, encoding="utf-8-sig") as f:
      for line in f:
        line = line.strip()
        if line and not line.startswith("#"):
          paths.append(line if os.path.isabs(line) else os.path.join(base, line))
    if not paths:
      raise ValueError(f"--videos={videos}: the list names no video")
  elif os.path.isfile(videos):
    paths = [videos]
  else:
    raise FileNotFoundError(f"--videos={videos}: no such file or folder")
  out, seen = [], {}
  for p in paths:
    vid = os.path.splitext(os.path.basename(p))[0]
    if vid in seen:
      raise ValueError(f"videos {seen[vid]} and {p} have the same id {vid!r} (the file name "
                       "without its suffix names the features): rename one")
    seen[vid] = p
    out.append((vid, p))
  return out


def _write_json(path, obj):
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def _read_json(path):
  if not os.path.isfile(path):
    return {}
  from cimha_tf.common.jsonfile import read_json_object
  return read_json_object(path, "feature folder")


def save_features(path, features):
  tmp = path + ".tmp.npz"
  np.savez(tmp, features=np.asarray(features, np.float32))
  os.replace(tmp, path)


def extract_videos(videos, output, extractor, batch_size=32, overwrite=False,
                   max_seconds=decode_lib.DEFAULT_MAX_SECONDS, progress=True):
  """Extracts every video of `videos` (list_videos) into `output`. Returns the summary:
  {"videos", "extracted", "skipped_existing", "failed": {vid: {...}}, "clips", "repairs",
  "seconds": {"decode+embed": s}}; unreadable videos are counted there and in failed.json,
  never dropped silently."""
  items = list_videos(videos)
  os.makedirs(output, exist_ok=True)
  recipe_path = os.path.join(output, RECIPE_FILE)
  if os.path.isfile(recipe_path):
    old = Recipe.load(recipe_path)
    try:
      check_compatible(old, extractor.recipe, f"the folder {output}", "this extraction")
    except ValueError as e:
      if not overwrite:
        raise ValueError(f"{e} Use another --output, or --overwrite to redo every video "
                         "under the new recipe") from None
      for vid in _read_json(os.path.join(output, DURATIONS_FILE)):
        p = os.path.join(output, vid + ".npz")
        if os.path.exists(p):
          os.remove(p)
      _write_json(os.path.join(output, DURATIONS_FILE), {})
  extractor.recipe.save(output)
  durations_path = os.path.join(output, DURATIONS_FILE)
  durations = _read_json(durations_path)
  failed_path = os.path.join(output, FAILED_FILE)
  failed = {}
  summary = {"videos": len(items), "extracted": 0, "skipped_existing": 0, "failed": failed,
             "clips": 0, "repairs": {}, "recipe": extractor.recipe.to_dict()}
  todo = []
  for vid, path in items:
    npz = os.path.join(output, vid + ".npz")
    if not overwrite and os.path.isfile(npz) and vid in durations:
      summary["skipped_existing"] += 1
    else:
      todo.append((vid, path))
  bar = None
  if progress:
    from tqdm import tqdm
    bar = tqdm(total=len(todo), unit="video", desc="extract", dynamic_ncols=True)
  start = time.perf_counter()
  for vid, path in todo:
    try:
      feats, reader = extractor.extract_video(path, batch_size=batch_size, max_seconds=max_seconds)
    except (decode_lib.VideoError, ValueError) as e:
      reason = getattr(e, "reason", "extractor_error")
      failed[vid] = {"path": path, "reason": reason, "error": str(e)}
      if bar is not None:
        bar.write(f"FAILED {vid}: {e}")
    else:
      save_features(os.path.join(output, vid + ".npz"), feats)
      durations[vid] = {"duration": round(reader.duration, 6), "num_clips": int(feats.shape[0]),
                        "source": os.path.abspath(path)}
      _write_json(durations_path, durations)  # after each video: an interrupted run resumes
      summary["extracted"] += 1
      summary["clips"] += int(feats.shape[0])
      for k, n in reader.repairs.items():
        summary["repairs"][k] = summary["repairs"].get(k, 0) + n
    if bar is not None:
      bar.update(1)
      bar.set_postfix(clips=summary["clips"], failed=len(failed))
  if bar is not None:
    bar.close()
  summary["seconds"] = round(time.perf_counter() - start, 3)
  if failed:
    old = _read_json(failed_path)
    old.update(failed)
    _write_json(failed_path, old)
  elif os.path.exists(failed_path):
    still = {k: v for k, v in _read_json(failed_path).items() if k not in durations}
    if still:
      _write_json(failed_path, still)
    else:
      os.remove(failed_path)
  return summary


def format_summary(summary, output):
  lines = [f"{summary['videos']} videos: {summary['extracted']} extracted "
           f"({summary['clips']} clips, {summary['seconds']:.1f} s), "
           f"{summary['skipped_existing']} already there (skipped; --overwrite redoes them), "
           f"{len(summary['failed'])} failed"]
  for vid, f in sorted(summary["failed"].items()):
    lines.append(f"  failed {vid} ({f['reason']}): {f['error']}")
  if summary["repairs"]:
    lines.append(f"  repairs (docs/video.md): {summary['repairs']}")
  lines.append(f"features, {DURATIONS_FILE} and {RECIPE_FILE} in {output}")
  return "\n".join(lines)

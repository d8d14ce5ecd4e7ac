"""TACoS (2D-TAN's version): `train.json`, `val.json`, `test.json`.

Each file is `{VIDEO: {"timestamps": [[start_frame, end_frame], ...], "sentences": [...],
"fps": f, "num_frames": n}}`. Seconds = frame / fps; duration = num_frames / fps, so an
end frame past num_frames is clipped like any end past the duration ("end_clipped").
qid = the query's index in the file.
"""

import math
import os
from typing import Dict, List, Tuple

from cimha_tf.data.annotations.activitynet_captions import video_queries
from cimha_tf.common.jsonfile import read_json_object
from cimha_tf.data.annotations.repair import add_query
from cimha_tf.data.records import QueryRecord, ReadReport

SPLITS = ("train", "val", "test")


def read_split(path: str) -> Tuple[List[QueryRecord], ReadReport]:
  data = read_json_object(path, "TACoS")
  records, report = [], ReadReport(source=path)
  for vid, info in data.items():
    queries = video_queries(path, vid, info, ("timestamps", "sentences", "fps", "num_frames"))
    try:
      fps, num_frames = float(info["fps"]), float(info["num_frames"])
    except (TypeError, ValueError):
      raise ValueError(f"{path}: video {vid!r}: fps {info['fps']!r} / num_frames "
                       f"{info['num_frames']!r} must be numbers") from None
    if not (math.isfinite(fps) and fps > 0):
      raise ValueError(f"{path}: video {vid!r}: fps must be a positive number, got {info['fps']!r}")
    for (start, end), sentence in queries:
      add_query(records, report, report.read, vid, num_frames / fps, sentence, [(start / fps, end / fps)])
  report.check()
  return records, report


def read(folder: str) -> Dict[str, Tuple[List[QueryRecord], ReadReport]]:
  missing = [os.path.join(folder, f"{s}.json") for s in SPLITS
             if not os.path.isfile(os.path.join(folder, f"{s}.json"))]
  if missing:
    raise FileNotFoundError(f"TACoS folder {folder}: missing {', '.join(missing)}")
  return {s: read_split(os.path.join(folder, f"{s}.json")) for s in SPLITS}

"""ActivityNet Captions (VSLNet's copy): `train.json`, `val_1.json`, `val_2.json`.

Each file is `{VIDEO: {"duration": s, "timestamps": [[s, e], ...], "sentences": [...]}}`.
Splits are the files present, in that order. qid = the query's index in the file.
"""

import os
from typing import Dict, List, Tuple

from cimha_tf.data.annotations.repair import add_query, parse_window
from cimha_tf.common.jsonfile import read_json_object
from cimha_tf.data.records import QueryRecord, ReadReport

SPLITS = ("train", "val_1", "val_2")


def video_queries(path: str, vid: str, info, required=("timestamps", "sentences")):
  """Checks one video entry's fields; -> list of (window, sentence)."""
  if not isinstance(info, dict):
    raise ValueError(f"{path}: video {vid!r}: expected an object, got {type(info).__name__}")
  for key in required:
    if key not in info:
      raise ValueError(f"{path}: video {vid!r} has no {key!r} field")
  stamps, sentences = info["timestamps"], info["sentences"]
  if not isinstance(stamps, list) or not isinstance(sentences, list) or len(stamps) != len(sentences):
    raise ValueError(f"{path}: video {vid!r}: expected lists 'timestamps' and 'sentences' of equal "
                     f"length, got {len(stamps) if isinstance(stamps, list) else stamps!r} and "
                     f"{len(sentences) if isinstance(sentences, list) else sentences!r}")
  out = []
  for i, (stamp, sentence) in enumerate(zip(stamps, sentences)):
    if not isinstance(sentence, str):
      raise ValueError(f"{path}: video {vid!r} sentence {i}: expected a string, got {sentence!r}")
    out.append((parse_window(stamp, f"{path}: video {vid!r} timestamp {i}"), sentence))
  return out


def read_split(path: str) -> Tuple[List[QueryRecord], ReadReport]:
  data = read_json_object(path, "ActivityNet Captions")
  records, report = [], ReadReport(source=path)
  for vid, info in data.items():
    queries = video_queries(path, vid, info, ("duration", "timestamps", "sentences"))
    try:
      duration = float(info["duration"])
    except (TypeError, ValueError):
      raise ValueError(f"{path}: video {vid!r} duration {info['duration']!r} is not a number") from None
    for window, sentence in queries:
      add_query(records, report, report.read, vid, duration, sentence, [window])
  report.check()
  return records, report


def read(folder: str) -> Dict[str, Tuple[List[QueryRecord], ReadReport]]:
  present = [s for s in SPLITS if os.path.isfile(os.path.join(folder, f"{s}.json"))]
  if not present:
    raise FileNotFoundError(f"ActivityNet Captions folder {folder}: none of "
                            f"{', '.join(s + '.json' for s in SPLITS)} found")
  return {s: read_split(os.path.join(folder, f"{s}.json")) for s in present}

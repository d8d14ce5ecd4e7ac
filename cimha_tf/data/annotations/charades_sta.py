"""Charades-STA (TALL split, VSLNet's copy): `charades_sta_{train,test}.txt` + `charades.json`.

Annotation lines are `VIDEO start end##sentence` (seconds); durations come from
charades.json, `{VIDEO: {"subset", "duration", "actions"}}`. qid = the query's index
among the split file's lines that hold a query (blank lines are not queries).
"""

import os
from typing import Dict, List, Tuple

from cimha_tf.data.annotations.repair import add_query
from cimha_tf.common.jsonfile import numbered_text_lines, read_json_object
from cimha_tf.data.records import QueryRecord, ReadReport

SPLITS = ("train", "test")
DURATIONS_FILE = "charades.json"


def split_file(split: str) -> str:
  return f"charades_sta_{split}.txt"


def load_durations(path: str) -> Dict[str, float]:
  data = read_json_object(path, "Charades-STA durations",
                          expected="an object {VIDEO: {\"duration\": seconds, ...}}")
  durations = {}
  for vid, info in data.items():
    if not isinstance(info, dict) or "duration" not in info:
      raise ValueError(f"{path}: video {vid!r} has no \"duration\" field")
    try:
      durations[vid] = float(info["duration"])
    except (TypeError, ValueError):
      raise ValueError(f"{path}: video {vid!r} duration {info['duration']!r} is not a number") from None
  return durations


def read_split(path: str, durations: Dict[str, float], durations_path: str = DURATIONS_FILE
               ) -> Tuple[List[QueryRecord], ReadReport]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"Charades-STA annotation file {path} not found")
  records, report = [], ReadReport(source=path)
  qid = 0
  for lineno, line in numbered_text_lines(path):
    if not line.strip():
      continue
    head, sep, sentence = line.partition("##")
    fields = head.split()
    try:
      if not sep or len(fields) != 3:
        raise ValueError
      vid, start, end = fields[0], float(fields[1]), float(fields[2])
    except ValueError:
      raise ValueError(f"{path}:{lineno}: expected 'VIDEO start end##sentence', got {line!r}") from None
    if vid not in durations:
      raise ValueError(f"{path}:{lineno}: video {vid!r} is not in {durations_path}")
    add_query(records, report, qid, vid, durations[vid], sentence, [(start, end)])
    qid += 1
  report.check()
  return records, report


def read(folder: str) -> Dict[str, Tuple[List[QueryRecord], ReadReport]]:
  durations_path = os.path.join(folder, DURATIONS_FILE)
  missing = [p for p in [durations_path] + [os.path.join(folder, split_file(s)) for s in SPLITS]
             if not os.path.isfile(p)]
  if missing:
    raise FileNotFoundError(f"Charades-STA folder {folder}: missing {', '.join(missing)}")
  durations = load_durations(durations_path)
  return {s: read_split(os.path.join(folder, split_file(s)), durations, durations_path) for s in SPLITS}

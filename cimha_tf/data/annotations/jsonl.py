"""moment_detr / lighthouse JSONL: one query per line,
`{"qid": int, "query": str, "vid": str, "duration": s, "relevant_windows": [[s, e], ...]}`
(other fields, e.g. saliency scores, are ignored). Any new dataset can come in this format.

`path` is one .jsonl file or a folder of them (sorted by name). Split name = file stem,
except QVHighlights' `highlight_X_release.jsonl` -> "X". qid = the file's own qid, which
must be a unique integer within the file.
"""

import glob
import math
import os
import re
from typing import Dict, List, Tuple

from cimha_tf.data.annotations.repair import add_query, parse_window
from cimha_tf.data.records import QueryRecord, ReadReport
from cimha_tf.common.jsonfile import numbered_jsonl_rows

_QVH_NAME = re.compile(r"^highlight_(.+)_release$")


def split_name(path: str) -> str:
  stem = os.path.splitext(os.path.basename(path))[0]
  m = _QVH_NAME.match(stem)
  return m.group(1) if m else stem


def _field(path, lineno, obj, key, types, what):
  if key not in obj:
    raise ValueError(f"{path}:{lineno}: missing field {key!r} ({what})")
  value = obj[key]
  if not isinstance(value, types) or isinstance(value, bool):
    raise ValueError(f"{path}:{lineno}: field {key!r} must be {what}, got {value!r}")
  return value


def read_split(path: str) -> Tuple[List[QueryRecord], ReadReport]:
  records, report = [], ReadReport(source=path)
  seen = {}
  for lineno, obj in numbered_jsonl_rows(path, "JSONL annotation"):
    qid = _field(path, lineno, obj, "qid", (int, float), "an integer query id")
    if not math.isfinite(qid) or qid != int(qid):  # json reads NaN / Infinity as floats
      raise ValueError(f"{path}:{lineno}: field 'qid' must be an integer, got {qid!r}")
    qid = int(qid)
    if qid in seen:
      raise ValueError(f"{path}:{lineno}: qid {qid} already used on line {seen[qid]}")
    seen[qid] = lineno
    query = _field(path, lineno, obj, "query", str, "the query sentence (a string)")
    vid = _field(path, lineno, obj, "vid", str, "the video id (a string)")
    duration = _field(path, lineno, obj, "duration", (int, float), "the video duration in seconds")
    windows = _field(path, lineno, obj, "relevant_windows", list, "a list of [start, end] windows in seconds")
    windows = [parse_window(w, f"{path}:{lineno}: relevant_windows[{i}]") for i, w in enumerate(windows)]
    add_query(records, report, qid, vid, duration, query, windows)
  report.check()
  return records, report


def read(path: str) -> Dict[str, Tuple[List[QueryRecord], ReadReport]]:
  if os.path.isdir(path):
    files = sorted(glob.glob(os.path.join(path, "*.jsonl")))
    if not files:
      raise FileNotFoundError(f"JSONL folder {path} holds no *.jsonl file")
  elif os.path.isfile(path):
    files = [path]
  else:
    raise FileNotFoundError(f"JSONL annotations {path} not found (expected a .jsonl file or a folder of them)")
  out = {}
  for file in files:
    name = split_name(file)
    if name in out:
      raise ValueError(f"two files in {path} map to split {name!r}")
    out[name] = read_split(file)
  return out

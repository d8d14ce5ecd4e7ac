"""moment_detr / lighthouse JSONL: one query per line,
`{"qid": int, "query": str, "vid": str, "duration": s, "relevant_windows": [[s, e], ...]}`
(other fields, e.g. saliency scores, are ignored). Any new dataset can come in this format.

`path` is one .jsonl file or a folder of them (sorted by name). Split name = file stem,
except QVHighlights' `highlight_X_release.jsonl` -> "X". qid = the file's own qid, which
must be a unique integer within the file that fits int64 (the prepared records' type).
A video's duration must be the same on every line that names it, in every file: two
durations would label one feature sequence on two timelines, so they are an error naming
both lines (both files and qids across files).
"""

import glob
import math
import os
import re
from typing import Dict, List, Tuple

from cimha_tf.data.annotations.repair import add_query, parse_window
from cimha_tf.data.records import QueryRecord, ReadReport
from cimha_tf.common.jsonfile import numbered_jsonl_rows

_INT64_MIN, _INT64_MAX = -2**63, 2**63 - 1
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
  seen, durations = {}, {}
  for lineno, obj in numbered_jsonl_rows(path, "JSONL annotation"):
    qid = _field(path, lineno, obj, "qid", (int, float), "an integer query id")
    if not math.isfinite(qid) or qid != int(qid):  # json reads NaN / Infinity as floats
      raise ValueError(f"{path}:{lineno}: field 'qid' must be an integer, got {qid!r}")
    qid = int(qid)
    if not _INT64_MIN <= qid <= _INT64_MAX:
      raise ValueError(f"{path}:{lineno}: field 'qid' must fit a signed 64-bit integer "
                       f"(the prepared records' type), got {qid}")
    if qid in seen:
      raise ValueError(f"{path}:{lineno}: qid {qid} already used on line {seen[qid]}")
    seen[qid] = lineno
    query = _field(path, lineno, obj, "query", str, "the query sentence (a string)")
    vid = _field(path, lineno, obj, "vid", str, "the video id (a string)")
    duration = _field(path, lineno, obj, "duration", (int, float), "the video duration in seconds")
    first = durations.setdefault(vid, (duration, lineno))
    if first[0] != duration and not (math.isnan(first[0]) and math.isnan(duration)):
      raise ValueError(f"{path}:{lineno}: video {vid!r} has duration {duration!r}, but "
                       f"{first[0]!r} on line {first[1]}; one video has one duration")
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
  out, durations = {}, {}
  for file in files:
    name = split_name(file)
    if name in out:
      raise ValueError(f"two files in {path} map to split {name!r}")
    out[name] = read_split(file)
    for r in out[name][0]:  # across split files too: one video, one duration
      first = durations.setdefault(r.vid, (r.duration, file, r.qid))
      if first[0] != r.duration:
        raise ValueError(f"{file}: video {r.vid!r} has duration {r.duration!r} (qid {r.qid}), but "
                         f"{first[0]!r} in {first[1]} (qid {first[2]}); one video has one duration")
  return out

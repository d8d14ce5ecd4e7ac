"""The moment_detr / lighthouse JSONL files: predictions (written by evaluate) and ground truth.

Prediction line: {"qid", "query", "vid", "pred_relevant_windows": [[s, e, score], ...]
(seconds, best first), "pred_saliency_scores": [...]}. Ground-truth line:
`QueryRecord.to_json()` ({"qid", "query", "vid", "duration", "relevant_windows"}), plus
"relevant_clip_ids" / "saliency_scores" in QVHighlights. Every error names file:line.
Windows must be finite with 0 <= start <= end; an end past the video's duration is scored
as given, not clipped (as moment_detr's scorer; its sample predictions have two).
"""

import json
import math
import os
import pathlib

import numpy as np

from cimha_tf.common.jsonfile import numbered_jsonl_rows

PRED_KEYS = ("qid", "pred_relevant_windows")
GT_KEYS = ("qid", "relevant_windows")


def read_jsonl(path):
  """List of dicts, one per non-blank line; malformed lines raise ValueError naming file:line."""
  return [row for _, row in _numbered_rows(path)]


def _numbered_rows(path):
  return numbered_jsonl_rows(path, "JSONL")


def _where(path, line, row):
  return f"{path}:{line} (qid {row.get('qid')!r})"


def _check_number_list(values, where, key):
  if not isinstance(values, list):
    raise ValueError(f"{where}: '{key}' must be a list, got {type(values).__name__}")
  # One numpy pass (saliency lists are long); dtype kind rejects None, strings, nesting and
  # all-bool lists, but numpy reads a bool among numbers as 1, hence the explicit scan.
  try:
    arr = np.asarray(values)
  except ValueError:
    arr = np.asarray(values, dtype=object)  # ragged nesting
  if values and (arr.ndim != 1 or arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr))
                 or any(isinstance(v, bool) for v in values)):
    bad = next((v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))
                or not math.isfinite(v)), values)
    raise ValueError(f"{where}: '{key}' holds {bad!r}, expected finite numbers")


def _check_windows(windows, where, key, width):
  if not isinstance(windows, list):
    raise ValueError(f"{where}: '{key}' must be a list of windows, got {type(windows).__name__}")
  names = "[start, end, score]" if width == 3 else "[start, end]"
  for w in windows:
    if not isinstance(w, list) or len(w) != width:
      raise ValueError(f"{where}: '{key}' holds {w!r}, expected {names} in seconds")
    _check_number_list(w, where, key)
    if w[0] > w[1]:
      raise ValueError(f"{where}: '{key}' window {w!r} has start > end")
    if w[0] < 0:
      raise ValueError(f"{where}: '{key}' window {w!r} starts before 0 s")


def _check_rows(numbered, path, required, windows_key, width):
  """Validates [(line, row)] and returns the rows; errors name path:line and the qid."""
  seen = {}
  for line, row in numbered:
    where = _where(path, line, row)
    for key in required:
      if key not in row:
        raise ValueError(f"{where}: missing key '{key}' (expected {list(required)})")
    qid = row["qid"]
    if not isinstance(qid, (int, str)) or isinstance(qid, bool):
      raise ValueError(f"{where}: 'qid' must be an int or string")
    if qid in seen:
      raise ValueError(f"{where}: duplicate qid {qid!r}, first at line {seen[qid]}")
    seen[qid] = line
    _check_windows(row[windows_key], where, windows_key, width)
    if not row[windows_key]:  # the scorer has no reading of an empty list (moment_detr crashes)
      raise ValueError(f"{where}: '{windows_key}' is empty (each query needs at least one window)")
    if windows_key == "pred_relevant_windows" and "pred_saliency_scores" in row:
      _check_number_list(row["pred_saliency_scores"], where, "pred_saliency_scores")
  return [row for _, row in numbered]


def read_predictions(path):
  """Validated prediction rows: unique qids, at least one [s, e, score] each, finite
  saliency scores."""
  return _check_rows(_numbered_rows(path), path, PRED_KEYS, "pred_relevant_windows", 3)


def read_ground_truth(path):
  """Validated ground-truth rows: unique qids, at least one [s, e] window each."""
  rows = _check_rows(_numbered_rows(path), path, GT_KEYS, "relevant_windows", 2)
  if not rows:
    raise ValueError(f"{path}: no ground-truth rows")
  return rows


def _plain(value):
  """numpy scalars / arrays -> JSON types (tolist() handles both)."""
  return value.tolist() if hasattr(value, "tolist") else value


def write_predictions(path, rows):
  """Write prediction rows as JSONL (atomically: a crash leaves no half file). Returns path.

  Each row needs 'qid' and 'pred_relevant_windows' ([[s, e, score], ...], best first);
  numpy values are converted. Bad rows raise ValueError naming the row index.
  """
  path = pathlib.Path(path)
  lines = []
  for i, row in enumerate(rows):
    row = {k: _plain(v) for k, v in row.items()}
    _check_rows([(f"row {i}", row)], path, PRED_KEYS, "pred_relevant_windows", 3)
    lines.append(json.dumps(row))
  qids = [json.loads(line)["qid"] for line in lines]
  if len(set(qids)) != len(qids):
    raise ValueError(f"{path}: duplicate qids among the rows to write")
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "w", encoding="utf-8") as f:
    f.write("".join(line + "\n" for line in lines))
  os.replace(tmp, path)
  return path


def match_qids(pred_rows, gt_rows):
  """(qids in predictions but not ground truth, ground-truth qids without predictions)."""
  pred_qids = {r["qid"] for r in pred_rows}
  gt_qids = {r["qid"] for r in gt_rows}
  return sorted(pred_qids - gt_qids, key=str), sorted(gt_qids - pred_qids, key=str)


def check_same_videos(qid2pred, gt_rows, source):
  """ValueError if a prediction names another video than its qid's ground truth (rows
  without "vid" match by qid alone): qids count from 0 in every split and dataset, so a
  matching qid alone does not make it the query."""
  other = [(g["qid"], qid2pred[g["qid"]]["vid"], g["vid"]) for g in gt_rows
           if g["qid"] in qid2pred and "vid" in g
           and qid2pred[g["qid"]].get("vid", g["vid"]) != g["vid"]]
  if other:
    q, pv, gv = other[0]
    raise ValueError(f"{source}: {len(other)} predicted qids name another video than the ground"
                     f" truth's, e.g. qid {q!r}: {pv!r} vs {gv!r} (predictions of another split or"
                     " dataset?)")

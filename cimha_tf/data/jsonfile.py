"""Reading a JSON object from disk with errors that name the file and what was expected."""

import json
import os


def read_json_object(path: str, what: str, expected: str = "a JSON object keyed by video id") -> dict:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{what} file {path} not found")
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path} is not valid JSON: {e}") from e
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected {expected}")
  return data


def numbered_jsonl_rows(path, what: str = "JSONL"):
  """[(line number, dict)] of a JSONL file, blank lines skipped; errors name file:line."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{what} file {path} not found")
  rows = []
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{line_no}: not valid JSON ({e.msg} at column {e.colno})") from None
      if not isinstance(row, dict):
        raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
      rows.append((line_no, row))
  return rows

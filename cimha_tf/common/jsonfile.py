"""Reading a JSON object from disk with errors that name the file and what was expected."""

import json
import os
import re

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


def read_json_object(path: str, what: str, expected: str = "a JSON object keyed by video id") -> dict:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{what} file {path} not found")
  try:
    with open(path, encoding="utf-8-sig") as f:  # a byte-order mark is allowed
      data = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path} is not valid JSON: {e}") from e
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected {expected}")
  return data


def numbered_text_lines(path):
  """(line number, text without its line break) of a UTF-8 text file; a line that is not
  UTF-8 raises a ValueError naming file:line (a text-mode file decodes in blocks, so its
  error would name neither)."""
  with open(path, "rb") as f:
    data = f.read()
  # A UTF-8 byte-order mark (Windows editors write one) is not part of the first line: kept,
  # it made the first video id '\ufeffID' and the line an "unknown video".
  data = data.removeprefix(b"\xef\xbb\xbf")
  for line_no, raw in enumerate(_LINE_BREAK.split(data), 1):  # text mode's universal newlines
    try:
      yield line_no, raw.decode("utf-8")
    except UnicodeDecodeError as e:
      raise ValueError(f"{path}:{line_no}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at "
                       f"column {e.start + 1}); annotation files must be UTF-8") from None


def numbered_jsonl_rows(path, what: str = "JSONL"):
  """[(line number, dict)] of a JSONL file, blank lines skipped; errors name file:line."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{what} file {path} not found")
  rows = []
  for line_no, line in numbered_text_lines(path):
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

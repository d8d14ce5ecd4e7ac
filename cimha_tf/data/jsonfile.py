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

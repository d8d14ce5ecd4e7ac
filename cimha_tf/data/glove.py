"""GloVe embedding matrix for a vocabulary, from the standard text format.

One pass over the file (glove.840B.300d.txt is 5.6 GB: it is streamed, never held), keeping
only vocabulary words. Rules, as documented for users:
  * The vector width is `dim`, or by default read from the first line (see `infer_dim`).
  * A line is `TOKEN v1 ... v_dim`, single-space separated. The vector is the last `dim`
    fields; everything before, joined by spaces, is the token, so glove.840B's tokens that
    contain spaces (". . .", "at name@domain.com") are read correctly.
  * The first line must hold a token and `dim` values: fewer values, or a line whose fields
    after the first are all numbers beyond `dim` (a vector of another dimension), is a clear
    error. A word2vec header "COUNT DIM" as the first line is skipped if DIM == dim.
  * Later bad lines (the same two defects, non-numeric or non-finite values, a token that is
    not UTF-8) are skipped and counted ("bad_lines", with a few examples by line number).
  * glove.840B is cased, vocabularies are lower-case: an exact match wins; otherwise the first
    line whose token lower-cases to the word is used ("case_fallback"). A repeated token
    keeps its first vector ("duplicates").
  * Row 0 (padding) is zeros. Words not found, and the unknown-word row 1, are drawn from
    normal(0, 0.1) with `seed` (counted in "missing", first examples listed).
"""

import os
from typing import Dict, Optional, Tuple

import numpy as np
from tqdm import tqdm

from cimha_tf.data.text import PAD_ID, UNK_ID, Vocabulary

MISSING_STD = 0.1
_EXAMPLES = 10
_PROGRESS_CHUNK = 1 << 22


def _vector(values: bytes, dim):
  try:
    vec = np.array(values.decode("ascii").split(" "), dtype=np.float32)
  except (UnicodeDecodeError, ValueError):
    return None
  return vec if vec.shape == (dim,) and np.isfinite(vec).all() else None


def infer_dim(path: str) -> int:
  """The vector width from the first line: a word2vec header's DIM, else the fields after the
  token (the token being the leading non-numeric fields, at least one)."""
  with open(path, "rb") as f:
    fields = f.readline().rstrip(b" \r\n").split(b" ")
  if len(fields) == 2 and all(x.isdigit() for x in fields):
    return int(fields[1])
  token_fields = 1
  while token_fields < len(fields) and not _is_number(fields[token_fields]):
    token_fields += 1
  dim = len(fields) - token_fields
  if dim < 1:
    raise ValueError(f"{path}:1: expected `TOKEN v1 ... vD`, got {len(fields)} field(s)")
  return dim


def load_glove(path: str, vocab: Vocabulary, dim: Optional[int] = None, seed: int = 0,
               progress: bool = True) -> Tuple[np.ndarray, Dict]:
  """-> (float32 (len(vocab), dim) matrix, report dict). See the module docstring.

  dim=None (the default) takes the width from the file's first line (`infer_dim`): 300 for
  glove.840B.300d.txt, 50 for the demo's synthetic file. An explicit dim is checked against
  the first line (a clear error on mismatch).
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"GloVe file {path} not found")
  if dim is None:
    dim = infer_dim(path)
  if dim < 1:
    raise ValueError(f"dim must be >= 1, got {dim}")
  wanted = {t: i for i, t in enumerate(vocab.tokens) if i not in (PAD_ID, UNK_ID)}
  exact, by_case = {}, {}   # vocab id -> vector
  report = {"path": path, "dim": dim, "lines": 0, "bad_lines": 0, "bad_line_examples": [],
            "duplicates": 0}
  done = 0
  with open(path, "rb") as f, tqdm(total=os.path.getsize(path), unit="B", unit_scale=True,
                                   desc="GloVe", disable=not progress) as bar:
    for lineno, raw in enumerate(f, 1):
      done += len(raw)
      if done >= _PROGRESS_CHUNK:
        bar.update(done)
        done = 0
      report["lines"] += 1
      line = raw.rstrip(b" \r\n")
      spaces = line.count(b" ")
      if lineno == 1:
        fields = line.split(b" ")
        if len(fields) == 2 and all(x.isdigit() for x in fields):
          if int(fields[1]) != dim:
            raise ValueError(f"{path}:1: header says dimension {int(fields[1])}, expected dim={dim}")
          continue   # word2vec-style header "COUNT DIM"
        if spaces < dim or _numeric_head(line, dim):
          raise ValueError(f"{path}:1: expected a token and {dim} values (dim={dim}), got "
                           f"{spaces} values; is the file's dimension {spaces}?")
      if spaces < dim:
        _bad(report, lineno, f"{spaces} values, expected {dim}")
        continue
      if spaces > dim and _numeric_head(line, dim):
        _bad(report, lineno, f"{spaces} values, expected {dim}")
        continue
      # Cheap path for the usual one-field token; the 840B's spaced tokens take rsplit.
      head = line[:line.index(b" ")] if spaces == dim else line.rsplit(b" ", dim)[0]
      try:
        token = head.decode("utf-8")
      except UnicodeDecodeError:
        _bad(report, lineno, "token is not valid UTF-8")
        continue
      target, idx = exact, wanted.get(token)
      if idx is None:
        idx = wanted.get(token.lower())
        if idx is None or idx in by_case:
          continue
        target = by_case
      elif idx in exact:
        report["duplicates"] += 1
        continue
      vec = _vector(line[len(head) + 1:], dim)
      if vec is None:
        _bad(report, lineno, "non-numeric or non-finite values")
        continue
      target[idx] = vec
    bar.update(done)

  case_fallback = sum(1 for idx in by_case if idx not in exact)
  rng = np.random.default_rng(seed)
  matrix = np.zeros((len(vocab), dim), np.float32)
  missing = []
  for token, idx in sorted(wanted.items(), key=lambda kv: kv[1]):
    vec = exact.get(idx, by_case.get(idx))
    if vec is None:
      missing.append(token)
      vec = rng.normal(0.0, MISSING_STD, size=dim)
    matrix[idx] = vec
  matrix[UNK_ID] = rng.normal(0.0, MISSING_STD, size=dim)
  report.update({
      "vocab_size": len(vocab), "words": len(wanted), "found": len(wanted) - len(missing),
      "case_fallback": case_fallback, "missing": len(missing), "missing_examples": missing[:_EXAMPLES],
      "missing_init": f"normal(0, {MISSING_STD}), seed {seed}",
  })
  if report["bad_lines"]:
    print(f"GloVe {path}: skipped {report['bad_lines']} bad lines, e.g. {report['bad_line_examples'][:3]}")
  return matrix, report


def _numeric_head(line: bytes, dim: int) -> bool:
  """True when the fields before the last `dim` are numbers after the first: a longer vector
  (wrong dim), not a token with spaces."""
  extra = line.rsplit(b" ", dim)[0].split(b" ")[1:]
  if not extra:
    return False
  return all(_is_number(x) for x in extra)


def _is_number(field: bytes) -> bool:
  try:
    float(field)
  except ValueError:
    return False
  return True


def _bad(report, lineno, why):
  report["bad_lines"] += 1
  if len(report["bad_line_examples"]) < _EXAMPLES:
    report["bad_line_examples"].append(f"line {lineno}: {why}")

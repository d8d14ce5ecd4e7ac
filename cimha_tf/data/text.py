"""Tokenizer and vocabulary for queries.

Tokenizer rule (`tokenize`): lower-case the text (str.lower), then take every match of
`TOKEN_PATTERN`, left to right:
  * a word: a run of word characters, optionally joined by inner apostrophes
    (' or U+2019), e.g. "person's", "don't". Word characters are a-z, 0-9 and the
    Latin-1 / Latin Extended-A/B letters U+00C0..U+024F (minus the signs x and ÷),
    so "piñata" and "café" stay one word;
  * a punctuation token: any single printable ASCII character that is not a letter,
    digit or space ("." "," "'" "-" "#" ...), one token per character.
Everything else is dropped: all whitespace, control characters, and non-ASCII symbols
(curly double quotes, bullets, currency signs...). The real Charades-STA and ActivityNet
queries hold only these non-ASCII characters: ñ é á (kept inside words), ’ (an
apostrophe: inside a word it joins, elsewhere it is dropped), “ ” • £ (dropped).

The pattern is RE2-compatible (no lookarounds, no backreferences, explicit character
classes instead of \\w / \\s, whose meaning differs between Python and RE2), so
tf.strings.regex_* ops in a serving graph reproduce it exactly. The non-ASCII letters are
literal characters in the pattern string, which both engines read as code points.
"""

import json
import re
from collections import Counter
from typing import Iterable, List

import numpy as np

from cimha_tf.common.jsonfile import read_json_object

_WORD_CHAR = "[a-z0-9\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]"
_APOSTROPHE = "['\u2019]"
# Printable ASCII minus letters, digits and space: ! to /, : to @, [ to `, { to ~.
_PUNCT = "[!-/:-@\\[-`{-~]"
TOKEN_PATTERN = f"{_WORD_CHAR}+(?:{_APOSTROPHE}{_WORD_CHAR}+)*|{_PUNCT}"
_TOKEN_RE = re.compile(TOKEN_PATTERN)

PAD_ID = 0
UNK_ID = 1
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"


def tokenize(text: str) -> List[str]:
  """Lower-case, then all matches of TOKEN_PATTERN (see the module docstring)."""
  if not isinstance(text, str):
    raise TypeError(f"tokenize expects a str, got {type(text).__name__}")
  return _TOKEN_RE.findall(text.lower())


class Vocabulary:
  """Token list; a token's id is its index. 0 is padding, 1 the unknown word."""

  def __init__(self, tokens: List[str]):
    tokens = list(tokens)
    if tokens[:2] != [PAD_TOKEN, UNK_TOKEN]:
      raise ValueError(f"vocabulary must start with {PAD_TOKEN!r}, {UNK_TOKEN!r}; got {tokens[:2]}")
    index = {}
    for i, t in enumerate(tokens):
      if not isinstance(t, str) or not t:
        raise ValueError(f"vocabulary entry {i} is {t!r}: expected a non-empty string")
      if t in index:
        raise ValueError(f"vocabulary token {t!r} appears twice (ids {index[t]} and {i})")
      index[t] = i
    self.tokens = tokens
    self._index = index

  @classmethod
  def build(cls, texts: Iterable[str], min_count: int = 1) -> "Vocabulary":
    """From the training texts: tokens seen >= min_count times, by count desc then alphabetically."""
    if min_count < 1:
      raise ValueError(f"min_count must be >= 1, got {min_count}")
    counts = Counter()
    for text in texts:
      counts.update(tokenize(text))
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return cls([PAD_TOKEN, UNK_TOKEN] + [w for w in words if w not in (PAD_TOKEN, UNK_TOKEN)])

  def __len__(self) -> int:
    return len(self.tokens)

  def __contains__(self, token) -> bool:
    return token in self._index

  def ids(self, tokens: Iterable[str]) -> List[int]:
    """Token strings -> ids; unknown tokens -> UNK_ID."""
    return [self._index.get(t, UNK_ID) for t in tokens]

  def encode(self, text: str, max_len: int) -> np.ndarray:
    """(max_len,) int32: the first max_len token ids, zero-padded.

    A text without any token (empty, only spaces or dropped symbols) is an error: the
    model has nothing to condition on, and PAD-only queries would be fully masked.
    """
    if max_len < 1:
      raise ValueError(f"max_len must be >= 1, got {max_len}")
    tokens = tokenize(text)
    if not tokens:
      raise ValueError(f"query {text!r} has no tokens (empty or only ignored characters)")
    out = np.zeros((max_len,), np.int32)
    ids = self.ids(tokens[:max_len])
    out[:len(ids)] = ids
    return out

  def save(self, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
      json.dump({"tokens": self.tokens}, f, ensure_ascii=False)

  @classmethod
  def load(cls, path: str) -> "Vocabulary":
    data = read_json_object(path, "vocabulary", expected='a JSON object {"tokens": [...]}')
    if not isinstance(data.get("tokens"), list):
      raise ValueError(f"vocabulary file {path}: expected a JSON object {{\"tokens\": [...]}}")
    try:
      return cls(data["tokens"])
    except ValueError as e:
      raise ValueError(f"vocabulary file {path}: {e}") from e

"""The one annotation record every dataset reader produces (lighthouse-style).

A reader turns its benchmark's files into `QueryRecord`s plus a `ReadReport` that
accounts for every query read: read = kept + sum(dropped.values()).
"""

import collections
import dataclasses
from typing import List, Tuple


@dataclasses.dataclass
class QueryRecord:
  qid: int                      # unique within a split
  vid: str                      # video id; the key into the feature store
  duration: float               # seconds
  query: str                    # the sentence, as in the file (stripped)
  windows: List[Tuple[float, float]]  # relevant windows in seconds, start <= end, inside [0, duration]

  def to_json(self):
    """The moment_detr / lighthouse JSONL form (also the scorer's ground-truth form)."""
    return {"qid": self.qid, "query": self.query, "vid": self.vid,
            "duration": self.duration, "relevant_windows": [list(w) for w in self.windows]}


@dataclasses.dataclass
class ReadReport:
  source: str                   # file(s) read
  read: int = 0
  kept: int = 0
  repaired: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  dropped: collections.Counter = dataclasses.field(default_factory=collections.Counter)

  def check(self):
    total = self.kept + sum(self.dropped.values())
    if total != self.read:
      raise AssertionError(f"{self.source}: read {self.read} != kept {self.kept} + dropped {total - self.kept}")

  def to_json(self):
    return {"source": self.source, "read": self.read, "kept": self.kept,
            "repaired": dict(self.repaired), "dropped": dict(self.dropped)}

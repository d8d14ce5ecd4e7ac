"""The repairs every reader applies, in one place, so all benchmarks are treated alike.

Window rules (seconds, video duration T), applied in this order:
  * non-finite start or end          -> window dropped ("non_finite_window")
  * start > end                      -> swapped ("swapped")
  * start >= T, end < 0, or end == 0 < -start (no overlap with [0, T))
                                     -> window dropped ("outside_video")
  * start < 0                        -> clipped to 0 ("start_clipped")
  * end > T                          -> clipped to T ("end_clipped")
  * start == end (zero length)       -> kept ("zero_length_kept"): it becomes a
                                        one-step moment via timeline.seconds_to_steps
A query is dropped when its video's duration is not a positive finite number that float32
(the prepared records' type) holds as a normal number, 1.2e-38 to 3.4e38 s ("bad_duration":
1e300 would become inf and 1e-300 zero), its sentence has no token ("empty_query", see text.tokenize), or none
of its windows survives (the window's reason; "no_valid_window" for several windows).
"""

import collections
import math
from typing import List, Optional, Sequence, Tuple

from cimha_tf.common.timeline import is_valid_duration
from cimha_tf.data.records import QueryRecord, ReadReport
from cimha_tf.data.text import tokenize


def repair_window(start: float, end: float, duration: float, repaired) -> Tuple[Optional[Tuple[float, float]], str]:
  """-> ((start, end) or None, drop reason). Counts repairs into the `repaired` Counter."""
  if not (math.isfinite(start) and math.isfinite(end)):
    return None, "non_finite_window"
  if start > end:
    start, end = end, start
    repaired["swapped"] += 1
  if start >= duration or end < 0 or (end == 0 and start < 0):
    return None, "outside_video"
  if start < 0:
    start = 0.0
    repaired["start_clipped"] += 1
  if end > duration:
    end = float(duration)
    repaired["end_clipped"] += 1
  if start == end:
    repaired["zero_length_kept"] += 1
  return (float(start), float(end)), ""


def add_query(records: List[QueryRecord], report: ReadReport, qid: int, vid: str, duration,
              query: str, windows: Sequence[Tuple[float, float]]) -> None:
  """Accounts for one query read: appends its repaired record or counts why it was dropped."""
  report.read += 1
  duration = float(duration)
  if not is_valid_duration(duration):
    report.dropped["bad_duration"] += 1
    return
  query = query.strip()
  if not tokenize(query, 1):
    report.dropped["empty_query"] += 1
    return
  kept, reason, repaired = [], "no_valid_window", collections.Counter()
  for start, end in windows:
    window, reason = repair_window(float(start), float(end), duration, repaired)
    if window is None:
      repaired[f"window_dropped_{reason}"] += 1
    else:
      kept.append(window)
  if not kept:
    report.dropped[reason if len(windows) == 1 else "no_valid_window"] += 1
    return
  report.repaired.update(repaired)
  records.append(QueryRecord(qid=qid, vid=vid, duration=duration, query=query, windows=kept))
  report.kept += 1


def parse_window(value, where: str) -> Tuple[float, float]:
  """[start, end] from JSON -> floats, or a ValueError naming `where`.

  Only JSON numbers: a string ("2_0" would parse as 20) or a boolean (true as 1.0) is
  refused, as a string duration is.
  """
  if not (isinstance(value, (list, tuple)) and len(value) == 2):
    raise ValueError(f"{where}: expected a window [start, end], got {value!r}")
  if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
    raise ValueError(f"{where}: window values must be JSON numbers, got {value!r}")
  return float(value[0]), float(value[1])

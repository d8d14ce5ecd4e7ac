"""What predict and the serving clients print: one query's answer as JSON, in the field's
keys (moment_detr / lighthouse, the prediction rows `evaluate --predictions` scores):
`pred_relevant_windows` [[start_s, end_s, score], ...] best first, and
`pred_saliency_scores`, the model's inside probability per video step.

Scores are kept to 4 significant digits (a decoding score is P_start * P_end, often
around 1e-3: fixed decimals would print 0.00), seconds to 0.01 s (a step is 0.5 s or
more for the usual features), and each window gets its own line, so five windows take
seven lines instead of thirty.
"""

import json
import math


def round_significant(x, digits=4):
  """x with `digits` significant digits (0 stays 0)."""
  x = float(x)
  return float(f"{x:.{digits}g}") if math.isfinite(x) and x else x


def windows_field(windows):
  """[[start_s, end_s, score], ...] with seconds to 0.01 s and scores to 4 significant digits."""
  return [[round(float(s), 2), round(float(e), 2), round_significant(p)] for s, e, p in windows]


def saliency_field(inside_probs):
  return [round_significant(p) for p in inside_probs]


def result(query, windows, inside_probs=None, **extra):
  """The printed record: {"query", **extra, "pred_relevant_windows", "pred_saliency_scores"}
  (the saliency list only where the model's inside curve is given)."""
  record = {"query": query, **extra, "pred_relevant_windows": windows_field(windows)}
  if inside_probs is not None:
    record["pred_saliency_scores"] = saliency_field(inside_probs)
  return record


def dumps(record):
  """JSON text of a record: one key per line, and the window list one window per line
  (json.loads reads it back unchanged)."""
  lines = []
  for key, value in record.items():
    if key == "pred_relevant_windows" and value:
      rows = ",\n".join(f"  {json.dumps(w)}" for w in value)
      lines.append(f' {json.dumps(key)}: [\n{rows}\n ]')
    else:
      lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
  return "{\n" + ",\n".join(lines) + "\n}"

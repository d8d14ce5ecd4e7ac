"""The one mapping between feature steps and seconds (docs/paper.md, "Training details").

Step i of a video of duration T with n valid steps covers seconds [i*T/n, (i+1)*T/n].
Labels (data preparation) and decoding (model, evaluation, serving) both use these
functions, so a window that lies on step boundaries survives seconds -> steps -> seconds
exactly.

`steps_to_seconds` is plain arithmetic, so it works on numpy arrays and on TF / Keras
tensors alike (it runs inside serving graphs). `seconds_to_steps` is data-side (numpy).
"""

import numpy as np


def steps_to_seconds(start_step, end_step, duration, num_steps):
  """Window [start_step, end_step] (inclusive step indices) -> (start_s, end_s).

  The end is counted back from the duration, so a window ending on the last step ends at
  exactly `duration`: (end_step + 1) * step rounds past it in float32 about 4% of the time."""
  step = duration / num_steps
  return start_step * step, duration - (num_steps - 1 - end_step) * step


def seconds_to_steps(start_s, end_s, duration, num_steps):
  """Window in seconds -> inclusive (start_step, end_step) over `num_steps` valid steps.

  The start step is the step containing start_s; the end step is the last step that the
  window enters (end_s on a step boundary does not enter the next step). A zero-length
  or sub-step window becomes a one-step moment. Values are clipped to [0, num_steps-1];
  callers are expected to have clipped seconds to [0, duration] and counted that repair.
  """
  start_s = np.asarray(start_s, np.float64)
  end_s = np.asarray(end_s, np.float64)
  scale = num_steps / float(duration)
  # Tolerance so that values produced by steps_to_seconds (with rounding) map back exactly.
  eps = 1e-6
  start = np.floor(start_s * scale + eps).astype(np.int64)
  end = np.ceil(end_s * scale - eps).astype(np.int64) - 1
  start = np.clip(start, 0, num_steps - 1)
  end = np.clip(np.maximum(end, start), 0, num_steps - 1)
  return start, end


def inside_mask(start_step, end_step, num_steps, max_len):
  """(max_len,) float32 labels: 1 inside [start, end], 0 outside, -1 on padded steps."""
  t = np.arange(max_len)
  labels = ((t >= start_step) & (t <= end_step)).astype(np.float32)
  labels[num_steps:] = -1.0
  return labels

"""Small coloured videos with known moments, for the notebook's "your own video" section and
the tests: grey frames with a red and a blue stretch; the queries "the screen turns red" /
"the screen turns blue" name them. Written with PyAV (FFV1 in Matroska, lossless)."""

import json
import os
from fractions import Fraction

import numpy as np

GREY, RED, BLUE = (90, 90, 90), (220, 30, 30), (30, 30, 220)
QUERIES = {"the screen turns red": RED, "the screen turns blue": BLUE}


def write_coloured_video(path, seconds, segments, fps=4, width=32, height=24):
  """A grey video of `seconds` with stretches {colour: (start_s, end_s)}; returns path."""
  import av
  tb = Fraction(1, 1000)
  with av.open(path, "w", format="matroska") as out:
    stream = out.add_stream("ffv1", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
    stream.time_base = stream.codec_context.time_base = tb
    for i in range(int(round(seconds * fps))):
      t = i / fps
      colour = next((c for c, (s, e) in segments.items() if s <= t < e), GREY)
      frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), colour, np.uint8),
                                         format="rgb24").reformat(format="yuv444p")
      frame.pts, frame.time_base = int(round(t * 1000)), tb
      for packet in stream.encode(frame):
        out.mux(packet)
    for packet in stream.encode():
      out.mux(packet)
  return path


def write_coloured_videos(folder, counts=(("train", 12), ("val", 3), ("test", 3)), seed=0,
                          fps=4):
  """Videos of 16-24 s into `folder`; returns {vid: (split, {query: (start_s, end_s)})}."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  plan = {}
  for split, count in counts:
    for v in range(count):
      seconds = float(rng.integers(8, 13) * 2)
      a, b = (float(x) for x in sorted(rng.choice(np.arange(0, seconds - 4, 2.0), 2, replace=False)))
      red, blue = (a, a + 4.0), (b, min(b + 4.0, seconds))
      if b < a + 4.0:  # overlapping: the blue one follows the red one, or comes first
        blue = (a + 4.0, min(a + 8.0, seconds)) if a + 6.0 <= seconds else (max(a - 4.0, 0.0), a)
      vid = f"{split}{v:02d}"
      write_coloured_video(os.path.join(folder, vid + ".mkv"), seconds, {RED: red, BLUE: blue}, fps)
      plan[vid] = (split, {"the screen turns red": red, "the screen turns blue": blue})
  return plan


def write_queries(folder, plan, durations):
  """SPLIT.jsonl files (moment_detr's format) for `plan`, durations from extract_features'
  durations.json; returns the folder (prepare_data --dataset=jsonl --annotations=it)."""
  os.makedirs(folder, exist_ok=True)
  rows, qid = {}, 0
  for vid, (split, moments) in plan.items():
    for query, (s, e) in moments.items():
      rows.setdefault(split, []).append({"qid": qid, "query": query, "vid": vid,
                                         "duration": durations[vid]["duration"],
                                         "relevant_windows": [[s, e]]})
      qid += 1
  for split, lines in rows.items():
    with open(os.path.join(folder, f"{split}.jsonl"), "w") as f:
      f.write("".join(json.dumps(r) + "\n" for r in lines))
  return folder

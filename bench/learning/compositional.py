"""Compositional planted moments in Charades-STA's on-disk layout (issue 22's held-out kind).

Every query is "a person VERB the OBJECT." and its moment is where BOTH the verb's and the
object's planted directions are present: a video holds 2-3 actions, and its other actions
often share the query's verb or its object (never both), so neither word alone nor the
video alone finds the moment. No GloVe file (word vectors are learned from scratch), and
the features differ from the demo's (cimha_tf.data.synthetic) in width, noise level and
kind: 256-d by default, temporally smooth noise (AR(1), as clip features are; `ar=0` for
i.i.d.), a per-video offset (`offset_std=0` for none), and the signal is the sum of two unit directions of amplitude 1 against a noise of
`noise` per dimension (the demo: one strong 512-d signal vector per action).

Layout under out_dir (what prepare_data --dataset=charades_sta reads, no --glove):
  annotations/charades_sta_{train,test}.txt   `VID start end##a person VERB the OBJECT.`
  annotations/charades.json                   {VID: {"subset", "duration", "actions"}}
  features/VID.npy                            float32 (T, dim)
  planted.npz                                 the planted unit directions and each video's
                                              offset (what the oracle is told)

The oracle (`oracle_metrics`) is told what was planted: per step it projects the features
(less the video's offset) on the verb's and the object's direction, takes the smaller
projection less half the amplitude, and answers the run with the largest sum (the steps
where both are present); on noise-free data it scores ~100, and its score at a noise
level is the ceiling a learned model is measured against. Everything is drawn from numpy's Generator seeded with `seed`.
"""

import json
import os
from typing import Dict, List

import numpy as np

from cimha_tf.common.timeline import seconds_to_steps, steps_to_seconds
from cimha_tf.data.annotations import charades_sta
from cimha_tf.data.synthetic import _place_windows
from cimha_tf.evaluation import metrics as metrics_lib

VERBS = ("opens", "closes", "holds", "takes", "puts down", "throws", "washes", "tidies",
         "fixes", "looks at")
OBJECTS = ("door", "cup", "book", "box", "towel", "phone", "laptop", "bag", "pillow",
           "blanket", "shoe", "sandwich")
STEPS = (32, 160)           # valid steps per video, uniform (some pooled at max_video_len 128)
DURATION = (12.0, 48.0)     # seconds, uniform
WINDOW_FRACTION = (0.10, 0.30)
SHARE_PROB = 0.8            # another action of the video shares the verb or the object
QUERY_PROB = 0.85           # each planted action gets a query with this probability
AR = 0.7                    # AR(1) coefficient of the per-step noise (temporal smoothness)
THRESHOLD = 0.5             # oracle: fraction of the amplitude both projections must exceed
PLANTED = "planted.npz"


def sentence(verb: int, obj: int) -> str:
  return f"a person {VERBS[verb]} the {OBJECTS[obj]}."


def parse_sentence(text: str):
  """(verb index, object index) of a query written by `sentence` (ValueError otherwise)."""
  body = text.strip().rstrip(".")
  prefix = "a person "
  if body.startswith(prefix):
    rest = body[len(prefix):]
    for v, verb in enumerate(VERBS):
      if rest.startswith(verb + " the "):
        obj = rest[len(verb) + len(" the "):]
        if obj in OBJECTS:
          return v, OBJECTS.index(obj)
  raise ValueError(f"query {text!r} is not 'a person VERB the OBJECT.' of this generator")


def _actions(rng, k):
  """k distinct (verb, object) pairs; after the first, each shares the verb or the object
  of an earlier one with probability SHARE_PROB (the query's words alone are ambiguous)."""
  out = []
  while len(out) < k:
    if out and rng.random() < SHARE_PROB:
      v, o = out[rng.integers(len(out))]
      if rng.random() < 0.5:
        o = int(rng.integers(len(OBJECTS)))
      else:
        v = int(rng.integers(len(VERBS)))
    else:
      v, o = int(rng.integers(len(VERBS))), int(rng.integers(len(OBJECTS)))
    if (v, o) not in out:
      out.append((v, o))
  return out


def _noise(rng, n, dim, std, ar=AR):
  """(n, dim) AR(1) noise with stationary per-dimension std `std`."""
  e = rng.normal(0.0, std * np.sqrt(1.0 - ar * ar), size=(n, dim))
  x = np.empty_like(e)
  x[0] = rng.normal(0.0, std, size=dim)
  for t in range(1, n):
    x[t] = ar * x[t - 1] + e[t]
  return x


def _video(rng, verb_dirs, obj_dirs, noise, ar=AR, offset_std=None):
  """-> (features (n, dim) float32, offset (dim,), duration, [(verb, object, start_s, end_s)])."""
  n = int(rng.integers(STEPS[0], STEPS[1] + 1))
  duration = round(float(rng.uniform(*DURATION)), 2)
  step_s = duration / n
  min_gap = 1 + int(np.ceil(0.1 / step_s))  # rounding to 0.1 s never merges windows
  k = int(rng.integers(2, 4))
  dim = verb_dirs.shape[1]
  offset = rng.normal(0.0, noise if offset_std is None else offset_std, size=dim)
  x = _noise(rng, n, dim, noise, ar) + offset
  planted = []
  for (v, o), (s, e) in zip(_actions(rng, k), _place_windows(rng, n, k, min_gap, False,
                                                             WINDOW_FRACTION)):
    start_s, end_s = round(s * step_s, 1), round((e + 1) * step_s, 1)
    i, j = (int(t) for t in seconds_to_steps(start_s, end_s, duration, n))
    amp = rng.uniform(0.8, 1.2, size=(j - i + 1, 1))
    x[i:j + 1] += amp * (verb_dirs[v] + obj_dirs[o])
    planted.append((v, o, start_s, end_s))
  return x.astype(np.float32), offset, duration, planted


def _unit_rows(rng, count, dim):
  d = rng.normal(size=(count, dim))
  return d / np.linalg.norm(d, axis=1, keepdims=True)


def generate(out_dir: str, seed: int = 0, num_train: int = 600, num_test: int = 200,
             dim: int = 256, noise: float = 0.42, ar: float = AR,
             offset_std=None) -> Dict[str, str]:
  """Writes the set (module docstring); -> {"annotations", "features"} folders.

  noise: per-dimension std of the feature noise, against unit-amplitude directions (the
  oracle's test R1@0.5 with the AR(1) default: 100 at 0, ~97 at 0.3, ~87 at 0.42, ~74 at
  0.5, ~51 at 0.7; with ar=0: ~92 at 0.45, ~84 at 0.52, ~80 at 0.55, ~67 at 0.65).
  ar: AR(1) coefficient of the noise in time (0: i.i.d. per step).
  offset_std: per-dimension std of each video's constant offset (None: `noise`)."""
  if num_train < 1 or num_test < 1:
    raise ValueError(f"num_train={num_train}, num_test={num_test}: expected >= 1 each")
  if dim < 2 or noise < 0:
    raise ValueError(f"dim={dim}, noise={noise}: expected dim >= 2 and noise >= 0")
  rng = np.random.default_rng(seed)
  ann_dir, feat_dir = os.path.join(out_dir, "annotations"), os.path.join(out_dir, "features")
  os.makedirs(ann_dir, exist_ok=True)
  os.makedirs(feat_dir, exist_ok=True)
  verb_dirs, obj_dirs = _unit_rows(rng, len(VERBS), dim), _unit_rows(rng, len(OBJECTS), dim)
  durations, offsets, index = {}, {}, 0
  for split, count, subset in (("train", num_train, "training"), ("test", num_test, "testing")):
    lines = []
    for _ in range(count):
      vid = f"CMP{index:05d}"
      index += 1
      x, offsets[vid], duration, planted = _video(rng, verb_dirs, obj_dirs, noise, ar, offset_std)
      np.save(os.path.join(feat_dir, f"{vid}.npy"), x)
      durations[vid] = {"subset": subset, "duration": duration,
                        "actions": [[v * len(OBJECTS) + o, s, e] for v, o, s, e in planted]}
      asked = [p for p in planted if rng.random() < QUERY_PROB] or [planted[0]]
      for v, o, s, e in asked:
        lines.append(f"{vid} {s:.1f} {e:.1f}##{sentence(v, o)}\n")
    with open(os.path.join(ann_dir, charades_sta.split_file(split)), "w", encoding="utf-8") as f:
      f.writelines(lines)
  with open(os.path.join(ann_dir, charades_sta.DURATIONS_FILE), "w", encoding="utf-8") as f:
    json.dump(durations, f)
  np.savez(os.path.join(out_dir, PLANTED), verbs=verb_dirs, objects=obj_dirs,
           **{f"offset_{vid}": o for vid, o in offsets.items()})
  return {"annotations": ann_dir, "features": feat_dir}


def _max_subarray(values):
  """Inclusive (start, end) of the contiguous run with the largest sum (Kadane; first on ties)."""
  best, best_sum, start, run = (0, 0), -np.inf, 0, 0.0
  for t, v in enumerate(values):
    if run <= 0:
      start, run = t, 0.0
    run += v
    if run > best_sum:
      best, best_sum = (start, t), run
  return best


def oracle_window(features, offset, verb_dir, obj_dir):
  """Step window the oracle answers: per step the smaller of the two projections (the
  video's planted offset removed) less THRESHOLD, and the run with the largest sum of it,
  i.e. the steps where both directions are present, robust to single noisy steps."""
  x = features - offset
  return _max_subarray(np.minimum(x @ verb_dir, x @ obj_dir) - THRESHOLD)


def oracle_predictions(out_dir: str, split: str = "test") -> List[dict]:
  """Rows {qid, vid, duration, window, truth} of the oracle on SPLIT (qid as prepare gives)."""
  planted = np.load(os.path.join(out_dir, PLANTED))
  ann_dir = os.path.join(out_dir, "annotations")
  durations = charades_sta.load_durations(os.path.join(ann_dir, charades_sta.DURATIONS_FILE))
  records, _ = charades_sta.read_split(os.path.join(ann_dir, charades_sta.split_file(split)),
                                       durations)
  rows, cache = [], {}
  for r in records:
    if r.vid not in cache:
      cache = {r.vid: np.load(os.path.join(out_dir, "features", f"{r.vid}.npy"))}
    x = cache[r.vid]
    v, o = parse_sentence(r.query)
    i, j = oracle_window(x, planted[f"offset_{r.vid}"], planted["verbs"][v], planted["objects"][o])
    s, e = steps_to_seconds(i, j, r.duration, len(x))
    rows.append({"qid": r.qid, "vid": r.vid, "duration": r.duration,
                 "window": (float(s), float(e)), "truth": tuple(r.windows[0])})
  return rows


def oracle_metrics(out_dir: str, split: str = "test") -> Dict[str, float]:
  """R1/R5 at IoU 0.3/0.5/0.7 and mIoU (percent) of the oracle on SPLIT."""
  rows = oracle_predictions(out_dir, split)
  return metrics_lib.moment_metrics([np.asarray([r["window"]]) for r in rows],
                                    [np.asarray([r["truth"]]) for r in rows])

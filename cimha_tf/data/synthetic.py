"""A synthetic dataset with planted moments, written in Charades-STA's on-disk format.

Layout under out_dir (what a Charades-STA user has, so it goes through the real prepare path):
  annotations/charades_sta_train.txt, charades_sta_test.txt   lines `VID start end##sentence`
  annotations/charades.json    {VID: {"subset", "duration", "actions": [[class, start, end]]}}
  features/VID.npy             float32 (T, feature_dim) clip features
  glove.synthetic.<dim>d.txt   GloVe text format, covering the vocabulary

How it is planted. Each action of `ACTIONS` has a random signal vector. A video of T steps
holds 3 or 4 different actions in non-overlapping windows (each 12-28% of the video, at
random places, separated by at least one step); its features are per-step Gaussian noise
plus a per-video offset, plus the action's signal (amplitude jittered per step) on the steps
of its window. Each query names one of the video's actions, in varied sentence templates,
so the moment can be found only by reading both the video (where) and the query (which).
The steps of a window are those that `timeline.seconds_to_steps` gives for the written
(rounded) seconds, i.e. exactly the steps the training labels will mark.

Lengths vary: 25% of videos have 24-64 steps, 50% 65-128, 25% 129-256 (so pooling to 128
steps is exercised); durations are 15-45 s. A few videos (`defect_fraction`, and always the
first) get their last action at the very end, annotated with an end past the duration, as
in 15% of real Charades-STA lines: the reader clips it back to the planted window.
The GloVe file carries some of glove.840B's quirks: tokens with spaces (". . ."), a cased
duplicate listed before the lower-case word, a word present only in cased form, a repeated
word, a non-ASCII word.
Everything is drawn from one numpy Generator seeded with `seed`: same arguments, same bytes.
"""

import json
import os
from typing import Dict, Optional

import numpy as np
from tqdm import tqdm

from cimha_tf.data.text import tokenize
from cimha_tf.common.timeline import seconds_to_steps

# (third person present, -ing form); pairs share objects so that the verb matters too.
ACTIONS = (
    ("opens the door", "opening the door"),
    ("closes the door", "closing the door"),
    ("sits on a chair", "sitting on a chair"),
    ("turns on the light", "turning on the light"),
    ("turns off the light", "turning off the light"),
    ("drinks from a cup", "drinking from a cup"),
    ("eats a sandwich", "eating a sandwich"),
    ("reads a book", "reading a book"),
    ("puts a book on a shelf", "putting a book on a shelf"),
    ("plays on a phone", "playing on a phone"),
    ("washes the dishes", "washing the dishes"),
    ("throws a pillow", "throwing a pillow"),
    ("takes off their shoes", "taking off their shoes"),
    ("folds a towel", "folding a towel"),
    ("looks out the window", "looking out the window"),
    ("laughs at the television", "laughing at the television"),
)
SUBJECTS = ("person", "a person", "the person", "someone", "a man", "a woman")
TEMPLATES = ("{subj} {pres}.", "{subj} is {ing}.", "{Subj} {pres}.", "then {subj} {pres}.",
             "{subj} {pres} in the room.", "{Subj} is {ing}.")
STEP_RANGES = ((24, 64), (65, 128), (129, 256))
STEP_RANGE_PROBS = (0.25, 0.5, 0.25)
DURATION_RANGE = (15.0, 45.0)
WINDOW_FRACTION = (0.12, 0.28)


def action_index(sentence: str) -> int:
  """The index in ACTIONS of the action a synthetic query names (ValueError if none)."""
  low = sentence.lower()
  for i, (pres, ing) in enumerate(ACTIONS):
    if pres in low or ing in low:
      return i
  raise ValueError(f"sentence {sentence!r} names no synthetic action")


def _place_windows(rng, n, k, min_gap, touch_end, fraction=WINDOW_FRACTION):
  """k non-overlapping step windows [s, e] in n steps, >= min_gap free steps between them,
  each a random `fraction` (low, high) of the video."""
  lengths = np.maximum(3, np.round(rng.uniform(*fraction, size=k) * n)).astype(int)
  budget = n - min_gap * (k - 1)
  if lengths.sum() > 0.9 * budget:
    lengths = np.maximum(3, np.floor(lengths * 0.9 * budget / lengths.sum())).astype(int)
  free = budget - lengths.sum()
  # Free steps split into k + 1 gaps (before, between, after); touch_end empties the last.
  weights = rng.random(k + 1)
  if touch_end:
    weights[-1] = 0.0
  gaps = np.floor(free * weights / weights.sum()).astype(int)
  if touch_end:
    gaps[-2] += free - gaps.sum()
  windows, t = [], 0
  for i in range(k):
    t += gaps[i] + (min_gap if i else 0)
    windows.append((t, t + lengths[i] - 1))
    t += lengths[i]
  return windows


def _sentence(rng, action):
  pres, ing = ACTIONS[action]
  subj = SUBJECTS[rng.integers(len(SUBJECTS))]
  template = TEMPLATES[rng.integers(len(TEMPLATES))]
  return template.format(subj=subj, Subj=subj[0].upper() + subj[1:], pres=pres, ing=ing)


def _video(rng, signals, noise_std, touch_end):
  """-> (features (n, D), duration, [(action, start_s, end_s, end_written_s)])."""
  lo, hi = STEP_RANGES[rng.choice(len(STEP_RANGES), p=STEP_RANGE_PROBS)]
  n = int(rng.integers(lo, hi + 1))
  duration = round(float(rng.uniform(*DURATION_RANGE)), 2)
  step_s = duration / n
  # Written seconds are rounded to 0.1 s: keep enough free steps that rounding never merges windows.
  min_gap = 1 + int(np.ceil(0.1 / step_s))
  k = int(rng.integers(3, 5))
  actions = rng.choice(len(ACTIONS), size=k, replace=False)
  dim = signals.shape[1]
  x = rng.normal(0.0, noise_std, size=(n, dim)) + rng.normal(0.0, 0.5 * noise_std, size=(1, dim))
  planted = []
  for a, (s, e) in zip(actions, _place_windows(rng, n, k, min_gap, touch_end)):
    start_s = round(s * step_s, 1)
    end_s = round((e + 1) * step_s, 1)
    written_end = end_s
    if touch_end and e == n - 1:
      end_s = duration
      written_end = round(duration + float(rng.uniform(0.3, 3.0)), 1)
    i, j = (int(v) for v in seconds_to_steps(start_s, end_s, duration, n))
    x[i:j + 1] += rng.uniform(0.8, 1.2, size=(j - i + 1, 1)) * signals[a]
    planted.append((int(a), start_s, end_s, written_end))
  return x.astype(np.float32), duration, planted


def _fmt(v):
  return f"{v:.1f}"


def _write_glove(path, words, dim, rng):
  vec = lambda: " ".join(f"{v:.5f}" for v in rng.normal(0.0, 0.4, size=dim))
  words = sorted(words)
  only_cased = "television" if "television" in words else words[-1]
  quirks_before = [(w, vec()) for w in (". . .", "Person", "café")]   # 840B: spaces, case, non-ASCII
  lines = quirks_before + [(w if w != only_cased else only_cased.capitalize(), vec()) for w in words]
  lines += [("- - -", vec()), (words[0], vec())]                     # a repeated word: the first wins
  with open(path, "w", encoding="utf-8") as f:
    for token, values in lines:
      f.write(f"{token} {values}\n")


def write_synthetic_dataset(out_dir: str, num_train_videos: int = 300, num_test_videos: int = 60,
                            queries_per_video: int = 4, feature_dim: int = 512, glove_dim: int = 300,
                            seed: int = 0, num_videos: Optional[int] = None, noise_std: float = 1.0,
                            signal_strength: float = 1.0, defect_fraction: float = 0.05,
                            progress: bool = True) -> Dict[str, str]:
  """Writes the dataset (see the module docstring); -> {"annotations", "features", "glove"} paths.

  num_videos, when given, overrides both split sizes: one sixth (at least 1) is the test split.
  signal_strength scales the per-dimension action signal relative to noise_std.
  """
  if num_videos is not None:
    num_test_videos = max(1, int(round(num_videos / 6)))
    num_train_videos = num_videos - num_test_videos
  if num_train_videos < 1 or num_test_videos < 1:
    raise ValueError(f"need at least one train and one test video, got {num_train_videos} / {num_test_videos}")
  if queries_per_video < 1 or feature_dim < 1 or glove_dim < 1:
    raise ValueError("queries_per_video, feature_dim and glove_dim must be >= 1")
  rng = np.random.default_rng(seed)
  ann_dir = os.path.join(out_dir, "annotations")
  feat_dir = os.path.join(out_dir, "features")
  os.makedirs(ann_dir, exist_ok=True)
  os.makedirs(feat_dir, exist_ok=True)
  signals = rng.normal(0.0, signal_strength * noise_std, size=(len(ACTIONS), feature_dim))

  durations, words, index = {}, set(), 0
  bar = tqdm(total=num_train_videos + num_test_videos, desc="synthetic videos", disable=not progress)
  for split, count, subset in (("train", num_train_videos, "training"), ("test", num_test_videos, "testing")):
    lines = []
    for v in range(count):
      vid = f"SYN{index:04d}"
      touch_end = v == 0 or rng.random() < defect_fraction
      x, duration, planted = _video(rng, signals, noise_std, touch_end)
      np.save(os.path.join(feat_dir, f"{vid}.npy"), x)
      durations[vid] = {"subset": subset, "duration": duration,
                        "actions": [[a, s, e] for a, s, e, _ in planted]}
      # Every action of the video gets a query before any gets a second one.
      for p in rng.permutation(queries_per_video) % len(planted):
        a, start_s, _, written_end = planted[p]
        sentence = _sentence(rng, a)
        words.update(tokenize(sentence))
        lines.append(f"{vid} {_fmt(start_s)} {_fmt(written_end)}##{sentence}\n")
      index += 1
      bar.update(1)
    with open(os.path.join(ann_dir, f"charades_sta_{split}.txt"), "w", encoding="utf-8") as f:
      f.writelines(lines)
  bar.close()
  with open(os.path.join(ann_dir, "charades.json"), "w", encoding="utf-8") as f:
    json.dump(durations, f)
  glove_path = os.path.join(out_dir, f"glove.synthetic.{glove_dim}d.txt")
  _write_glove(glove_path, words, glove_dim, rng)
  return {"annotations": ann_dir, "features": feat_dir, "glove": glove_path}

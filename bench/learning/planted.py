"""The suite's shared generator and oracle: videos with planted moments, written in a real
benchmark's on-disk layout, and a reader that scores what was planted.

A set is a `SetSpec`. Its vocabulary of concepts comes in slots (one slot for "an action",
two for "a verb and an object", three for "a verb, an adjective and an object"); every
entry of every slot has a random signal vector of norm signal * sqrt(D) (orthogonal to the
others when D allows). A video of T
steps holds k events in non-overlapping windows; an event draws one entry per slot, and
its window's features get the sum of those entries' signals (amplitude jittered 0.8-1.2
per step) on top of N(0, noise^2) noise. Each event gets one query naming its entries (in
one of the set's templates, with a synonym drawn where the set has them). With `share`,
every later event of a video reuses one slot entry of an earlier one, so the moment is
found only by combining all the query's words with the video.

Layouts (what cimha_tf.prepare_data reads, so the sets go through the real path):
  charades_sta:         annotations/charades_sta_{train,test}.txt, annotations/charades.json,
                        features/VID.npy
  activitynet_captions: annotations/train.json, annotations/val_1.json (the test split),
                        features.hdf5 with f[VID]["c3d_features"]
plus glove.<dim>d.txt (random vectors, GloVe's text format) when spec.glove_dim > 0, and
planted.json + signals.npz: what the oracle is told.

The oracle (`oracle_rows`) reads the prepared split as the model does (after pooling to
max_video_len), projects each step onto the query's planted signal directions, takes per
step the smallest projection over the query's slots (1 inside its event, ~0 elsewhere)
and returns the contiguous window with the largest sum of (score - 0.5). It is the
ceiling the suite reports every learned model as a fraction of.
Same spec and seed, same bytes.
"""

import dataclasses
import json
import os
from typing import Tuple

import numpy as np

from cimha_tf.common import timeline

LAYOUTS = ("charades_sta", "activitynet_captions")
TEST_SPLIT = {"charades_sta": "test", "activitynet_captions": "val_1"}
SUBJECTS = ("a person", "the person", "someone", "a man", "a woman")
# Vocabularies the kinds draw from (no entry is a word sequence inside another of its slot).
ACTIONS = ("opens the door", "closes the door", "drinks from a cup", "reads a book",
           "folds a towel", "plays on a phone", "throws a pillow", "washes the dishes",
           "sits on a chair", "ties their shoes", "sweeps the floor", "waters the plants")
VERBS = ("opens", "closes", "holds", "throws", "washes", "picks up", "puts down", "fixes")
ADJECTIVES = ("red", "small", "old", "wooden", "empty", "heavy")
OBJECTS = ("door", "cup", "book", "phone", "towel", "box", "laptop", "bag", "shoe", "pillow")
ACTION_TEMPLATES = ("{subj} {0}.", "then {subj} {0}.", "{subj} {0} in the room.")


@dataclasses.dataclass(frozen=True)
class SetSpec:
  """One planted-moment set (see the module docstring). Sizes are for the full suite;
  quick_* are the --quick ones."""
  name: str
  slots: Tuple[Tuple[str, ...], ...]
  templates: Tuple[str, ...]            # "{subj}" plus one "{0}", "{1}", ... per slot
  layout: str = "charades_sta"
  train_videos: int = 200
  test_videos: int = 60
  quick_train_videos: int = 16
  quick_test_videos: int = 6
  steps: Tuple[int, int] = (32, 64)     # raw feature steps per video
  durations: Tuple[float, float] = (15.0, 45.0)
  events: Tuple[int, int] = (2, 3)
  window: Tuple[float, float] = (0.12, 0.3)   # event length as a fraction of the video
  share: bool = False
  synonyms: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()   # (entry, other surface forms)
  feature_dim: int = 64
  signal: float = 1.0
  noise: float = 1.0
  glove_dim: int = 0                    # 0: no GloVe file (embeddings learned from scratch)
  max_video_len: int = 0                # prepare limit; 0: the model config's
  note: str = ""

  @property
  def test_split(self):
    return TEST_SPLIT[self.layout]

  def sized(self, quick):
    """The spec with its quick sizes as its sizes (quick=True), else itself."""
    if not quick:
      return self
    return dataclasses.replace(self, train_videos=self.quick_train_videos,
                               test_videos=self.quick_test_videos)


def _forms(spec):
  syn = dict(spec.synonyms)
  return [[(entry,) + tuple(syn.get(entry, ())) for entry in slot] for slot in spec.slots]


def _place(rng, n, k, window, min_gap):
  """k non-overlapping inclusive step windows in n steps, >= min_gap free steps apart."""
  lengths = np.maximum(1, np.round(rng.uniform(*window, size=k) * n)).astype(int)
  budget = n - min_gap * (k - 1)
  if lengths.sum() > budget:
    lengths = np.maximum(1, np.floor(lengths * budget / lengths.sum())).astype(int)
  free = budget - lengths.sum()
  cuts = np.sort(rng.integers(0, free + 1, size=k))
  out, t, used = [], 0, 0
  for i in range(k):
    t += cuts[i] - used + (min_gap if i else 0)
    used = cuts[i]
    out.append((int(t), int(t + lengths[i] - 1)))
    t += lengths[i]
  return out


def _combos(rng, spec, k):
  """k distinct entry tuples (one index per slot); with spec.share each later one reuses
  one slot of an earlier one."""
  sizes = [len(s) for s in spec.slots]
  out = []
  while len(out) < k:
    combo = [int(rng.integers(n)) for n in sizes]
    if spec.share and out and len(sizes) > 1:
      keep = int(rng.integers(len(sizes)))
      combo[keep] = out[int(rng.integers(len(out)))][keep]
    if tuple(combo) not in out:
      out.append(tuple(combo))
  return out


def _sentence(rng, spec, forms, combo):
  words = [forms[s][i][int(rng.integers(len(forms[s][i])))] for s, i in enumerate(combo)]
  template = spec.templates[int(rng.integers(len(spec.templates)))]
  return template.format(*words, subj=SUBJECTS[int(rng.integers(len(SUBJECTS)))])


def _video(rng, spec, signals):
  """-> (features (n, D) float32, duration, [(combo, start_s, end_s)])."""
  n = int(rng.integers(spec.steps[0], spec.steps[1] + 1))
  duration = round(float(rng.uniform(*spec.durations)), 2)
  step_s = duration / n
  min_gap = 1  # a free step between events: each moment's edges are visible
  k = int(rng.integers(spec.events[0], spec.events[1] + 1))
  x = rng.normal(0.0, spec.noise, size=(n, spec.feature_dim))
  planted = []
  for combo, (s, e) in zip(_combos(rng, spec, k), _place(rng, n, k, spec.window, min_gap)):
    # Written with 2 decimals, rounded inwards: the seconds map back to steps s..e exactly.
    start_s = float(np.ceil(s * step_s * 100.0 - 1e-6) / 100.0)
    end_s = float(np.floor((e + 1) * step_s * 100.0 + 1e-6) / 100.0)
    i, j = (int(v) for v in timeline.seconds_to_steps(start_s, end_s, duration, n))
    if (i, j) != (s, e):
      raise AssertionError(f"{spec.name}: window {s}-{e} of {n} steps was written as {start_s}-{end_s} s "
                           f"of {duration} s, which reads back as steps {i}-{j}")
    vec = sum(signals[slot][entry] for slot, entry in enumerate(combo))
    x[i:j + 1] += rng.uniform(0.8, 1.2, size=(j - i + 1, 1)) * vec
    planted.append((combo, start_s, min(end_s, duration)))
  return x.astype(np.float32), duration, planted


def _signals(rng, spec):
  """One vector per slot entry, of norm signal * sqrt(D); mutually orthogonal when there
  are at most D of them (no cross-talk: a step's projection is exactly its own entries)."""
  sizes = [len(slot) for slot in spec.slots]
  total, dim = sum(sizes), spec.feature_dim
  vectors = rng.normal(0.0, 1.0, size=(total, dim))
  if total <= dim:
    vectors = np.linalg.qr(vectors.T)[0].T  # orthonormal rows
  vectors *= spec.signal * np.sqrt(dim) / np.linalg.norm(vectors, axis=1, keepdims=True)
  return np.split(vectors, np.cumsum(sizes)[:-1])


def _write_glove(path, words, dim, rng):
  with open(path, "w", encoding="utf-8") as f:
    for w in sorted(words):
      f.write(w + " " + " ".join(f"{v:.5f}" for v in rng.normal(0.0, 0.4, size=dim)) + "\n")


def write(spec: SetSpec, out_dir: str, seed: int = 0, progress: bool = False):
  """Writes the set; -> {"dataset", "annotations", "features", "glove", "test_split"} for
  cimha_tf.data.prepare (dataset = the cimha_tf.data.annotations reader's name)."""
  from cimha_tf.data.text import tokenize
  if spec.layout not in LAYOUTS:
    raise ValueError(f"SetSpec {spec.name!r}: layout {spec.layout!r}, expected one of {LAYOUTS}")
  if spec.train_videos < 1 or spec.test_videos < 1:
    raise ValueError(f"SetSpec {spec.name!r}: needs >= 1 train and test video, got "
                     f"{spec.train_videos} / {spec.test_videos}")
  rng = np.random.default_rng(seed)
  forms = _forms(spec)
  signals = _signals(rng, spec)
  ann_dir = os.path.join(out_dir, "annotations")
  os.makedirs(ann_dir, exist_ok=True)
  charades = spec.layout == "charades_sta"
  if charades:
    feat_path = os.path.join(out_dir, "features")
    os.makedirs(feat_path, exist_ok=True)
    h5 = None
  else:
    import h5py
    feat_path = os.path.join(out_dir, "features.hdf5")
    h5 = h5py.File(feat_path, "w")
  words, durations, index = set(), {}, 0
  try:
    for split, count in (("train", spec.train_videos), (spec.test_split, spec.test_videos)):
      lines, entries = [], {}
      for _ in range(count):
        vid = f"{spec.name[:3].upper()}{index:05d}"
        index += 1
        x, duration, planted = _video(rng, spec, signals)
        sentences = [_sentence(rng, spec, forms, combo) for combo, _, _ in planted]
        for s in sentences:
          words.update(tokenize(s))
        if charades:
          np.save(os.path.join(feat_path, f"{vid}.npy"), x)
          durations[vid] = {"subset": "training" if split == "train" else "testing",
                            "duration": duration}
          lines += [f"{vid} {s:.2f} {e:.2f}##{q}\n" for (_, s, e), q in zip(planted, sentences)]
        else:
          h5.create_group(vid).create_dataset("c3d_features", data=x)
          entries[vid] = {"duration": duration, "timestamps": [[s, e] for _, s, e in planted],
                          "sentences": sentences}
      if charades:
        with open(os.path.join(ann_dir, f"charades_sta_{split}.txt"), "w", encoding="utf-8") as f:
          f.writelines(lines)
      else:
        with open(os.path.join(ann_dir, f"{split}.json"), "w", encoding="utf-8") as f:
          json.dump(entries, f)
  finally:
    if h5 is not None:
      h5.close()
  if charades:
    with open(os.path.join(ann_dir, "charades.json"), "w", encoding="utf-8") as f:
      json.dump(durations, f)
  glove = None
  if spec.glove_dim:
    glove = os.path.join(out_dir, f"glove.{spec.glove_dim}d.txt")
    _write_glove(glove, words, spec.glove_dim, rng)
  np.savez(os.path.join(out_dir, "signals.npz"), **{f"slot{i}": s for i, s in enumerate(signals)})
  with open(os.path.join(out_dir, "planted.json"), "w", encoding="utf-8") as f:
    json.dump({"spec": dataclasses.asdict(spec), "seed": seed, "forms": forms}, f, indent=1)
  return {"dataset": spec.layout, "annotations": ann_dir, "features": feat_path,
          "glove": glove, "test_split": spec.test_split}


def read_plan(raw_dir):
  """(forms, signals) of a written set: forms[slot][entry] = its surface forms."""
  with open(os.path.join(raw_dir, "planted.json"), encoding="utf-8") as f:
    plan = json.load(f)
  with np.load(os.path.join(raw_dir, "signals.npz")) as z:
    signals = [z[f"slot{i}"] for i in range(len(plan["forms"]))]
  return plan["forms"], signals


def _contains(tokens, phrase_tokens):
  m = len(phrase_tokens)
  return any(tokens[i:i + m] == phrase_tokens for i in range(len(tokens) - m + 1))


def query_directions(query, forms, signals):
  """The signal vector of each slot the query names ((slots, D)); ValueError naming the
  query when a slot's entry is not found or is ambiguous."""
  from cimha_tf.data.text import tokenize
  tokens = tokenize(query)
  out = []
  for s, slot in enumerate(forms):
    hits = {i for i, surfaces in enumerate(slot)
            for form in surfaces if _contains(tokens, tokenize(form))}
    if len(hits) != 1:
      raise ValueError(f"query {query!r}: expected one entry of slot {s}, found {sorted(hits)}")
    out.append(signals[s][hits.pop()])
  return np.stack(out)


def best_window(scores):
  """Inclusive (i, j) of the contiguous run with the largest sum of `scores` (Kadane; at
  least one step; ties: the earliest, then the shortest)."""
  best, best_ij, run, start = -np.inf, (0, 0), 0.0, 0
  for t, v in enumerate(np.asarray(scores, np.float64)):
    if run <= 0.0:
      run, start = v, t
    else:
      run += v
    if run > best:
      best, best_ij = run, (start, t)
  return best_ij


def window_row(qid, query, vid, i, j, duration, num_steps):
  """A moment_detr prediction row for the step window [i, j]."""
  s, e = timeline.steps_to_seconds(i, j, float(duration), int(num_steps))
  return {"qid": int(qid), "query": query, "vid": vid, "pred_relevant_windows": [[float(s), float(e), 1.0]]}


def oracle_scores(features, directions):
  """(n, D) features, (slots, D) directions -> (n,) min over slots of x.d / |d|^2."""
  proj = features @ directions.T / np.sum(directions ** 2, axis=1)
  return proj.min(axis=1)


def oracle_rows(raw_dir, data_dir, split, batch_size=64):
  """The oracle's prediction rows for every query of a prepared split (module docstring)."""
  from cimha_tf.data import pipeline
  from cimha_tf.evaluation import runner
  forms, signals = read_plan(raw_dir)
  text = {r["qid"]: r["query"] for r in runner.read_ground_truth(data_dir, split)}
  rows = []
  for inputs, meta in pipeline.eval_dataset(data_dir, split, batch_size):
    feats = inputs["video_features"].numpy()
    for b, qid in enumerate(meta["qid"].numpy().tolist()):
      n = int(meta["num_steps"][b])
      scores = oracle_scores(feats[b, :n].astype(np.float64),
                             query_directions(text[qid], forms, signals))
      i, j = best_window(np.minimum(scores, 1.5) - 0.5)
      rows.append(window_row(qid, text[qid], meta["vid"][b].numpy().decode(), i, j,
                             meta["duration"][b], n))
  return rows


def prepare(paths, prepared_dir, max_video_len, max_query_len, progress=False):
  """The written set -> a prepared folder, through cimha_tf.data's reader and prepare path."""
  from cimha_tf.data import prepare as prepare_lib
  return prepare_lib.prepare(paths["dataset"], paths["annotations"], paths["features"],
                             prepared_dir, glove=paths.get("glove"), max_video_len=max_video_len,
                             max_query_len=max_query_len, progress=progress)


def score(rows, data_dir, split):
  """The project's metrics (percent) of prediction rows against the prepared split."""
  from cimha_tf.evaluation import runner, scorer
  return scorer.score_predictions(rows, runner.read_ground_truth(data_dir, split),
                                  source=f"{data_dir} split {split!r}")

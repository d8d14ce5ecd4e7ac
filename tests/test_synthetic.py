"""Synthetic Charades-STA-format dataset: format, determinism, and that it needs video + query."""

import filecmp
import json
import os
import re

import numpy as np
import pytest

from cimha_tf.data import synthetic
from cimha_tf.data.annotations import read_dataset
from cimha_tf.common.timeline import seconds_to_steps

SMALL = dict(num_train_videos=60, num_test_videos=30, feature_dim=32, glove_dim=8, progress=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("synthetic")
  paths = synthetic.write_synthetic_dataset(str(root), seed=3, **SMALL)
  return root, paths, read_dataset("charades_sta", paths["annotations"])


def _iou(a, b):
  inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
  union = max(a[1], b[1]) - min(a[0], b[0])
  return inter / union if union > 0 else float(a == b)


def _r1(pred_windows, records):
  return float(np.mean([_iou(p, r.windows[0]) >= 0.5 for p, r in zip(pred_windows, records)]))


def test_paths_and_charades_format(dataset):
  root, paths, splits = dataset
  assert paths == {"annotations": str(root / "annotations"), "features": str(root / "features"),
                   "glove": str(root / "glove.synthetic.8d.txt")}
  line_re = re.compile(r"^SYN\d{4} \d+\.\d \d+\.\d##\S.*$")
  for split in ("train", "test"):
    with open(os.path.join(paths["annotations"], f"charades_sta_{split}.txt")) as f:
      lines = f.read().splitlines()
    assert len(lines) == 4 * SMALL[f"num_{split}_videos"]
    assert all(line_re.match(line) for line in lines), lines[:3]
  durations = json.loads((root / "annotations" / "charades.json").read_text())
  assert len(durations) == 90
  for vid, info in durations.items():
    assert set(info) == {"subset", "duration", "actions"}  # the real charades.json's structure
    assert info["subset"] in ("training", "testing")
    assert 3 <= len(info["actions"]) <= 4 and all(len(a) == 3 for a in info["actions"])
  # Read back with the real reader: every query kept, the end-past-duration defect repaired.
  assert list(splits) == ["train", "test"]
  train, rep = splits["train"]
  assert rep.read == rep.kept == 240 and rep.repaired["end_clipped"] >= 1 and not rep.dropped
  lengths = []
  for vid in durations:
    x = np.load(os.path.join(paths["features"], f"{vid}.npy"), allow_pickle=False)
    assert x.dtype == np.float32 and x.shape[1] == 32 and np.isfinite(x).all()
    lengths.append(x.shape[0])
  assert min(lengths) < 64 and max(lengths) > 128  # short videos are padded, long ones pooled
  # Planted windows never overlap within a video (distinct actions, distinct times).
  for info in durations.values():
    acts = sorted(info["actions"], key=lambda a: a[1])
    assert len({a[0] for a in acts}) == len(acts)
    assert all(acts[i][2] < acts[i + 1][1] for i in range(len(acts) - 1))


def test_deterministic(tmp_path, dataset):
  _, first, _ = dataset
  again = synthetic.write_synthetic_dataset(str(tmp_path / "again"), seed=3, **SMALL)
  for key in ("annotations", "features"):
    names = sorted(os.listdir(first[key]))
    assert names == sorted(os.listdir(again[key]))
    _, mismatch, errors = filecmp.cmpfiles(first[key], again[key], names, shallow=False)
    assert not mismatch and not errors
  assert filecmp.cmp(first["glove"], again["glove"], shallow=False)
  other = synthetic.write_synthetic_dataset(str(tmp_path / "other"), seed=4, **SMALL)
  assert not filecmp.cmp(os.path.join(first["annotations"], "charades_sta_train.txt"),
                         os.path.join(other["annotations"], "charades_sta_train.txt"), shallow=False)


def test_num_videos_override(tmp_path):
  paths = synthetic.write_synthetic_dataset(str(tmp_path), num_videos=12, queries_per_video=2,
                                            feature_dim=4, glove_dim=4, progress=False)
  splits = read_dataset("charades_sta", paths["annotations"])
  assert splits["train"][1].read == 20 and splits["test"][1].read == 4
  with pytest.raises(ValueError, match="at least one"):
    synthetic.write_synthetic_dataset(str(tmp_path / "x"), num_train_videos=0, progress=False)


def test_every_query_names_an_action_of_its_video(dataset):
  root, _, splits = dataset
  durations = json.loads((root / "annotations" / "charades.json").read_text())
  for records, _ in splits.values():
    for r in records:
      actions = {a: (s, min(e, r.duration)) for a, s, e in durations[r.vid]["actions"]}
      a = synthetic.action_index(r.query)
      assert actions[a] == pytest.approx(r.windows[0])
  with pytest.raises(ValueError, match="names no synthetic action"):
    synthetic.action_index("a dog barks")


def test_fixed_prior_scores_low(dataset):
  """The best single (start, end) fraction on train, applied blindly to test: far below 90%."""
  _, _, splits = dataset
  train, test = splits["train"][0], splits["test"][0]
  fractions = [(r.windows[0][0] / r.duration, r.windows[0][1] / r.duration) for r in train]
  grid = np.linspace(0, 1, 51)
  best = max(((a, b) for a in grid for b in grid if b > a),
             key=lambda w: np.mean([_iou(w, f) >= 0.5 for f in fractions]))
  r1 = _r1([(best[0] * r.duration, best[1] * r.duration) for r in test], test)
  assert r1 < 0.4


def _templates(train, features):
  """Each action's mean feature offset inside its training windows (a supervised oracle)."""
  dim = next(iter(features.values())).shape[1]
  sums, counts = np.zeros((len(synthetic.ACTIONS), dim)), np.zeros(len(synthetic.ACTIONS))
  for r in train:
    x = features[r.vid]
    i, j = seconds_to_steps(*r.windows[0], r.duration, len(x))
    a = synthetic.action_index(r.query)
    sums[a] += (x[i:j + 1] - np.median(x, 0)).sum(0)
    counts[a] += j - i + 1
  return sums / np.maximum(counts, 1)[:, None]


def _detect(x, template):
  """Longest run of steps whose (smoothed) correlation with the template passes half its energy."""
  score = np.convolve((x - np.median(x, 0)) @ template, np.ones(3) / 3, mode="same")
  on = list(score > 0.5 * template @ template) + [False]
  best, start = (0, 0), None
  for t, o in enumerate(on):
    if o and start is None:
      start = t
    elif not o and start is not None:
      if best == (0, 0) or t - start > best[1] - best[0] + 1:
        best = (start, t - 1)
      start = None
  return best


def test_planted_moments_recoverable_only_with_video_and_query(dataset):
  _, paths, splits = dataset
  train, test = splits["train"][0], splits["test"][0]
  features = {r.vid: np.load(os.path.join(paths["features"], f"{r.vid}.npy")) for r in train + test}
  templates = _templates(train, features)

  def to_seconds(r, steps):
    n = len(features[r.vid])
    return steps[0] * r.duration / n, (steps[1] + 1) * r.duration / n

  # Video + query: the named action's template finds its window.
  oracle = [to_seconds(r, _detect(features[r.vid], templates[synthetic.action_index(r.query)])) for r in test]
  assert _r1(oracle, test) >= 0.95
  # Video without the query: the longest detected action of the video, whichever it is.
  blind = []
  for r in test:
    runs = [_detect(features[r.vid], t) for t in templates]
    blind.append(to_seconds(r, max(runs, key=lambda w: w[1] - w[0])))
  assert _r1(blind, test) < 0.6

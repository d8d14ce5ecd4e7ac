"""The learning-quality suite (bench/learning): every set kind is written in its real layout,
reads back through the prepare path with every query kept, and its oracle finds what was
planted (~100 on noise-free data); the decoders, the probe and the reference do what they
claim (compared with plain numpy), and the runner's --quick mode writes its report."""

import dataclasses
import importlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
KINDS = ("weak_signals", "no_glove", "many_actions", "long_videos", "short_moments", "activitynet")


def _specs():
  return [spec for kind in KINDS for spec in importlib.import_module(f"bench.learning.{kind}").SPECS]


def _count_queries(paths, split):
  ann = paths["annotations"]
  if paths["dataset"] == "charades_sta":
    with open(os.path.join(ann, f"charades_sta_{split}.txt")) as f:
      return sum(1 for line in f if line.strip())
  with open(os.path.join(ann, f"{split}.json")) as f:
    return sum(len(v["sentences"]) for v in json.load(f).values())


@pytest.mark.parametrize("spec", _specs(), ids=lambda s: s.name)
def test_oracle_finds_what_was_planted_on_noise_free_data(spec, tmp_path):
  from bench.learning import planted
  spec = dataclasses.replace(spec.sized(True), noise=0.0)
  paths = planted.write(spec, str(tmp_path / "raw"), seed=3)
  meta = planted.prepare(paths, str(tmp_path / "prep"), spec.max_video_len or 64, 16)
  for split in ("train", spec.test_split):  # every written query reads back, none repaired
    info = meta["splits"][split]
    assert info["read"] == info["kept"] == _count_queries(paths, split) > 0
    assert not info["dropped"] and not sum(info["repaired"].values())
  if spec.max_video_len:
    assert meta["max_video_len"] == spec.max_video_len
  m = planted.score(planted.oracle_rows(str(tmp_path / "raw"), str(tmp_path / "prep"),
                                        spec.test_split), str(tmp_path / "prep"), spec.test_split)
  assert m["num_queries"] == meta["splits"][spec.test_split]["queries"]
  assert m["R1@0.7"] == 100.0 and m["mIoU"] > 95.0


def test_sets_are_seeded_and_noise_lowers_the_oracle(tmp_path):
  from bench.learning import planted, weak_signals
  strong, _, weak = weak_signals.SPECS
  a = planted.write(strong.sized(True), str(tmp_path / "a"), seed=1)
  b = planted.write(strong.sized(True), str(tmp_path / "b"), seed=1)
  for name in sorted(os.listdir(a["features"])):
    np.testing.assert_array_equal(np.load(os.path.join(a["features"], name)),
                                  np.load(os.path.join(b["features"], name)))
  scores = []
  for spec in (strong, weak):
    spec = dataclasses.replace(spec, train_videos=4, test_videos=40)
    paths = planted.write(spec, str(tmp_path / spec.name), seed=0)
    planted.prepare(paths, str(tmp_path / (spec.name + "p")), 64, 16)
    scores.append(planted.score(planted.oracle_rows(str(tmp_path / spec.name),
                                                    str(tmp_path / (spec.name + "p")), "test"),
                                str(tmp_path / (spec.name + "p")), "test")["R1@0.5"])
  assert scores[0] > 85.0 and scores[1] < scores[0] - 30.0


def test_shared_words_make_every_slot_necessary(tmp_path):
  """ActivityNet kind: later events share a word with an earlier one, never all three."""
  from bench.learning import activitynet, planted
  spec = activitynet.SPECS[0]
  rng = np.random.default_rng(0)
  shared = 0
  for _ in range(200):
    combos = planted._combos(rng, spec, 3)
    assert len(set(combos)) == 3
    shared += sum(any(c[s] == d[s] for d in combos[:i] for s in range(3))
                  for i, c in enumerate(combos) if i)
  assert shared == 400  # every later event shares at least one slot


def test_best_window_is_the_maximum_sum_run():
  from bench.learning import planted
  rng = np.random.default_rng(0)
  for _ in range(200):
    x = rng.normal(size=int(rng.integers(1, 20)))
    i, j = planted.best_window(x)
    sums = {(a, b): x[a:b + 1].sum() for a in range(len(x)) for b in range(a, len(x))}
    assert x[i:j + 1].sum() == pytest.approx(max(sums.values()))


def test_query_directions_name_the_ambiguous_query():
  from bench.learning import planted
  forms = [[("opens",), ("closes",)], [("door",), ("cup",)]]
  signals = [np.eye(4)[:2], np.eye(4)[2:]]
  np.testing.assert_array_equal(planted.query_directions("a man closes the cup.", forms, signals),
                                np.eye(4)[[1, 3]])
  with pytest.raises(ValueError, match="opens and closes the cup"):
    planted.query_directions("he opens and closes the cup", forms, signals)


def _batch(seed=0, pad=0):
  rng = np.random.default_rng(seed)
  mask = np.array([[1] * 10, [1] * 6 + [0] * 4], np.float32)
  x = {"video_features": (rng.normal(size=(2, 10, 8)) * mask[..., None]).astype(np.float32),
       "video_mask": mask, "query_tokens": np.array([[2, 3, 4], [5, 0, 0]], np.int32)}
  if pad:
    x["video_features"] = np.pad(x["video_features"], ((0, 0), (0, pad), (0, 0)))
    x["video_mask"] = np.pad(x["video_mask"], ((0, 0), (0, pad)))
  return x


@pytest.mark.parametrize("which", ["probe", "reference"])
def test_models_follow_the_output_contract_and_ignore_padding(which):
  import keras
  from bench.learning import probe, reference
  keras.utils.set_random_seed(0)
  model = (probe.build(8, 10, dim=6) if which == "probe"
           else reference.build(8, 10, dim=8, num_heads=2, max_len=16))
  out = {k: v.numpy() for k, v in model(_batch()).items()}
  padded = {k: v.numpy() for k, v in model(_batch(pad=5)).items()}
  for k in out:  # more padding changes nothing on valid steps, and padded steps are 0
    np.testing.assert_allclose(padded[k][:, :10], out[k], atol=1e-5)
    assert not padded[k][:, 10:].any() and not out[k][1, 6:].any()
  np.testing.assert_allclose(out["start_probs"].sum(1), 1.0, atol=1e-5)
  np.testing.assert_allclose(out["end_probs"].sum(1), 1.0, atol=1e-5)


def test_highlight_loss_is_vslnets_weighted_bce():
  from bench.learning import reference
  y = np.array([[1.0, 0.0, 1.0, -1.0]], np.float32)
  p = np.array([[0.7, 0.2, 0.4, 0.9]], np.float32)
  expected = -(2 * np.log(0.7) + np.log(0.8) + 2 * np.log(0.4)) / 3
  assert float(reference.highlight_bce(y, p)[0]) == pytest.approx(expected, rel=1e-5)


def test_runner_quick_writes_the_report(tmp_path):
  out = tmp_path / "report.json"
  env = dict(os.environ, PYTHONPATH=str(REPO))
  proc = subprocess.run(
      [sys.executable, "-m", "bench.learning.run", "--quick", "--sets=activitynet", "--seeds=1",
       "--models=probe", "--variants=cimha", f"--output={out}", f"--workdir={tmp_path / 'w'}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(out.read_text())
  entry = report["sets"]["activitynet"]
  assert set(entry["models"]) == {"probe", "cimha:cimha"}
  assert entry["oracle"]["R1@0.5"] > 80.0
  for m in entry["models"].values():
    run = m["runs"][0]
    assert run["epochs"] == 1 and m["std"]["R1@0.5"] == 0.0
    assert {k: m["mean"][k] for k in run["metrics"]} == pytest.approx(run["metrics"])
    assert m["fraction_of_oracle"] == pytest.approx(run["metrics"]["R1@0.5"] / entry["oracle"]["R1@0.5"])
    with open(run["history"]) as f:
      assert len(f.read().strip().splitlines()) == 2  # header + one epoch
  assert "| activitynet |" in report["tables"]["R1@0.5"]
  assert all(os.path.getsize(p) > 1000 for p in report["figures"])


def test_runner_refuses_an_unknown_set(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  proc = subprocess.run([sys.executable, "-m", "bench.learning.run", "--sets=nope",
                         f"--output={tmp_path / 'r.json'}"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and "unknown set kind 'nope'" in proc.stderr


def test_a_workdir_holds_one_form_of_a_set(tmp_path):
  from bench.learning import run
  lset = run.learning_sets(["no_glove"])[0]
  info = run.prepare_set(lset, str(tmp_path), 64, 16, quick=True)
  assert run.prepare_set(lset, str(tmp_path), 64, 16, quick=True) == info  # reused
  with pytest.raises(ValueError, match="use another --workdir"):
    run.prepare_set(lset, str(tmp_path), 64, 16, quick=False)

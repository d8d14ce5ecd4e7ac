"""The demo binary (shrunk with --quick; the full run is a slow test) and its baselines."""

import json
import os

import numpy as np
import pytest

from cimha_tf.evaluation import baselines
from cimha_tf.apps import demo as demo_lib
from tests import helpers
from cimha_tf.experiment import workdir as wd


def _row(qid, s, e, d=10.0, query="q"):
  return {"qid": qid, "vid": "v", "query": query, "duration": d, "relevant_windows": [[s, e]]}


def _iou(a, b):
  inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
  return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def test_fixed_prior_is_the_best_grid_window_by_brute_force():
  rng = np.random.default_rng(1)
  rows = []
  for q in range(40):
    s = rng.uniform(0, 0.7)
    rows.append(_row(q, 20 * s, 20 * (s + rng.uniform(0.05, 0.3)), d=20.0))
  a, b = baselines.fit_fixed_prior(rows)
  moments = [(r["relevant_windows"][0][0] / 20, r["relevant_windows"][0][1] / 20) for r in rows]
  hits = lambda w: sum(_iou(w, m) >= 0.5 for m in moments)  # noqa: E731
  grid = [i / baselines.GRID for i in range(baselines.GRID + 1)]
  best = max(hits((x, y)) for x in grid for y in grid if x < y)
  assert hits((a, b)) == best
  # Predictions scale the normalised window by each test video's duration.
  pred = baselines.predict_fixed_prior((a, b), [_row(0, 0, 1, d=50.0)])
  assert pred[0]["pred_relevant_windows"] == [[a * 50.0, b * 50.0, 1.0]]


def test_video_blind_learns_per_query_windows_and_falls_back_to_the_prior():
  rows = [_row(i, 0.0, 2.0, query="Early thing.") for i in range(6)]
  rows += [_row(10 + i, 8.0, 10.0, query="late thing.") for i in range(6)]
  rows += [_row(20 + i, 4.0, 6.0, query=f"rare {i}") for i in range(4)]  # under MIN_COUNT each
  table = baselines.fit_video_blind(rows)
  assert table["early thing."] == (0.0, 0.2) and table["late thing."] == (0.8, 1.0)
  test = [_row(100, 0, 2, query="early  THING."), _row(101, 8, 10, query="late thing."),
          _row(102, 4, 6, query="never seen")]
  pred = baselines.predict_video_blind(table, test)
  assert pred[0]["pred_relevant_windows"][0][:2] == [0.0, 2.0]
  assert pred[1]["pred_relevant_windows"][0][:2] == [8.0, 10.0]
  assert tuple(w / 10.0 for w in pred[2]["pred_relevant_windows"][0][:2]) == pytest.approx(table[None])


def test_carve_val_moves_whole_videos_and_keeps_the_accounting():
  from cimha_tf.data.records import QueryRecord, ReadReport
  records = [QueryRecord(qid=i, vid=f"v{i // 2}", duration=10.0, query="x", windows=[(0, 1)])
             for i in range(24)]
  report = ReadReport(source="t", read=25, kept=24)
  report.dropped["empty_query"] = 1
  out = demo_lib.carve_val({"train": (records, report), "test": ([], ReadReport("u"))}, every=6)
  train, val = out["train"][0], out["val"][0]
  assert {r.vid for r in val} == {"v5", "v11"} and not {r.vid for r in val} & {r.vid for r in train}
  assert len(train) + len(val) == 24
  for _, rep in (out["train"], out["val"]):
    rep.check()  # read = kept + dropped, per split


def test_quick_demo_runs_end_to_end(tmp_path):
  w = tmp_path / "demo"
  # An explicit --config.train.epochs wins over --quick's demo.quick_epochs (2).
  r = helpers.run_binary("cimha_tf.demo", f"--workdir={w}", "--quick", "--config.train.epochs=1",
                         timeout=900)
  assert json.load(open(w / "config.json"))["train"]["epochs"] == 1
  assert len(open(w / "history.csv").read().splitlines()) == 1 + 1  # header + one epoch
  for name in ("CI-MHA (this run)", "fixed prior", "video-blind"):
    assert name in r.stdout
  results = json.load(open(w / "metrics" / "demo.json"))
  assert set(results) == {"CI-MHA (this run)", "fixed prior", "video-blind"}
  for m in results.values():
    assert set(m) == set(demo_lib.COLUMNS) and all(0 <= v <= 100 for v in m.values())
  test_metrics = json.load(open(wd.metrics_path(str(w), "test")))
  assert test_metrics["R1@0.5"] == results["CI-MHA (this run)"]["R1@0.5"]
  meta = json.load(open(w / "prepared" / "metadata.json"))
  assert set(meta["splits"]) == {"train", "val", "test"} and meta["feature_dim"] == 512
  assert os.path.exists(wd.path(str(w), wd.BEST))
  # A full-mode run on a quick workdir is refused (different data).
  r = helpers.run_binary("cimha_tf.demo", f"--workdir={w}", timeout=900, check=False)
  assert r.returncode == 1 and "other settings" in r.stderr


@pytest.mark.slow
def test_full_demo_reaches_90_percent_far_above_the_baselines(tmp_path):
  w = tmp_path / "demo"
  helpers.run_binary("cimha_tf.demo", f"--workdir={w}", timeout=1200)
  results = json.load(open(w / "metrics" / "demo.json"))
  model = results["CI-MHA (this run)"]["R1@0.5"]
  assert model >= 90.0
  for name in ("fixed prior", "video-blind"):
    assert results[name]["R1@0.5"] < model - 40.0


@pytest.mark.parametrize("key, value, quick, match", [
    ("val_every", 0, False, r"config.demo.val_every=0: expected >= 2"),
    ("val_every", 1, False, r"config.demo.val_every=1: expected >= 2"),
    ("feature_dim", 0, False, r"config.demo.feature_dim=0: expected >= 1"),
    ("glove_dim", -1, True, r"config.demo.glove_dim=-1: expected >= 1"),
    ("quick_num_videos", 3, True, r"config.demo.quick_num_videos=3 gives 2 training videos: too few"
                                  r" to move one in config.demo.val_every=6 "),
])
def test_bad_demo_settings_name_the_config_key(tmp_path, key, value, quick, match):
  from tests.helpers import load_config as load
  config = load("demo", f"--config.demo.{key}={value}")
  with pytest.raises(ValueError, match=match):
    demo_lib.make_data(str(tmp_path / "w"), demo_lib.data_settings(config, quick), progress=False,
                       videos_key="quick_num_videos" if quick else "num_videos")


def test_demo_refuses_a_workdir_that_holds_something_else(tmp_path):
  """Before writing anything: the demo writes its data into WORKDIR and trains there, so a
  training workdir of another run would get the synthetic data and, with matching
  settings, resume that run on it."""
  from tests.helpers import load_config as load
  settings = demo_lib.data_settings(load("demo"), quick=True)
  other = tmp_path / "other_run"
  other.mkdir()
  (other / "config.json").write_text("{}")
  with pytest.raises(ValueError, match=r"other_run holds files that are not the demo's \['config.json'\]"):
    demo_lib.make_data(str(other), settings, progress=False)
  assert sorted(p.name for p in other.iterdir()) == ["config.json"]
  a_file = tmp_path / "a_file"
  a_file.write_text("")
  with pytest.raises(ValueError, match=r"a_file: expected a directory"):
    demo_lib.make_data(str(a_file), settings, progress=False)
  # What a demo killed before its data was prepared leaves behind is picked up again.
  killed = tmp_path / "killed"
  (killed / "synthetic" / "features").mkdir(parents=True)
  assert demo_lib.make_data(str(killed), settings, progress=False) == str(killed / "prepared")

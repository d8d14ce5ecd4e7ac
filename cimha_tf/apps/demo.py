"""The demo behind `python -m cimha_tf.demo`: synthetic data -> prepare -> train -> evaluate,
with the fixed-prior and video-blind baselines (cimha_tf/evaluation/baselines.py) beside it.

WORKDIR is the training workdir itself (evaluate / export / predict work on it), with the
raw synthetic files in WORKDIR/synthetic and the prepared folder in WORKDIR/prepared.
"""

import os

from cimha_tf.common import atomic
from cimha_tf.common.jsonfile import read_json_object
from cimha_tf.data.prepare import carve_val
from cimha_tf.evaluation import baselines
from cimha_tf.evaluation import workdir_eval
from cimha_tf.experiment import config as config_lib
from cimha_tf.training import trainer

DEMO_DATA = "demo_data.json"
COLUMNS = ("R1@0.3", "R1@0.5", "R1@0.7", "R5@0.5", "mIoU")


def data_settings(config, quick):
  d = config.demo
  def need(ok, key, expected):
    config_lib.require(config, ok, f"demo.{key}", expected)
  need(d.val_every >= 2, "val_every", ">= 2 (every val_every-th training video becomes a val"
       " video)")
  need(d.feature_dim >= 1, "feature_dim", ">= 1")
  need(d.glove_dim >= 1, "glove_dim", ">= 1")
  return {"num_videos": int(d.quick_num_videos if quick else d.num_videos),
          "feature_dim": int(d.feature_dim), "glove_dim": int(d.glove_dim),
          "seed": int(d.data_seed), "val_every": int(d.val_every),
          "max_video_len": int(config.model.max_video_len),
          "max_query_len": int(config.model.max_query_len)}


def check_workdir(workdir):
  """A workdir without the demo's stamp must be new, empty, or what a killed demo left: the
  demo trains there, so another run's workdir would be resumed on the synthetic data."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"{workdir}: expected a directory (the demo's workdir), found a file")
  if os.path.isdir(workdir):
    other = sorted(set(os.listdir(workdir)) - {"synthetic", "prepared"})
    if other:
      raise ValueError(f"{workdir} holds files that are not the demo's {other[:5]}: use a new or"
                       " empty --workdir")


def make_data(workdir, settings, progress=True, videos_key="num_videos"):
  """Writes and prepares the synthetic dataset unless WORKDIR already holds it.

  videos_key: the config.demo key settings["num_videos"] comes from (for errors)."""
  from cimha_tf.data import prepare, synthetic
  from cimha_tf.data.annotations import read_dataset
  prepared = os.path.join(workdir, "prepared")
  stamp = os.path.join(workdir, DEMO_DATA)
  if os.path.exists(stamp) and os.path.exists(os.path.join(prepared, "metadata.json")):
    old = read_json_object(stamp, "demo settings")
    if old == settings:
      print(f"reusing the synthetic data in {prepared}")
      return prepared
    raise ValueError(f"{workdir} holds a demo made with other settings ({old} != {settings}), "
                     "e.g. --quick vs full: use a new --workdir")
  check_workdir(workdir)
  os.makedirs(workdir, exist_ok=True)
  paths = synthetic.write_synthetic_dataset(
      os.path.join(workdir, "synthetic"), num_videos=settings["num_videos"],
      feature_dim=settings["feature_dim"], glove_dim=settings["glove_dim"],
      seed=settings["seed"], progress=progress)
  splits = carve_val(read_dataset("charades_sta", paths["annotations"]), settings["val_every"],
                     videos=f"config.demo.{videos_key}={settings['num_videos']}",
                     setting="config.demo.val_every")
  meta = prepare.prepare_splits(
      splits, paths["features"], prepared, dataset="synthetic_charades_sta", glove=paths["glove"],
      max_video_len=settings["max_video_len"], max_query_len=settings["max_query_len"],
      progress=progress)
  print(prepare.format_accounting(meta))
  atomic.write_json(stamp, settings, sort_keys=False)
  return prepared


def baseline_metrics(config):
  """{name: metrics} of the two baselines, fitted on train, scored on the test split."""
  from cimha_tf.evaluation import runner, scorer
  train_rows = runner.read_ground_truth(config.data.dir, config.data.train_split)
  test_rows = runner.read_ground_truth(config.data.dir, config.data.test_split)
  prior = baselines.fit_fixed_prior(train_rows)
  blind = baselines.fit_video_blind(train_rows)
  return {
      "fixed prior": scorer.score_predictions(baselines.predict_fixed_prior(prior, test_rows), test_rows),
      "video-blind": scorer.score_predictions(baselines.predict_video_blind(blind, test_rows), test_rows),
  }


def format_rows(results):
  head = f"{'method':<22}" + "".join(f"{c:>9}" for c in COLUMNS)
  lines = [head, "-" * len(head)]
  for name, m in results.items():
    lines.append(f"{name:<22}" + "".join(f"{m[c]:>9.2f}" for c in COLUMNS))
  return "\n".join(lines)


def run(config, workdir, quick=False, progress=True, verbose=1, quick_epochs=True):
  """The whole demo; returns {"CI-MHA (this run)": metrics, "fixed prior": ..., "video-blind": ...}.

  quick: the smaller dataset (demo.quick_num_videos) and, with quick_epochs, demo.quick_epochs
  epochs instead of train.epochs."""
  settings = data_settings(config, quick)
  config.data.dir = make_data(workdir, settings, progress,
                              videos_key="quick_num_videos" if quick else "num_videos")
  if quick and quick_epochs:
    config.train.epochs = int(config.demo.quick_epochs)
  trainer.train(config, workdir, verbose=verbose)
  results = {"CI-MHA (this run)": workdir_eval.evaluate_workdir(
      config, workdir, checkpoint="best", progress=progress)}
  results.update(baseline_metrics(config))
  out = os.path.join(workdir, "metrics", "demo.json")
  os.makedirs(os.path.dirname(out), exist_ok=True)
  atomic.write_json(out, {k: {c: v[c] for c in COLUMNS} for k, v in results.items()},
                    sort_keys=False)
  print(f"\nsynthetic test split ({results['CI-MHA (this run)']['num_queries']} queries), percent:")
  print(format_rows(results))
  if quick:
    print(smoke_note(int(config.train.epochs), settings["num_videos"],
                     int(config.demo.num_videos)))
  print(f"wrote {out}")
  return results


def smoke_note(epochs, num_videos, full_videos):
  """The quick demo's table is a smoke test's: without this line its CI-MHA row, below the
  baselines, reads as a failure."""
  return (f"--quick: a smoke run ({epochs} epoch{'s' * (epochs != 1)} on {num_videos} videos) "
          "that checks the pipeline end to end; CI-MHA has not learnt yet, so it can score "
          f"below the baselines. The full demo (no --quick: {full_videos} videos, all the "
          "config's epochs) reaches R1@0.5 of about 99 with the shipped config (README.md).")

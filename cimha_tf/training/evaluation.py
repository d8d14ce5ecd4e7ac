"""Evaluation of a trained workdir (behind `python -m cimha_tf.evaluate --workdir=DIR`)."""

import json
import os

import ml_collections

from cimha_tf.evaluation import predictions as predictions_lib
from cimha_tf.evaluation import runner
from cimha_tf.evaluation import scorer
from cimha_tf.training import checks
from cimha_tf.training import config as config_lib
from cimha_tf.training import workdir as wd


def saved_config(workdir):
  """The resolved config training saved into the workdir."""
  return ml_collections.ConfigDict(wd.read_json(workdir, wd.CONFIG))


def evaluate_workdir(config, workdir, split=None, checkpoint="best", num_figures=6, progress=True):
  """Writes WORKDIR/metrics/SPLIT.json and predictions/SPLIT.jsonl, prints the table; returns metrics."""
  from cimha_tf.data import pipeline
  config_lib.validate(config)
  split = split or config.data.test_split
  meta = pipeline.read_metadata(config.data.dir)
  checks.check_data(config, meta, [split])
  path = wd.checkpoint_path(workdir, checkpoint)
  model = wd.load_model(path)
  checks.check_checkpoint_data(model, path, workdir, config.data.dir, meta)

  metrics, rows = runner.evaluate_split(model, config.data.dir, split, config.eval.batch_size,
                                        config.eval.top_k, progress=progress)
  metrics_file = wd.metrics_path(workdir, split)
  os.makedirs(os.path.dirname(metrics_file), exist_ok=True)
  with open(metrics_file, "w") as f:
    json.dump(dict(metrics, checkpoint=path, split=split), f, indent=1)
  predictions_lib.write_predictions(wd.predictions_path(workdir, split), rows)
  print(f"{split} ({metrics['num_queries']} queries, checkpoint {path}):")
  print(scorer.format_table(metrics))
  print(f"wrote {metrics_file} and {wd.predictions_path(workdir, split)}")
  if num_figures:
    _figures(workdir, config, split, rows, num_figures)
  return metrics


def _figures(workdir, config, split, rows, num_figures):
  try:
    from cimha_tf.training import figures
  except ImportError:  # cimha_tf.visualize not available
    return
  figures.write_figures(workdir, config.data.dir, split, rows, num_figures, seed=config.seed)

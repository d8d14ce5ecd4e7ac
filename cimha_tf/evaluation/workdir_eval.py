"""Evaluation of a trained workdir (behind `python -m cimha_tf.evaluate --workdir=DIR`)."""

import os

import ml_collections

from cimha_tf.common import atomic
from cimha_tf.evaluation import predictions as predictions_lib
from cimha_tf.evaluation import runner
from cimha_tf.evaluation import scorer
from cimha_tf.experiment import checks
from cimha_tf.experiment import config as config_lib
from cimha_tf.experiment import workdir as wd


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
  path, model = wd.load_checkpoint(workdir, checkpoint, config.model)
  checks.check_checkpoint_data(model, path, workdir, config.data.dir, meta)

  curves = {} if num_figures else None
  with pipeline.naming_damaged_shards(config.data.dir, [split]):
    metrics, rows = runner.evaluate_split(model, config.data.dir, split, config.eval.batch_size,
                                          config.eval.top_k, progress=progress, curves=curves,
                                          max_span_fraction=runner.resolve_max_span(config))
  metrics_file = wd.metrics_path(workdir, split)
  os.makedirs(os.path.dirname(metrics_file), exist_ok=True)
  atomic.write_json(metrics_file, dict(metrics, checkpoint=path, split=split), sort_keys=False)
  predictions_lib.write_predictions(wd.predictions_path(workdir, split), rows)
  print(f"{split} ({metrics['num_queries']} queries, checkpoint {path}):")
  print(scorer.format_table(metrics))
  print(f"wrote {metrics_file} and {wd.predictions_path(workdir, split)}")
  if num_figures:
    from cimha_tf.evaluation import figures
    figures.write_figures(workdir, split, rows, curves, runner.read_ground_truth(config.data.dir, split),
                          num_figures, seed=config.seed)
  return metrics

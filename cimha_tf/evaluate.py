"""Evaluates a trained model on a prepared split, or scores any prediction file.

  python -m cimha_tf.evaluate --config=configs/X.py --workdir=DIR [--split=test] [--checkpoint=best]
      -> DIR/metrics/SPLIT.json, DIR/predictions/SPLIT.jsonl, DIR/figures/ (with
         cimha_tf.evaluation.visualize), the table on stdout.
      --config is optional: without it the workdir's resolved config.json is used (and
      --data_dir=DIR points it at prepared data that has moved since training).
  python -m cimha_tf.evaluate --predictions=P.jsonl --ground_truth=G.jsonl [--output=metrics.json]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ INFO/WARNING lines drown the progress bar

import json

from absl import flags

from cimha_tf.common import cli

FLAGS = flags.FLAGS
_CONFIG = cli.define_config_file("config", None, "Experiment config file (configs/*.py); "
                                "default: WORKDIR/config.json.", lock_config=True)
flags.DEFINE_string("workdir", None, "Training workdir.")
flags.DEFINE_string("split", None, "Split to evaluate (default: config.data.test_split).")
flags.DEFINE_string("data_dir", None, "Prepared data folder (default: config.data.dir), e.g. "
                    "when it has moved since training.")
flags.DEFINE_string("checkpoint", "best", "'best', 'last' or a .keras path.")
flags.DEFINE_integer("num_figures", 6, "Figures (best, worst, random queries) written to "
                     "WORKDIR/figures/ when cimha_tf.evaluation.visualize is available; 0 disables.")
flags.DEFINE_string("predictions", None, "Prediction JSONL to score (scoring mode).")
flags.DEFINE_string("ground_truth", None, "Ground-truth JSONL (scoring mode).")
flags.DEFINE_string("output", None, "Scoring mode: write the metrics JSON here.")
flags.DEFINE_bool("allow_missing", False, "Scoring mode: ground-truth queries without a "
                  "prediction count as misses (default: an error naming them).")


def score_mode():
  from cimha_tf.evaluation import scorer
  metrics = scorer.score_files(FLAGS.predictions, FLAGS.ground_truth,
                               allow_missing=FLAGS.allow_missing)
  print(scorer.format_table(metrics))
  if FLAGS.output:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w") as f:
      json.dump(metrics, f, indent=1)
    print(f"wrote {FLAGS.output}")


def workdir_mode():
  from cimha_tf.evaluation import workdir_eval
  config = _CONFIG.value
  if config is None:
    config = workdir_eval.saved_config(FLAGS.workdir)
  if FLAGS.data_dir:
    config.data.dir = FLAGS.data_dir
  metrics = workdir_eval.evaluate_workdir(config, FLAGS.workdir, split=FLAGS.split,
                                        checkpoint=FLAGS.checkpoint, num_figures=FLAGS.num_figures)
  del metrics


def main(argv):
  scoring = FLAGS.predictions is not None or FLAGS.ground_truth is not None
  if scoring and (FLAGS.predictions is None or FLAGS.ground_truth is None):
    raise cli.usage_error("scoring mode needs both --predictions and --ground_truth")
  if scoring == (FLAGS.workdir is not None):
    raise cli.usage_error("give either --workdir (evaluate a trained model) or "
                          "--predictions/--ground_truth (score a file)")
  with cli.clear_errors():
    score_mode() if scoring else workdir_mode()


if __name__ == "__main__":
  cli.run(main)

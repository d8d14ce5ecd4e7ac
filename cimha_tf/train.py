"""Trains CI-MHA.

  python -m cimha_tf.train --config=configs/X.py --workdir=DIR [--config.train.batch_size=8 ...]

Runs under MultiWorkerMirroredStrategy when TF_CONFIG names several workers, else
MirroredStrategy over the local GPUs (or the CPU). Started again on the same workdir, it
resumes (cimha_tf/training/trainer.py).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ INFO/WARNING lines drown the progress bar


from absl import flags

from cimha_tf.common import cli

FLAGS = flags.FLAGS
_CONFIG = cli.define_config_file("config", None, "Experiment config file (configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, logs and the resolved config go.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  from cimha_tf.experiment import config as config_lib
  from cimha_tf.training import trainer
  with cli.clear_errors(status=2):  # a value out of range (batch_size=0): a bad command line
    config_lib.validate(_CONFIG.value)
  with cli.clear_errors():
    trainer.train(_CONFIG.value, FLAGS.workdir)
  print(f"done: {FLAGS.workdir}")


if __name__ == "__main__":
  cli.run(main)

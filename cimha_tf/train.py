"""Trains CI-MHA.

  cimha-train --config=NAME|FILE --workdir=DIR [--config.train.batch_size=8 ...]
  (or python -m cimha_tf.train ...)

Runs under MultiWorkerMirroredStrategy when TF_CONFIG names several workers, else
MirroredStrategy over the local GPUs (or the CPU). Started again on the same workdir, it
resumes (cimha_tf/training/trainer.py).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ INFO/WARNING lines drown the progress bar


from absl import flags

from cimha_tf import configs
from cimha_tf.common import cli

FLAGS = flags.FLAGS
_CONFIG = cli.define_config_file("config", "The experiment config.", shipped=configs,
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


EXAMPLE = '{prog} --config=charades_sta_i3d --workdir=runs/charades --config.data.dir=prepared/charades'


def run():
  """The console script's entry point (and python -m's)."""
  cli.run(main, EXAMPLE)


if __name__ == "__main__":
  run()

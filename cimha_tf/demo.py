"""The demo: synthetic data -> prepare -> train (--config=demo) -> evaluate, with baselines.

  cimha-demo --workdir=DIR [--quick] [--config.train.epochs=5 ...]
  (or python -m cimha_tf.demo ...)

--quick shrinks the data and, unless --config.train.epochs is given, the epochs: a
2-epoch smoke run (what the test suite runs), whose numbers are low. DIR ends up a normal
training workdir: `cimha-evaluate --workdir=DIR` and export work on it.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ INFO/WARNING lines drown the progress bar


from absl import flags

from cimha_tf import configs
from cimha_tf.common import cli

FLAGS = flags.FLAGS
_CONFIG = cli.define_config_file("config", "The demo's config.", shipped=configs,
                                default="demo", lock_config=True)
flags.DEFINE_string("workdir", None, "Where the data, checkpoints and metrics go.")
flags.DEFINE_bool("quick", False, "Fewer videos and epochs (a smoke run for tests).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  from cimha_tf.apps import demo as demo_lib
  # --quick shortens training unless the command line sets the epochs itself.
  epochs_given = "config.train.epochs" in cli._config_args(sys.argv)[1]
  with cli.clear_errors():
    demo_lib.run(_CONFIG.value, FLAGS.workdir, quick=FLAGS.quick, quick_epochs=not epochs_given)


EXAMPLE = '{prog} --workdir=/tmp/cimha-demo'


def run():
  """The console script's entry point (and python -m's)."""
  cli.run(main, EXAMPLE)


if __name__ == "__main__":
  run()

"""The demo: synthetic data -> prepare -> train (configs/demo.py) -> evaluate, with baselines.

  python -m cimha_tf.demo --workdir=DIR [--quick] [--config.train.epochs=5 ...]

--quick shrinks the data and, unless --config.train.epochs is given, the epochs (what the
test suite runs). DIR ends up a normal training workdir: `python -m cimha_tf.evaluate
--workdir=DIR` and export work on it.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ INFO/WARNING lines drown the progress bar


from absl import flags

from cimha_tf.common import cli

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "configs", "demo.py")
FLAGS = flags.FLAGS
_CONFIG = cli.define_config_file("config", _DEFAULT_CONFIG, "Demo config file.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where the data, checkpoints and metrics go.")
flags.DEFINE_bool("quick", False, "Fewer videos and epochs (a smoke run for tests).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  from cimha_tf.apps import demo as demo_lib
  # --quick shortens training unless the command line sets the epochs itself.
  epochs_given = "config.train.epochs" in cli._config_args(sys.argv)[1]
  with cli.clear_errors():
    demo_lib.run(_CONFIG.value, FLAGS.workdir, quick=FLAGS.quick, quick_epochs=not epochs_given)


if __name__ == "__main__":
  cli.run(main)

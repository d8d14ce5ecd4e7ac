"""The binaries' edges: a clear message for an unknown --config.KEY, and one FATAL line for
a bad input that our own checks caught."""

import contextlib
import sys

from absl import app


def parse_flags(argv):
  """app.run's flags_parser; ml_collections raises a bare KeyError/AttributeError otherwise."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError) as e:
    missing = str(e).strip("\"'")
    overrides = [a.split("=", 1)[0][2:] for a in argv[1:] if a.startswith("--config.")]
    culprits = [o for o in overrides if missing in o.split(".")[1:]] or overrides
    print(f"FATAL: unknown config key in {', '.join('--' + c for c in culprits)}: "
          f"{e} does not exist in the config file (check the spelling; the keys are listed in "
          "docs/design.md, 'Experiment config')", file=sys.stderr)
    sys.exit(2)


@contextlib.contextmanager
def clear_errors():
  """Around a binary's work: bad input (a missing or existing file, a wrong value, a NaN
  loss) caught by our checks exits with status 1 and its message; see exit_with_clear_error."""
  try:
    yield
  except (ValueError, FileNotFoundError, FileExistsError, FloatingPointError) as e:
    exit_with_clear_error(e)


def exit_with_clear_error(e):
  """Our own checks' errors end the program with their message alone; errors raised inside
  TensorFlow / Keras keep their traceback (their message alone rarely says where)."""
  import os
  import traceback
  import cimha_tf
  package = os.path.dirname(os.path.abspath(cimha_tf.__file__)) + os.sep
  frames = traceback.extract_tb(e.__traceback__)
  if frames and not os.path.abspath(frames[-1].filename).startswith(package):
    raise e
  print(f"FATAL: {type(e).__name__}: {e}", file=sys.stderr)
  sys.exit(1)

"""absl flag parsing for the binaries: a clear message for an unknown --config.KEY."""

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


def exit_with_clear_error(e):
  """Our own checks' errors end the program with their message alone; errors raised inside
  TensorFlow / Keras keep their traceback (their message alone rarely says where)."""
  import traceback
  frames = traceback.extract_tb(e.__traceback__)
  if frames and "cimha_tf" not in frames[-1].filename:
    raise e
  print(f"FATAL: {type(e).__name__}: {e}", file=sys.stderr)
  sys.exit(1)

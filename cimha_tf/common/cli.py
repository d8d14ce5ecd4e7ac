"""The binaries' edges: exit status 2 for a bad command line (0 for --help), a clear message
for an unknown --config.KEY, and one FATAL line for a bad input that our own checks caught."""

import ast
import contextlib
import sys

from absl import app
from absl import flags

_HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?")


def run(main):
  """app.run for every binary: positional arguments are a usage error, and the exit statuses
  are the documented ones (docs/design.md, "Command lines")."""
  def checked(argv):
    if len(argv) > 1:
      raise usage_error(f"unexpected arguments: {argv[1:]}")
    return main(argv)
  app.run(checked, flags_parser=parse_flags)


def usage_error(message):
  """A bad combination of flags, found in main: absl prints the message and the short help."""
  return app.UsageError(message, exitcode=2)


def _config_args(argv):
  """(the --config=FILE value or None, the --config.KEY override names) on a command line."""
  file = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--config=")), None)
  overrides = [a.split("=", 1)[0][2:] for a in argv[1:] if a.startswith("--config.")]
  return file, overrides


def _asked_for_help(argv):
  for arg in argv[1:]:
    if arg == "--":
      break
    name = arg.lstrip("-").split("=", 1)[0]
    if arg.startswith("-") and name in _HELP_FLAGS:
      return True
  return False


def parse_flags(argv):
  """app.run's flags_parser. absl exits with status 1 both for a flag error and after
  --help; here they are 2 and 0. ml_collections raises a bare KeyError/AttributeError for
  an unknown --config.KEY, and the config file's own error (missing, a syntax error,
  get_config() raising) with its traceback otherwise; here each is one FATAL line."""
  try:
    rest = _parse_with_absl(argv)
    config = flags.FLAGS["config"].value if "config" in flags.FLAGS else None
    if config is not None:
      config.keys()  # ml_collections defers a config file's load error to the first access
    return rest
  except (AttributeError, KeyError) as e:
    if _config_args(argv)[1]:
      _exit_unknown_key(e, argv)
    _exit_unloadable_config(e, argv)  # e.g. a file without get_config()
  except Exception as e:  # noqa: BLE001  a missing file, a syntax error, get_config() raising
    _exit_unloadable_config(e, argv)


def _exit_unloadable_config(e, argv):
  import traceback
  given = _config_args(argv)[0] or ""
  text = str(e).splitlines()[-1].strip() if str(e).strip() else ""
  where = [f for f in traceback.extract_tb(e.__traceback__) if given and f.filename.endswith(given)]
  at = f" at line {where[-1].lineno}" if where else ""
  print(f"FATAL: --config={given}: cannot load the config file ({type(e).__name__}{at}: {text}); "
        "the shipped ones are configs/*.py", file=sys.stderr)
  sys.exit(2)


def _parse_with_absl(argv):
  try:
    return app.parse_flags_with_usage(argv)
  except SystemExit as e:
    if e.code == 1:  # absl's usage message is already printed
      if _asked_for_help(argv):
        sys.exit(0)
      file, overrides = _config_args(argv)
      if overrides and file is None:
        print("--config.KEY overrides apply to the file given with --config=FILE (evaluate "
              "reads WORKDIR/config.json without one; --data_dir moves its data)", file=sys.stderr)
      sys.exit(2)
    raise


def define_config_file(name, default, help_string, **kwargs):
  """config_flags.DEFINE_config_file; with a default file, ml_collections reads the
  --config.KEY overrides on sys.argv right here, so an unknown key surfaces here."""
  from ml_collections import config_flags
  try:
    return config_flags.DEFINE_config_file(name, default, help_string, **kwargs)
  except (AttributeError, KeyError) as e:
    _exit_unknown_key(e, sys.argv)


def _exit_unknown_key(e, argv):
  text = str(e.args[0]) if e.args else str(e)
  while text[:1] in ("'", '"'):  # a KeyError's str() is its argument's repr, maybe nested
    try:
      text = str(ast.literal_eval(text))
    except (ValueError, SyntaxError):
      break
  missing, _, hint = text.partition("\n")
  missing = missing.strip("\"'")
  overrides = _config_args(argv)[1]
  culprits = [o for o in overrides if missing in o.split(".")[1:]] or overrides
  hint = f" {hint.strip()}" if hint.strip() else ""
  print(f"FATAL: unknown config key in {', '.join('--' + c for c in culprits)}: "
        f"'{missing}' does not exist in the config file.{hint} (The keys are listed in "
        "docs/design.md, 'Experiment config'.)", file=sys.stderr)
  sys.exit(2)


@contextlib.contextmanager
def clear_errors(status=1):
  """Around a binary's work: bad input (a missing or existing file, a wrong value, a NaN
  loss) caught by our checks exits with `status` (2 around checks of the command line) and
  its message; see exit_with_clear_error."""
  try:
    yield
  except (ValueError, FloatingPointError, FileNotFoundError, FileExistsError, NotADirectoryError,
          IsADirectoryError, PermissionError) as e:
    exit_with_clear_error(e, status)


def exit_with_clear_error(e, status=1):
  """Our own checks' errors, and the standard library's file errors on our calls (they name
  the path), end the program with their message alone; errors raised inside TensorFlow,
  Keras, numpy or h5py keep their traceback (their message alone rarely says where)."""
  import os
  import traceback
  package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # cimha_tf/
  frames = [f for f in traceback.extract_tb(e.__traceback__) if not _in_stdlib(f.filename)]
  if frames and not os.path.abspath(frames[-1].filename).startswith(package):
    raise e
  print(f"FATAL: {type(e).__name__}: {e}", file=sys.stderr)
  sys.exit(status)


def _in_stdlib(filename):
  import os
  import sysconfig
  if filename.startswith("<frozen "):
    return True
  path = os.path.abspath(filename)
  stdlib = os.path.abspath(sysconfig.get_paths()["stdlib"]) + os.sep
  return path.startswith(stdlib) and not any(d in path for d in ("site-packages", "dist-packages"))

"""The binaries' edges: exit status 2 for a bad command line (0 for --help), one error line
and a pointer to --help for it, a --help that lists the binary's own flags (--config first)
with an example, --config by a shipped config's name, and one FATAL line for a bad input
that our own checks caught."""

import ast
import contextlib
import os
import re
import sys
import textwrap

from absl import app
from absl import flags

_HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?")
_OWN_HELP = ("help", "helpshort", "?", "h")  # answered here; --helpfull and --helpxml by absl
# The config flags of this process: name -> (shipped configs or None, default name or None).
_CONFIG_FLAGS = {}


def run(main, example):
  """app.run for every binary (python -m and the console scripts): --help is answered from
  the binary's own docstring and flags before anything else is parsed or imported;
  --config=NAME becomes the shipped config's file; positional arguments are a usage error;
  the exit statuses are the documented ones (docs/design.md, "Command lines")."""
  module = sys.modules[main.__module__]
  if _asked_for_help(sys.argv, _OWN_HELP):
    print_help(module, example)
    sys.exit(0)
  sys.argv = _with_config_files(sys.argv)

  def checked(argv):
    if len(argv) > 1:
      _exit_usage(f"unexpected arguments: {argv[1:]}")
    try:
      return main(argv)
    except app.UsageError as e:
      _exit_usage(str(e))
  app.run(checked, flags_parser=parse_flags)


def usage_error(message):
  """A bad combination of flags, found in main: one error line and a pointer to --help."""
  return app.UsageError(message, exitcode=2)


def _program():
  """How the user called this binary: `cimha-train`, or `python -m cimha_tf.train`."""
  main = sys.modules.get("__main__")
  spec = getattr(main, "__spec__", None)
  if sys.argv[0].endswith(".py") and spec is not None:
    return f"python -m {spec.name}"
  return os.path.basename(sys.argv[0])


def _exit_usage(message):
  print(f"FATAL: {message}\nRun `{_program()} --help` for its flags and an example.",
        file=sys.stderr)
  sys.exit(2)


def print_help(module, example):
  """The binary's docstring (line breaks kept), its own flags (--config first, with the
  --config.KEY overrides), then one example command."""
  print((module.__doc__ or "").strip("\n"))
  print("\nFlags:")
  own = flags.FLAGS.get_flags_for_module(module.__name__)
  configs = [flags.FLAGS[name] for name in _CONFIG_FLAGS if name in flags.FLAGS]
  for flag in configs + [f for f in own if f.name not in _CONFIG_FLAGS]:
    print(_flag_help(flag))
    if flag.name in _CONFIG_FLAGS:
      print(_wrap(f"--{flag.name}.KEY=VALUE: overrides one key of the config, e.g. "
                  f"--{flag.name}.train.batch_size=8 (the keys: docs/design.md, 'Experiment "
                  "config')"))
  print("\nExample:\n  " + example.replace("{prog}", _program()))
  print("\n--helpfull also lists the flags of absl and the libraries.")


def _wrap(text):
  return textwrap.fill(text, 90, initial_indent="  ", subsequent_indent="      ")


def _flag_help(flag):
  name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
  text = flag.help
  if flag.name in _CONFIG_FLAGS:
    shipped, default = _CONFIG_FLAGS[flag.name]
    if shipped is not None:
      text += f" A shipped config's name ({', '.join(shipped.names())}) or a config file's path."
    if default is not None:
      text += f" (default: {default})"
  elif _is_required(flag):
    text += " (required)"
  elif flag.default is not None:
    text += f" (default: {str(flag.default).lower() if flag.boolean else flag.default})"
  return _wrap(f"{name}: {text}")


def _is_required(flag):
  return any("must have a value other than None" in getattr(v, "message", "")
             for v in getattr(flag, "validators", []))


def _with_config_files(argv):
  """argv with each --config=NAME (or --config NAME) of a shipped config replaced by its
  file, and a binary's default config added first when none is given. A value that names
  no config (shipped.resolve's ValueError) is a command-line error."""
  argv = list(argv)
  for name, (shipped, default) in _CONFIG_FLAGS.items():
    prefix = f"--{name}="
    i = next((i for i, a in enumerate(argv) if a.startswith(prefix) or a == f"--{name}"), None)
    if i is None:
      if default is not None:
        argv.insert(1, prefix + default)
        i = 1
      else:
        continue
    elif argv[i] == f"--{name}":  # --config NAME
      if i + 1 >= len(argv):
        continue  # absl says the flag has no value
      argv[i:i + 2] = [prefix + argv[i + 1]]
    if shipped is not None:
      try:
        argv[i] = prefix + shipped.resolve(argv[i][len(prefix):])
      except ValueError as e:
        print(f"FATAL: {e}", file=sys.stderr)
        sys.exit(2)
  return argv


def _config_args(argv):
  """(the --config=FILE value or None, the --config.KEY override names) on a command line."""
  file = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--config=")), None)
  overrides = [a.split("=", 1)[0][2:] for a in argv[1:] if a.startswith("--config.")]
  return file, overrides


def _asked_for_help(argv, names=_HELP_FLAGS):
  for arg in argv[1:]:
    if arg == "--":
      break
    name = arg.lstrip("-").split("=", 1)[0]
    if arg.startswith("-") and name in names:
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
  shipped = next((s for s, _ in _CONFIG_FLAGS.values() if s is not None), None)
  names = f": {', '.join(shipped.names())}" if shipped is not None else ""
  print(f"FATAL: --config={given}: cannot load the config file ({type(e).__name__}{at}: {text}); "
        f"--config also takes a shipped config's name{names}", file=sys.stderr)
  sys.exit(2)


def _parse_with_absl(argv):
  """FLAGS(argv); a flag error is one FATAL line and a pointer to --help (absl's own
  handler adds 'Pass --helpshort or --helpfull'), status 2. --helpfull / --helpxml stay
  absl's, with status 0."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = re.sub(r"flag --([\w.]+)=None: Flag --[\w.]+ must have a value other than None\.",
                     r"--\1 is required", str(e))
    shipped = _CONFIG_FLAGS.get(message.split()[0][2:], (None,))[0]
    if message.endswith(" is required") and shipped is not None:
      message += f": a shipped config's name ({', '.join(shipped.names())}) or a config file's path"
    file, overrides = _config_args(argv)
    if overrides and file is None:
      message += ("; --config.KEY overrides apply to the file given with --config=FILE (evaluate "
                  "reads WORKDIR/config.json without one; --data_dir moves its data)")
    _exit_usage(message)
  except SystemExit as e:
    if e.code == 1 and _asked_for_help(argv):  # absl printed the help and exits 1
      sys.exit(0)
    raise


def define_config_file(name, help_string, shipped=None, default=None, **kwargs):
  """config_flags.DEFINE_config_file. `shipped` (cimha_tf.configs: names(), resolve(value))
  lets --config take a shipped config's name; `default` is the name used when the command
  line has no --config. The default goes onto the command line in run(), not into the flag:
  an ml_collections default file would be loaded (TensorFlow and all) as the binary is
  imported, before --help could answer."""
  from ml_collections import config_flags
  _CONFIG_FLAGS[name] = (shipped, default)
  return config_flags.DEFINE_config_file(name, None, help_string, **kwargs)


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

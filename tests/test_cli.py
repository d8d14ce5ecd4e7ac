"""The binaries' command lines (cimha_tf/common/cli.py): --help lists each binary's own flags
(--config first) with an example, without importing TensorFlow; a command-line error is one
line and a pointer to --help; --config takes a shipped config's name."""

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO_PATH as REPO
from cimha_tf import configs

BINARIES = {"cimha_tf.train": "--config", "cimha_tf.evaluate": "--config",
            "cimha_tf.demo": "--config", "cimha_tf.export": "--workdir",
            "cimha_tf.predict": "--model", "cimha_tf.prepare_data": "--dataset",
            "cimha_tf.extract_features": "--videos"}

# Runs a binary's --help in this process's interpreter and reports what it imported.
_HELP_PROBE = """
import runpy, sys
sys.argv = [{module!r}.replace("cimha_tf.", "") + ".py", "--help"]
try:
  runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
except SystemExit as e:
  code = e.code
print("EXIT", code, "TF", "tensorflow" in sys.modules, "KERAS", "keras" in sys.modules)
"""


def _run(module, *args, cwd=REPO):
  """`python -m module args` from cwd, with this checkout importable."""
  return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd,
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2"))


@pytest.mark.parametrize("module", BINARIES)
def test_help_lists_the_binarys_own_flags_first_flag_first_without_tensorflow(module):
  r = subprocess.run([sys.executable, "-c", _HELP_PROBE.format(module=module)], cwd=REPO,
                     capture_output=True, text=True, timeout=120,
                     env=dict(os.environ, PYTHONPATH=str(REPO)))
  assert r.stdout.strip().endswith("EXIT 0 TF False KERAS False"), (r.stdout[-2000:], r.stderr[-2000:])
  flags_section = r.stdout.split("\nFlags:\n", 1)[1]
  first = flags_section.lstrip().split(":", 1)[0]
  assert first == BINARIES[module], flags_section[:300]
  if first == "--config":
    assert "--config.KEY=VALUE" in flags_section and "charades_sta_i3d" in flags_section
  assert "\nExample:\n  python -m " + module + " --" in r.stdout
  assert "--helpfull" in r.stdout and "--alsologtostderr" not in r.stdout  # absl's own stay out
  assert r.stderr == "", r.stderr[-2000:]


@pytest.mark.parametrize("module", ["cimha_tf.export", "cimha_tf.predict", "cimha_tf.prepare_data",
                                    "cimha_tf.extract_features"])
def test_usage_lines_keep_their_line_breaks(module):
  """A backslash at a line's end in a non-raw docstring joined the lines
  ('--features=FILE       --query=...')."""
  r = _run(module, "--help")
  continued = [line for line in r.stdout.splitlines() if line.endswith(" \\")]
  assert continued, r.stdout[:1500]
  assert "\\      " not in r.stdout.replace("\\\n", "")


@pytest.mark.parametrize("module,args,message", [
    ("cimha_tf.train", ["--workdir=X"],
     "FATAL: --config is required: a shipped config's name (activitynet_captions_c3d, "
     "charades_sta_i3d, demo, tacos_c3d) or a config file's path"),
    ("cimha_tf.predict", ["--model=m.tflite", "--features=v.npy", "--query=a door"],
     "FATAL: the video's duration is unknown: pass --duration=SECONDS"),
    ("cimha_tf.export", ["--workdir=W", "--output=E", "--top_k=0"],
     "FATAL: flag --top_k=0: 0 is not a positive integer"),
    ("cimha_tf.demo", ["--workdir=W", "stray"], "FATAL: unexpected arguments: ['stray']")])
def test_command_line_error_is_one_line_and_a_pointer_to_help(tmp_path, module, args, message):
  r = _run(module, *args, cwd=tmp_path)
  assert r.returncode == 2, r.stderr[-2000:]
  # (the demo has loaded its config, and with it TensorFlow, whose start-up lines come first)
  lines = r.stderr[r.stderr.find("FATAL"):].strip().splitlines()
  assert lines[0].startswith(message), r.stderr[-2000:]
  assert lines[1:] == [f"Run `python -m {module} --help` for its flags and an example."], lines
  assert r.stdout == "" and not list(tmp_path.iterdir())


def test_config_by_name_or_path(tmp_path):
  path = configs.path("charades_sta_i3d")
  assert path == str(REPO / "cimha_tf" / "configs" / "charades_sta_i3d.py")
  assert configs.names() == ["activitynet_captions_c3d", "charades_sta_i3d", "demo", "tacos_c3d"]
  assert configs.resolve("charades_sta_i3d") == path
  assert configs.resolve("demo:arg") == configs.path("demo") + ":arg"  # get_config's argument
  own = tmp_path / "mine.py"
  own.write_text("")
  assert configs.resolve(str(own)) == str(own)
  with pytest.raises(ValueError, match=r"--config=charades: no shipped config of that name \(the "
                                       r"names: activitynet_captions_c3d, charades_sta_i3d, demo"):
    configs.resolve("charades")
  # The repository's old path, gone: the error names the shipped config to use instead.
  with pytest.raises(ValueError, match=r"--config=configs/demo.py: no such file; the shipped "
                                       r"configs are inside the package now: --config=demo"):
    configs.resolve("configs/demo.py")
  # A missing file of another name stays the loader's error (it names the file).
  assert configs.resolve("configs/mine.py") == "configs/mine.py"
  from cimha_tf.configs import charades_sta_i3d  # importable as modules too
  assert charades_sta_i3d.get_config().train.batch_size == 100


def test_binary_takes_a_config_by_name_and_refuses_the_old_path(tmp_path):
  """train validates the config before any data is read: a bad value reached from
  --config=NAME proves that the name loaded the shipped file."""
  r = _run("cimha_tf.train", "--config", "charades_sta_i3d", f"--workdir={tmp_path / 'wd'}",
           "--config.train.batch_size=0")
  assert r.returncode == 2 and "config.train.batch_size=0: expected >= 1" in r.stderr, r.stderr[-2000:]
  r = _run("cimha_tf.train", "--config=configs/charades_sta_i3d.py", f"--workdir={tmp_path / 'wd'}",
           cwd=tmp_path)
  assert r.returncode == 2 and r.stderr.strip() == (
      "FATAL: --config=configs/charades_sta_i3d.py: no such file; the shipped configs are "
      f"inside the package now: --config=charades_sta_i3d (or the path "
      f"{configs.path('charades_sta_i3d')})"), r.stderr[-2000:]
  assert not (tmp_path / "wd").exists()

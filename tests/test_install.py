"""The package as a user installs it: the wheel built from this checkout, installed into a
fresh virtual environment outside it, its command lines run from a folder that is not the
checkout, with no PYTHONPATH.

The environment sees this interpreter's packages (--system-site-packages) and pip may not
reach an index (PIP_NO_INDEX), so nothing is downloaded: TensorFlow and the rest must be
what requirements.txt asks for, already installed, as on CI.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.helpers import REPO_PATH as REPO

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "requirements.txt")


def _env(**extra):
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  return dict(env, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", TF_CPP_MIN_LOG_LEVEL="2",
              **extra)


def _run(cmd, cwd, timeout=600, check=True, env=None):
  r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or _env(), capture_output=True,
                     text=True, timeout=timeout)
  if check and r.returncode != 0:
    raise AssertionError(f"{cmd} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
  return r


def build_wheel(out_dir):
  """The wheel of a copy of the checkout's package files (the build's own folders stay out of
  the checkout), built with this interpreter's setuptools."""
  src = out_dir / "src"
  src.mkdir(parents=True)
  for name in SOURCES:
    shutil.copy(REPO / name, src / name)
  shutil.copytree(REPO / "cimha_tf", src / "cimha_tf",
                  ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
  _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", out_dir / "dist", src], cwd=out_dir)
  wheels = list((out_dir / "dist").glob("cimha_tf-*.whl"))
  assert len(wheels) == 1, wheels
  return wheels[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """(venv bin folder, a work folder outside the checkout, the wheel), the package installed
  by the notebooks' install cell, run as a script by the venv's Python."""
  root = tmp_path_factory.mktemp("install")
  wheel = build_wheel(root / "build")
  venv = root / "venv"
  _run([sys.executable, "-m", "venv", "--system-site-packages", venv], cwd=root)
  bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
  work = root / "work"
  work.mkdir()
  yield bin_dir, work, wheel


def _install_cell():
  import nbformat
  nb = nbformat.read(REPO / "colab" / "quickstart.ipynb", as_version=4)
  return next(c.source for c in nb.cells if c.cell_type == "code" and "def run(" in c.source)


def test_wheel_carries_the_package_configs_and_license(installed):
  import cimha_tf
  _, _, wheel = installed
  names = zipfile.ZipFile(wheel).namelist()
  assert wheel.name.startswith(f"cimha_tf-{cimha_tf.__version__}-")
  for config in ("demo", "charades_sta_i3d", "activitynet_captions_c3d", "tacos_c3d"):
    assert f"cimha_tf/configs/{config}.py" in names
  meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
  metadata = zipfile.ZipFile(wheel).read(meta).decode()
  assert "License-Expression: Apache-2.0" in metadata and f"Version: {cimha_tf.__version__}" in metadata
  assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
  scripts = zipfile.ZipFile(wheel).read(meta.replace("METADATA", "entry_points.txt")).decode()
  for name in ("train", "evaluate", "export", "predict", "prepare", "demo", "extract-features"):
    assert f"cimha-{name} = " in scripts


def _installed_python(installed):
  """The venv's Python with the wheel installed by the notebooks' install cell (PACKAGE = the
  wheel; this Python has no cimha_tf, so the cell runs pip), and its site-packages."""
  bin_dir, work, wheel = installed
  python = bin_dir / "python"
  site = pathlib.Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           cwd=work).stdout.strip())
  if not (site / "cimha_tf").is_dir():
    cell = f"REPO_URL = 'unused'\nPACKAGE = {str(wheel)!r}\n" + _install_cell() + (
        "\nrun('cimha_tf.predict', '--helpshort')"
        "\nimport importlib.metadata"
        "\nprint('VERSION', importlib.metadata.version('cimha-tf'), cimha_tf.__version__)")
    (work / "install_cell.py").write_text(cell)
    r = _run([python, "install_cell.py"], cwd=work)
    import cimha_tf
    assert f"cimha_tf {cimha_tf.__version__} from {site / 'cimha_tf'}" in r.stdout, r.stdout
    assert f"VERSION {cimha_tf.__version__} {cimha_tf.__version__}" in r.stdout
    assert "--model" in r.stdout  # predict's help, run by the cell's run()
  return python, site


def test_install_cell_then_the_command_lines_outside_the_checkout(installed):
  """The install cell installs the wheel; then the console scripts answer from the installed
  copy: --help, and the configs by name (the demo's default config too, whose file a wheel
  without configs/ could not find: 'cannot load the config file', exit 2)."""
  bin_dir, work, _ = installed
  python, site = _installed_python(installed)
  r = _run([bin_dir / "cimha-predict", "--help"], cwd=work)
  assert "--model" in r.stdout and "\n  cimha-predict --model=" in r.stdout
  # train validates the config before reading data: a value out of range, reached through
  # the name, shows the installed file loaded
  r = _run([bin_dir / "cimha-train", "--config=charades_sta_i3d", f"--workdir={work / 'wd'}",
            "--config.train.batch_size=0"], cwd=work, check=False)
  assert r.returncode == 2 and "config.train.batch_size=0: expected >= 1" in r.stderr, r.stderr[-2000:]
  r = _run([bin_dir / "cimha-demo", f"--workdir={work / 'wd'}", "--config.train.batchsize=8"],
           cwd=work, check=False)
  assert r.returncode == 2 and "'batchsize' does not exist in the config file" in r.stderr, r.stderr[-2000:]
  assert not (work / "wd").exists()
  # the installed copy ran, not this checkout
  r = _run([python, "-c", "import cimha_tf.configs; print(cimha_tf.configs.DIR)"], cwd=work)
  assert r.stdout.strip() == str(site / "cimha_tf" / "configs")


@pytest.mark.slow
def test_installed_quick_demo(installed):
  """cimha-demo --quick from the installed package, end to end (a few minutes)."""
  bin_dir, work, _ = installed
  _installed_python(installed)
  r = _run([bin_dir / "cimha-demo", f"--workdir={work / 'demo'}", "--quick"], cwd=work)
  assert "smoke run" in r.stdout and "CI-MHA (this run)" in r.stdout, r.stdout[-3000:]
  config = json.loads((work / "demo" / "config.json").read_text())
  assert config["train"]["epochs"] == 2  # the quick form of the packaged demo config

"""The shipped experiment configs (ml_collections files with get_config()), inside the
package so that an installed cimha_tf carries them.

The binaries' --config takes a name (`--config=charades_sta_i3d`) or the path of any
config file (`--config=my_config.py`, `--config=cimha_tf/configs/demo.py`); `resolve`
turns the first into the second. Each is also importable:
`from cimha_tf.configs import demo; demo.get_config()`.
"""

import os

DIR = os.path.dirname(os.path.abspath(__file__))


def names():
  """The shipped configs' names, sorted: charades_sta_i3d, demo, ..."""
  return sorted(f[:-3] for f in os.listdir(DIR) if f.endswith(".py") and not f.startswith("_"))


def path(name):
  """The file of the shipped config `name`; ValueError listing the names if there is none."""
  if name not in names():
    raise ValueError(f"--config={name}: no shipped config of that name (the names: "
                     f"{', '.join(names())}; or give the path of a config file)")
  return os.path.join(DIR, name + ".py")


def resolve(value):
  """A --config value -> the config file to load. A value without a folder or a .py ending
  is a shipped config's name. An existing file is itself. A missing configs/NAME.py, the
  form the repository's configs had before they moved into the package, is an error
  naming the shipped config to use instead, rather than the loader's bare 'file not
  found'. (Anything after a ':' is get_config's argument and kept.)"""
  file, colon, argument = value.partition(":")
  if file and os.sep not in file and "/" not in file and not file.endswith(".py"):
    return path(file) + colon + argument
  if not os.path.exists(file):
    parent, base = os.path.split(os.path.normpath(file))
    name = base[:-3] if base.endswith(".py") else ""
    if os.path.basename(parent) == "configs" and name in names():
      raise ValueError(f"--config={value}: no such file; the shipped configs are inside the "
                       f"package now: --config={name} (or the path {path(name)})")
  return value

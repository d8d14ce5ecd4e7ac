"""The package's layers (docs/design.md, "Layout and import direction"): a module imports
only from its own layer and the layers below it, function-level imports included."""

import ast
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "cimha_tf"

# Bottom to top; "binaries" are the modules at the top of the package (and its __init__).
LAYERS = ("common", "data", "video", "model", "experiment", "evaluation", "training", "deploy", "apps",
          "binaries")


def layer_of(module):
  """The layer of a dotted module name inside cimha_tf ('cimha_tf.data.text' -> 'data')."""
  parts = module.split(".")
  if len(parts) >= 2 and parts[1] in LAYERS:
    return parts[1]
  if len(parts) == 2 and (PACKAGE / (parts[1] + ".py")).exists():
    return "binaries"
  if len(parts) == 1:  # `import cimha_tf` / `from cimha_tf import X`: the package's top
    return "binaries"
  raise AssertionError(f"{module}: in no layer of {LAYERS}; add its folder to LAYERS and "
                       "docs/design.md")


def module_name(path):
  rel = path.relative_to(REPO).with_suffix("")
  parts = list(rel.parts)
  if parts[-1] == "__init__":
    parts = parts[:-1]
  return ".".join(parts)


def imported_modules(path):
  """(line, dotted module) of every cimha_tf import in the file, anywhere in it; for
  `from cimha_tf.x import y`, y when it is a module (cimha_tf.x.y), else cimha_tf.x."""
  tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
  package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "cimha_tf"]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      if base.split(".")[0] != "cimha_tf":
        continue
      for a in node.names:
        sub = f"{base}.{a.name}"
        as_path = REPO.joinpath(*sub.split("."))
        is_module = as_path.with_suffix(".py").exists() or (as_path / "__init__.py").exists()
        out.append((node.lineno, sub if is_module else base))
  return out


def upward_imports(path):
  own = LAYERS.index(layer_of(module_name(path)))
  return [f"{path.relative_to(REPO)}:{line}: imports {mod} ({layer_of(mod)}, above "
          f"{LAYERS[own]})" for line, mod in imported_modules(path)
          if LAYERS.index(layer_of(mod)) > own]


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_imports_from_a_layer_above_its_own(path):
  assert upward_imports(path) == []


def test_the_check_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
  fake = PACKAGE / "data" / "_layout_probe.py"
  source = ("import os\n"
            "from cimha_tf.common import jsonfile\n"
            "def f():\n"
            "  from cimha_tf.training import trainer\n"
            "  from ..evaluation import metrics\n"
            "  import cimha_tf.deploy.tflite\n")
  monkeypatch.setattr(pathlib.Path, "read_text", lambda self, encoding=None: source)
  found = upward_imports(fake)
  assert [re.search(r":(\d+): imports (\S+)", f).groups() for f in found] == [
      ("4", "cimha_tf.training.trainer"), ("5", "cimha_tf.evaluation.metrics"),
      ("6", "cimha_tf.deploy.tflite")]


def test_binaries_are_the_only_modules_at_the_top():
  binaries = {"extract_features", "prepare_data", "train", "evaluate", "export", "predict", "demo"}
  top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
  assert top == binaries
  folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
  assert folders == set(LAYERS[:-1])


def test_layers_match_the_design_doc():
  design = (REPO / "docs" / "design.md").read_text(encoding="utf-8")
  line = next(l for l in design.splitlines() if l.startswith("common ") and "<-" in l)
  assert tuple(w.strip() for w in line.split("<-")) == LAYERS

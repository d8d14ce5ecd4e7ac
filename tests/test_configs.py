"""Experiment configs: paper values, command-line overrides, clear errors for bad keys/values."""

import re

import pytest

from cimha_tf import configs
from cimha_tf.experiment import config as config_lib
from tests import helpers
from tests.helpers import REPO_PATH as REPO
from tests.helpers import load_config as load

CONFIGS = ("charades_sta_i3d", "activitynet_captions_c3d", "tacos_c3d", "demo")


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_has_the_contract_keys_and_validates(name):
  c = load(name)
  for key in ("seed", "data.dir", "data.train_split", "data.val_split", "data.test_split",
              "data.bucket_width",
              "model.variant", "model.cross_fusion", "model.max_video_len", "model.max_query_len",
              "train.epochs", "train.batch_size", "train.learning_rate", "train.steps_per_execution",
              "train.jit_compile", "eval.top_k", "eval.batch_size"):
    value = c
    for part in key.split("."):
      value = value[part]
  assert "feature_dim" not in c.model and "vocab_size" not in c.model  # from metadata.json only
  if name != "demo":  # the demo sets data.dir itself
    config_lib.validate(c)


@pytest.mark.parametrize("name", ["charades_sta_i3d", "activitynet_captions_c3d", "tacos_c3d"])
def test_paper_settings(name):
  c = load(name)
  assert (c.train.batch_size, c.train.learning_rate) == (100, 1e-4)
  assert (c.model.max_video_len, c.model.max_query_len) == (128, 25)
  assert (c.model.variant, c.model.cross_fusion) == ("cimha", "backprojection")
  assert c.model.embedding_dim == 300  # GloVe 300-d


@pytest.mark.parametrize("name", ["charades_sta_i3d", "activitynet_captions_c3d"])
def test_paper_configs_use_the_papers_width_512(name):
  """The seed's one size, "GloVe embedding 512", read as the query Bi-LSTM's output (2 x 256)
  and so the model width D; the other widths keep the defaults' proportions."""
  from cimha_tf.model import build_model
  c = load(name)
  m = c.model
  assert m.width == 512 and 2 * m.query_lstm_units == 512 and 2 * m.span_lstm_units == 512
  assert (m.num_heads, m.ffn_width, m.mlp_width) == (8, 1024, 256)
  assert m.embedding_dim == 300  # GloVe's vectors stay 300-d; the Bi-LSTM makes them 512
  model = build_model(m, video_dim=16, vocab_size=20)
  assert model.get_layer("query_encoder").compute_output_shape((1, 5))[-1] == 512
  assert model.get_layer("video_projection").compute_output_shape((1, 4, 16))[-1] == 512
  # The demo and the benchmark width keep their own sizes.
  assert load("demo").model.width == 64 and load("tacos_c3d").model.width == 128


def test_charades_selects_on_a_val_split_carved_from_training_unless_told_test():
  import importlib.util
  c = load("charades_sta_i3d")
  assert (c.data.train_split, c.data.val_split, c.data.test_split) == ("train", "val", "test")
  spec = importlib.util.spec_from_file_location("cfg", REPO / "cimha_tf" / "configs" / "charades_sta_i3d.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  assert (module.VAL_SPLIT, module.SELECT_ON_TEST) == ("val", "test")
  c = load("charades_sta_i3d", f"--config.data.val_split={module.SELECT_ON_TEST}")
  assert c.data.val_split == c.data.test_split == "test"


def test_activitynet_test_split_is_a_config_value():
  c = load("activitynet_captions_c3d")
  assert (c.data.train_split, c.data.val_split, c.data.test_split) == ("train", "val_1", "val_2")
  c = load("activitynet_captions_c3d", "--config.data.test_split=val_1", "--config.data.val_split=val_2")
  assert (c.data.val_split, c.data.test_split) == ("val_2", "val_1")


def test_command_line_overrides_reach_every_section():
  c = load("charades_sta_i3d", "--config.train.batch_size=8", "--config.model.variant=mha",
           "--config.model.cross_fusion=pool_tile", "--config.data.dir=/tmp/x",
           "--config.train.epochs=3", "--config.eval.top_k=10")
  assert (c.train.batch_size, c.model.variant, c.model.cross_fusion) == (8, "mha", "pool_tile")
  assert (c.data.dir, c.train.epochs, c.eval.top_k) == ("/tmp/x", 3, 10)


def test_unknown_key_fails_in_process():
  with pytest.raises((AttributeError, KeyError), match="batchsize"):
    load("charades_sta_i3d", "--config.train.batchsize=8")


@pytest.mark.parametrize("binary,config", [
    ("cimha_tf.train", "--config=demo"), ("cimha_tf.demo", None),
    ("cimha_tf.demo", f"--config={REPO / 'cimha_tf' / 'configs' / 'demo.py'}")])
def test_unknown_key_is_a_clear_error_of_the_binary(tmp_path, binary, config):
  """--config.KEY is read when the flags are parsed, with a config by name, by path or
  the demo's default: each ends in one clean line."""
  r = helpers.run_binary(binary, *[config] * (config is not None),
                         f"--workdir={tmp_path / 'wd'}", "--config.train.batchsize=8",
                         check=False)
  assert r.returncode == 2, r.stderr[-2000:]
  assert "Traceback" not in r.stderr
  assert ("FATAL: unknown config key in --config.train.batchsize: 'batchsize' does not exist "
          'in the config file. Did you mean "batch_size" instead of "batchsize"?') in r.stderr
  assert not (tmp_path / "wd").exists()  # nothing written, no training step


BINARIES = ["cimha_tf.prepare_data", "cimha_tf.train", "cimha_tf.evaluate", "cimha_tf.export",
            "cimha_tf.predict", "cimha_tf.demo"]


@pytest.mark.parametrize("binary", BINARIES)
def test_every_binary_exits_2_for_a_bad_command_line_and_0_for_help(binary):
  """docs/design.md, "Command lines": absl alone exits 1 for both."""
  r = helpers.run_binary(binary, "--no_such_flag=1", check=False)
  assert r.returncode == 2 and "Unknown command line flag 'no_such_flag'" in r.stderr, r.stderr[-2000:]
  r = helpers.run_binary(binary, "--help", check=False)
  assert r.returncode == 0 and "--" in r.stdout, r.stderr[-2000:]
  r = helpers.run_binary(binary, check=False)  # required flags missing (evaluate: no mode)
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_positional_arguments_are_a_usage_error(tmp_path):
  r = helpers.run_binary("cimha_tf.demo", f"--workdir={tmp_path / 'wd'}", "stray", check=False)
  assert r.returncode == 2 and "unexpected arguments: ['stray']" in r.stderr, r.stderr[-2000:]
  assert not (tmp_path / "wd").exists()


def test_missing_config_file_is_a_clear_error_of_the_binary(tmp_path):
  r = helpers.run_binary("cimha_tf.train", f"--config={tmp_path / 'nope.py'}",
                         f"--workdir={tmp_path / 'wd'}", check=False)
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
  assert f"FATAL: --config={tmp_path / 'nope.py'}: cannot load the config file" in r.stderr
  assert not (tmp_path / "wd").exists()


@pytest.mark.parametrize("source,message", [
    ("def get_config(:\n  pass\n", "(SyntaxError: invalid syntax (bad.py, line 1))"),
    ("x = 1\n", "(AttributeError: module 'config_config' has no attribute 'get_config')"),
    ("def get_config():\n  raise RuntimeError('boom')\n", "(RuntimeError at line 2: boom)")])
def test_config_file_that_does_not_load_is_a_clear_error(tmp_path, source, message):
  (tmp_path / "bad.py").write_text(source)
  r = helpers.run_binary("cimha_tf.train", f"--config={tmp_path / 'bad.py'}",
                         f"--workdir={tmp_path / 'wd'}", check=False)
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
  assert f"FATAL: --config={tmp_path / 'bad.py'}: cannot load the config file {message}" in r.stderr


@pytest.mark.parametrize("key,value,expected", [
    ("train.epochs", 0, ">= 1"), ("train.batch_size", 0, ">= 1"),
    ("train.learning_rate", 0.0, "> 0"), ("eval.top_k", 0, ">= 1"), ("data.dir", "", "prepared"),
    ("data.bucket_width", -8, ">= 0")])
def test_validate_names_the_bad_value(key, value, expected):
  c = load("charades_sta_i3d")
  section, field = key.split(".")
  c[section][field] = value
  with pytest.raises(ValueError, match=f"config.{key}=.*expected.*{expected}"):
    config_lib.validate(c)


@pytest.mark.parametrize("overrides,expected", [
    # Keras drops jit_compile under op determinism with one UserWarning (same losses).
    (dict(), "False with train.deterministic=True"),
    # Keras's TF scan: "tf2xla conversion failed" at the first step.
    (dict(deterministic=False, lstm_implementation="scan"), "lstm_implementation='scan'"),
    # Length buckets leave the time axis unknown: the unrolled form runs as that scan.
    (dict(deterministic=False, lstm_implementation="unrolled"), "data.bucket_width=0"),
])
def test_validate_refuses_jit_compile_where_xla_would_not_compile(overrides, expected):
  c = load("charades_sta_i3d")
  c.train.jit_compile = True
  c.train.deterministic = overrides.get("deterministic", True)
  c.model.lstm_implementation = overrides.get("lstm_implementation", "keras")
  assert c.data.bucket_width > 0
  with pytest.raises(ValueError, match=r"config.train.jit_compile=True: expected False with "):
    config_lib.validate(c)
  with pytest.raises(ValueError, match=re.escape(expected)):
    config_lib.validate(c)


@pytest.mark.parametrize("lstm,bucket_width", [("keras", 8), ("unrolled", 0)])
def test_validate_accepts_jit_compile_where_xla_compiles(lstm, bucket_width):
  # Both trained through the binary with XLA (deterministic=False), 2026-12-05.
  c = load("charades_sta_i3d")
  c.train.jit_compile, c.train.deterministic = True, False
  c.model.lstm_implementation, c.data.bucket_width = lstm, bucket_width
  config_lib.validate(c)


def test_train_binary_refuses_jit_compile_before_training(tmp_path):
  # It used to train without XLA after one buried UserWarning.
  prepared = helpers.write_tiny_prepared(str(tmp_path / "data"))
  config = helpers.write_tiny_config_file(str(tmp_path / "tiny.py"), prepared, epochs=1)
  r = helpers.run_binary("cimha_tf.train", f"--config={config}", f"--workdir={tmp_path / 'wd'}",
                         "--config.train.jit_compile=True", check=False)
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
  assert "config.train.jit_compile=True: expected False with train.deterministic=True" in r.stderr
  assert not (tmp_path / "wd").exists()


def test_charades_bounds_windows_by_the_longest_training_moment_with_the_paper_form_a_switch():
  c = load("charades_sta_i3d")
  assert c.eval.max_span_from_train and c.eval.max_span_fraction == 1.0
  paper = load("charades_sta_i3d", "--config.eval.max_span_from_train=False")
  from cimha_tf.evaluation import runner
  assert runner.resolve_max_span(paper) is None  # every (start, end) pair: the paper's
  for bad in (0.0, 1.5):
    c.eval.max_span_fraction = bad
    with pytest.raises(ValueError, match=re.escape(f"config.eval.max_span_fraction={bad}: "
                                                   "expected in (0, 1]")):
      config_lib.validate(c)

"""Faults and concurrency with real processes (tests/helpers.py): two writers on one
folder are refused with the holder named; a kill during a shard write or an export leaves
the previous files whole and nothing a reader would take for complete; the rerun finishes.
(Kills during training: tests/test_resume.py.)"""

import glob
import os
import signal

import pytest

from cimha_tf.common import atomic
from cimha_tf.common import lock
from cimha_tf.data import pipeline
from cimha_tf.data import synthetic
from tests import helpers


def _snapshot(folder):
  out = {}
  for dirpath, _, files in os.walk(folder):
    for f in files:
      p = os.path.join(dirpath, f)
      out[os.path.relpath(p, folder)] = open(p, "rb").read()
  return out


def _in_use(out, holder):
  return f"FATAL: FolderInUse: {out} is in use by process {holder.pid} on "


def test_two_prepares_and_a_kill_during_a_shard_write(tmp_path):
  """B, started while A writes a shard into its build folder, is refused naming A (they
  shared temporary shard names: A's test shard held B's records, then garbage). A, killed
  there, leaves the previous complete folder as it was (a re-prepare deleted it first).
  The rerun finishes and clears A's leftovers."""
  paths = synthetic.write_synthetic_dataset(str(tmp_path / "syn"), num_train_videos=120,
                                            num_test_videos=6, feature_dim=256, glove_dim=8,
                                            progress=False)
  out = str(tmp_path / "prep")
  cmd = helpers.python_module("cimha_tf.prepare_data", "--dataset=charades_sta",
                         f"--annotations={paths['annotations']}",
                         f"--features={paths['features']}", f"--output_dir={out}")
  status, log = helpers.run_to_end(cmd + ["--max_video_len=32"])
  assert status == 0, log[-3000:]
  before = _snapshot(out)

  a = helpers.kill_when(cmd + ["--max_video_len=16"], helpers.file_appears(
      str(tmp_path / f"{atomic.TMP_PREFIX}*-prep" / ".train-*.tfrecord.tmp")), sig=signal.SIGSTOP)
  try:
    status, log = helpers.run_to_end(cmd + ["--max_video_len=16"])
    assert status == 1 and _in_use(out, a.process) in log, log[-3000:]
  finally:
    a.process.kill()
    a.process.wait()
  assert _snapshot(out) == before
  assert glob.glob(str(tmp_path / f"{atomic.TMP_PREFIX}*-prep"))  # A's half-built folder
  assert pipeline.read_metadata(out)["max_video_len"] == 32

  status, log = helpers.run_to_end(cmd + ["--max_video_len=16"])
  assert status == 0, log[-3000:]
  assert "taking over the lock of process" in log
  assert sorted(os.listdir(tmp_path)) == ["prep", "syn"]  # no build folder, no lock file
  assert pipeline.read_metadata(out)["max_video_len"] == 16
  for split in ("train", "test"):
    pipeline.verify_split(out, split)  # every record readable, counts as metadata.json


def test_a_second_trainer_on_one_workdir_is_refused(tmp_path):
  """Two trainers on one --workdir both exited 0 with one's config.json, the other's
  best.keras and both in history.csv. B now stops before writing anything."""
  prepared = helpers.write_tiny_prepared(str(tmp_path / "data"), num_videos=(4, 2, 2))
  config = helpers.write_tiny_config_file(str(tmp_path / "c.py"), prepared, epochs=1)
  w = str(tmp_path / "w")
  cmd = helpers.python_module("cimha_tf.train", f"--config={config}", f"--workdir={w}")
  a = helpers.kill_when(cmd, helpers.file_appears(lock.lock_path(w)), sig=signal.SIGSTOP)
  try:
    before = _snapshot(w) if os.path.isdir(w) else {}
    status, log = helpers.run_to_end(cmd + ["--config.seed=1"])
    assert status == 1 and _in_use(w, a.process) in log, log[-3000:]
    assert ": wait for it to finish, or use another folder" in log
    assert (_snapshot(w) if os.path.isdir(w) else {}) == before
  finally:
    a.process.kill()
    a.process.wait()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return helpers.trained_tiny_workdirs(str(tmp_path_factory.getbasetemp() / "tiny_train"))


@pytest.mark.slow
def test_a_killed_export_leaves_no_version_for_tf_serving(run, tmp_path):
  """Killed while the SavedModel is written: no version folder TF Serving would load (it
  was left half-written under its number); the rerun writes it whole."""
  from cimha_tf.deploy import saved_model
  base = str(tmp_path / "export")
  cmd = helpers.python_module("cimha_tf.export", f"--workdir={run['workdir']}", f"--output={base}")
  helpers.kill_when(cmd, helpers.file_appears(os.path.join(base, "cimha", f"{atomic.TMP_PREFIX}*-1", "*")))
  assert not os.path.exists(os.path.join(base, "cimha", "1"))
  with pytest.raises(FileNotFoundError, match="no SavedModel"):
    saved_model.resolve_version_dir(base)
  status, log = helpers.run_to_end(cmd)
  assert status == 0, log[-3000:]
  assert sorted(os.listdir(os.path.join(base, "cimha"))) == ["1"]
  assert saved_model.resolve_version_dir(base) == os.path.join(base, "cimha", "1")
  saved_model.load(os.path.join(base, "cimha", "1"))

"""Resume: a run killed anywhere and started again ends with the weights, checkpoints and
history of an unbroken run with the same seed; a damaged or hand-edited backup is an error
naming the file and the way out, with nothing lost; a finished run started again trains
nothing."""

import csv
import json
import os
import shutil
import zipfile

import numpy as np
import pytest

from cimha_tf.common import atomic
from cimha_tf.training import backup
from cimha_tf.experiment import workdir as wd
from cimha_tf.training import trainer
from tests import helpers

EPOCHS = 2  # helpers.trained_tiny_workdirs's runs: the unbroken reference


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return helpers.trained_tiny_workdirs(str(tmp_path_factory.getbasetemp() / "tiny_train"))


def _history(workdir):
  with open(os.path.join(workdir, trainer.HISTORY)) as f:
    return list(csv.DictReader(f))


def _weights(path):
  return wd.load_model(path).get_weights()


def _assert_same_run(w, reference):
  """Same weights bit for bit in last.keras and best.keras, same history."""
  for name in (wd.LAST, wd.BEST):
    for a, b in zip(_weights(os.path.join(w, name)), _weights(os.path.join(reference, name)),
                    strict=True):
      np.testing.assert_array_equal(a, b, err_msg=name)
  assert _history(w) == _history(reference)
  assert [int(r["epoch"]) for r in _history(w)] == list(range(EPOCHS))  # each epoch once
  for name in (trainer.BEST_STATE, os.path.join(wd.BACKUP, wd.BACKUP_STATE)):
    with open(os.path.join(w, name)) as f, open(os.path.join(reference, name)) as g:
      ours, theirs = json.load(f), json.load(g)
    if name == trainer.BEST_STATE:
      assert ours == theirs
    else:  # the h5 files hold their own path: compare what the epoch trained, not bytes
      assert ours["epoch"] == theirs["epoch"]
      assert ours["seed_generators"] == theirs["seed_generators"]


def _train_cmd(run, w):
  return helpers.python_module("cimha_tf.train", f"--config={run['config']}", f"--workdir={w}")


def _kill_then_resume(run, w, pattern):
  """Kills a run as soon as `pattern` (under w) exists, then runs it to the end; returns
  the epoch the backup held at the kill and the resumed run's output."""
  helpers.kill_when(_train_cmd(run, w), helpers.file_appears(os.path.join(w, pattern)))
  state = os.path.join(w, wd.BACKUP, wd.BACKUP_STATE)
  held = json.load(open(state))["epoch"] if os.path.exists(state) else 0
  status, out = helpers.run_to_end(_train_cmd(run, w))
  assert status == 0, out[-4000:]
  return held, out


def test_killed_between_the_backup_files_resumes_to_the_unbroken_run(run, tmp_path):
  """The kill lands while epoch 2's backup weights are written (Keras's BackupAndRestore:
  new weights, old epoch count, so epoch 2 was trained twice on epoch-2 weights)."""
  w = str(tmp_path / "w")
  held, out = _kill_then_resume(
      run, w, os.path.join(wd.BACKUP, f"{atomic.TMP_PREFIX}*-{backup.weights_name(2)}"))
  # Usually 1 (killed mid-write); 2 only when the poll came after the state's rename.
  assert held in (1, 2)
  if held == 1:
    assert f"{w}: resuming after epoch 1 of {EPOCHS}\n" in out
  assert not [n for n in os.listdir(os.path.join(w, wd.BACKUP)) if n.startswith(atomic.TMP_PREFIX)]
  _assert_same_run(w, run["workdir"])


@pytest.mark.slow
@pytest.mark.parametrize("name", [wd.BEST, wd.LAST])
def test_killed_during_a_checkpoint_write_resumes_to_the_unbroken_run(run, tmp_path, name):
  """Epoch 1's checkpoint is being written: Keras wrote in place and left a 0-byte
  best.keras for good. Now the name holds the old file or none, and the rerun writes it."""
  w = str(tmp_path / "w")
  helpers.kill_when(_train_cmd(run, w), helpers.file_appears(os.path.join(w, f"{atomic.TMP_PREFIX}*-{name}")))
  assert not os.path.exists(os.path.join(w, name)) or zipfile.is_zipfile(os.path.join(w, name))
  status, out = helpers.run_to_end(_train_cmd(run, w))
  assert status == 0, out[-4000:]
  _assert_same_run(w, run["workdir"])


def _copy(run, tmp_path):
  w = tmp_path / "w"
  shutil.copytree(run["workdir"], w)
  return w


def _unchanged(w):
  """Everything under w, for asserting that a refused resume lost nothing."""
  return {str(p.relative_to(w)): p.read_bytes() for p in sorted(w.rglob("*")) if p.is_file()}


def _state(w):
  return w / wd.BACKUP / wd.BACKUP_STATE


def _edit_state(**changes):
  def edit(w):
    state = json.loads(_state(w).read_text())
    state.update(changes)
    _state(w).write_text(json.dumps(state))
  return edit


def _flip_a_bit(w):
  p = w / wd.BACKUP / backup.weights_name(2)
  data = bytearray(p.read_bytes())
  data[len(data) // 2] ^= 0x10
  p.write_bytes(bytes(data))


def _truncate(w):
  p = w / wd.BACKUP / backup.weights_name(2)
  p.write_bytes(p.read_bytes()[:1000])


def _epoch_1_weights_under_epoch_2s_name(w):
  shutil.copy(w / wd.BACKUP / backup.weights_name(1), w / wd.BACKUP / backup.weights_name(2))


def _keras_backup(w):
  shutil.rmtree(w / wd.BACKUP)
  (w / wd.BACKUP).mkdir()
  (w / wd.BACKUP / "training_metadata.json").write_text('{"epoch": 2, "batch": 0}')


_DELETE_2 = r"delete .*epoch-00002\.weights\.h5 to resume from the intact backup of epoch 1"


@pytest.mark.parametrize("damage, message", [
    (_flip_a_bit, r"epoch-00002\.weights\.h5 does not match its SHA-256 in state\.json .*" + _DELETE_2),
    (_truncate, r"epoch-00002\.weights\.h5 has 1000 bytes, state\.json recorded \d+ .*" + _DELETE_2),
    (_epoch_1_weights_under_epoch_2s_name, r"does not match its SHA-256 .*" + _DELETE_2),
    (_edit_state(epoch=-3), r"state\.json: the state's epoch is -3, expected a positive integer "
                            r".*set \"epoch\": 2 back"),
    (_edit_state(epoch=2.7), r"epoch is 2\.7, expected a positive integer"),
    (_edit_state(epoch="NaN"), r"epoch is 'NaN', expected a positive integer"),
    (_edit_state(epoch=True), r"epoch is True, expected a positive integer"),
    (_edit_state(epoch=1), r"says epoch 1 but names weights 'epoch-00002\.weights\.h5' .*"
                           r"different epochs"),
    (lambda w: _state(w).write_text('{"epoch": 2, "weig'), r"state\.json: unreadable"),
    (_keras_backup, r"a resume backup of an earlier cimha_tf .*BackupAndRestore"),
    (lambda w: _state(w).unlink(), r"state\.json is missing but .*'epoch-00002\.weights\.h5'"),
])
def test_damaged_or_edited_backup_is_refused_with_nothing_lost(run, tmp_path, damage, message):
  w = _copy(run, tmp_path)
  damage(w)
  before = _unchanged(w)
  with pytest.raises(ValueError, match=message):
    trainer.train(helpers.tiny_config(run["prepared"], epochs=3, **helpers.TINY_RUN_TRAIN), str(w), verbose=0)
  assert _unchanged(w) == before


def test_the_way_out_resumes_from_the_previous_epoch_to_the_unbroken_run(run, tmp_path, capsys):
  """Deleting the damaged epoch-2 file, as the error says: epoch 2 is trained again from
  epoch 1's backup, replaying its data order and dropout exactly."""
  w = _copy(run, tmp_path)
  _flip_a_bit(w)
  os.remove(w / wd.BACKUP / backup.weights_name(2))
  trainer.train(helpers.tiny_config(run["prepared"], epochs=EPOCHS, **helpers.TINY_RUN_TRAIN), str(w), verbose=0)
  out = capsys.readouterr().out
  assert "resuming from the previous backup, after epoch 1" in out
  assert f"{w}: resuming after epoch 1 of {EPOCHS}\n" in out
  _assert_same_run(str(w), run["workdir"])
  state = json.loads(_state(w).read_text())  # epoch 1's file stays the previous generation
  assert (state["epoch"], state["previous"]["epoch"]) == (2, 1)
  assert sorted(os.listdir(w / wd.BACKUP)) == sorted(
      [wd.BACKUP_STATE, backup.weights_name(1), backup.weights_name(2)])


def test_a_finished_run_started_again_trains_nothing(run, tmp_path, capsys):
  w = _copy(run, tmp_path)
  before = _unchanged(w)
  trainer.train(helpers.tiny_config(run["prepared"], epochs=EPOCHS, **helpers.TINY_RUN_TRAIN), str(w), verbose=0)
  assert f"{w}: all {EPOCHS} epochs were trained already; nothing to train" in capsys.readouterr().out
  after = _unchanged(w)
  for name in (wd.CONFIG, wd.VOCAB, wd.DATA_META):  # rewritten, the same
    assert after.pop(name) == before.pop(name)
  # TensorBoard opens a new (empty) event file per run.
  assert {k: v for k, v in after.items() if not k.startswith(wd.LOGS)} == {
      k: v for k, v in before.items() if not k.startswith(wd.LOGS)}

"""Resume: a training run killed after its first epoch, started again on the same workdir,
finishes with the same total number of epochs and a valid model; a finished run started
again trains nothing."""

import csv
import json
import os
import subprocess
import sys
import time

import numpy as np

from tests import helpers
from cimha_tf.training import trainer
from cimha_tf.experiment import workdir as wd

EPOCHS = 3


def _epochs(workdir):
  with open(os.path.join(workdir, trainer.HISTORY)) as f:
    return [int(r["epoch"]) for r in csv.DictReader(f)]


def _backup_epoch(workdir):
  path = os.path.join(workdir, wd.BACKUP, wd.BACKUP_STATE)
  try:
    with open(path) as f:
      return json.load(f)["epoch"]
  except (OSError, ValueError):
    return 0


def test_killed_run_resumes_to_the_same_total_epochs(tmp_path):
  prepared = helpers.write_tiny_prepared(str(tmp_path / "data"), num_videos=(8, 2, 2))
  config = helpers.write_tiny_config_file(str(tmp_path / "c.py"), prepared, epochs=EPOCHS)
  w = str(tmp_path / "w")
  cmd = [sys.executable, "-m", "cimha_tf.train", f"--config={config}", f"--workdir={w}"]
  proc = subprocess.Popen(cmd, cwd=helpers.REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  deadline = time.time() + 600
  # Polled often: the kill must land in epoch 2, not while epoch 2's backup is written
  # (Keras writes it in place; a truncated backup is refused on resume, as it should be).
  while _backup_epoch(w) < 1 and proc.poll() is None and time.time() < deadline:
    time.sleep(0.01)
  proc.kill()  # SIGKILL: no cleanup, whatever epoch 2 had done is lost
  proc.wait(timeout=60)
  killed_at = _backup_epoch(w)
  assert 1 <= killed_at < EPOCHS, f"run ended before it could be killed: {proc.stderr.read()[-3000:]}"

  out = helpers.run_binary("cimha_tf.train", f"--config={config}", f"--workdir={w}").stdout
  assert f"{w}: resuming after epoch {killed_at} of {EPOCHS}\n" in out
  epochs = _epochs(w)
  # Epochs before the kill are not trained again; the killed one is redone; total = EPOCHS.
  assert epochs[:killed_at] == list(range(killed_at))
  assert sorted(set(epochs)) == list(range(EPOCHS))
  assert epochs.count(0) == 1
  assert _backup_epoch(w) == EPOCHS

  from cimha_tf.data import pipeline
  model = wd.load_model(wd.checkpoint_path(w, "last"))
  inputs, _ = next(iter(pipeline.eval_dataset(prepared, "test", 4)))
  out = model(inputs, training=False)
  mask = inputs["video_mask"].numpy()
  np.testing.assert_allclose((out["start_probs"].numpy() * mask).sum(1), 1.0, atol=1e-5)
  assert os.path.exists(wd.path(w, wd.BEST))

  before = _epochs(w)
  out = helpers.run_binary("cimha_tf.train", f"--config={config}", f"--workdir={w}").stdout
  assert f"{w}: all {EPOCHS} epochs were trained already; nothing to train" in out
  assert _epochs(w) == before  # finished: started again, it trains nothing

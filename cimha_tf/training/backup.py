"""The resume backup: WORKDIR/backup, written after every finished epoch, verified before
a run resumes from it.

    backup/epoch-0000N.weights.h5   model and optimizer variables after epoch N (Keras's
                                    save_weights), written under a temporary name, renamed
    backup/state.json               {"epoch": N, "weights": its file, "sha256", "bytes",
                                     "seed_generators": the dropout RNG states,
                                     "previous": the same for epoch N-1}

state.json is the one record of what finished, replaced atomically after the weights file
is complete, and it names the file by epoch: a kill at any point leaves the old state with
the old file (the new one an unreferenced leftover, deleted at the next save), or the new
state with the new file. Before resuming, the file's size and SHA-256 must match the
state and the epoch must be a positive integer naming that file; anything else (a
bit-flipped or truncated file, a hand-edited epoch, files from different epochs) is an
error naming the file and the way out, which keeps the finished epochs: the previous
epoch's file stays until the next one is complete.

Exact replay: with the seed generators' states restored here and the input stream started
at the resumed epoch's first batch (pipeline.train_dataset(start_batch=)), a killed and
resumed deterministic run ends with the weights an unbroken one has.
Keras's BackupAndRestore (used before) wrote its weights and epoch in place as two files:
a kill between them resumed "after epoch 2" from epoch-3 weights, without a word.
"""

import hashlib
import json
import os
import re

import keras

from cimha_tf.common import atomic

STATE = "state.json"  # = workdir.BACKUP_STATE
FORMAT = 1
_WEIGHTS = re.compile(r"^epoch-(\d{5,})\.weights\.h5$")
# What keras.callbacks.BackupAndRestore wrote (workdirs trained before this format).
_KERAS_FILES = ("latest.weights.h5", "training_metadata.json")


def weights_name(epoch):
  return f"epoch-{epoch:05d}.weights.h5"


def sha256(path):
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _seed_generators(model):
  return [v for v in model.variables if v.path.split("/")[-1] == "seed_generator_state"]


class BackupError(ValueError):
  """The backup cannot be resumed from; the message names the file and the way out."""


def _check_entry(entry, state_path, where):
  """The epoch, file name and checksum fields of one state entry are well formed."""
  if not isinstance(entry, dict):
    raise BackupError(f"{state_path}: {where} is {entry!r}, expected an object")
  epoch, name = entry.get("epoch"), entry.get("weights")
  named = _WEIGHTS.match(name) if isinstance(name, str) else None
  hint = (f" ({name} is the backup of epoch {int(named.group(1))}: set \"epoch\": "
          f"{int(named.group(1))} back)") if named else ""
  if type(epoch) is not int or epoch < 1:  # bool, float, "NaN", negative
    raise BackupError(f"{state_path}: {where}'s epoch is {epoch!r}, expected a positive integer "
                      f"(edited or damaged by hand?){hint}")
  if not named or int(named.group(1)) != epoch:
    raise BackupError(f"{state_path}: {where} says epoch {epoch} but names weights {name!r} "
                      f"(expected {weights_name(epoch)!r}): the state and the weights are of "
                      f"different epochs{hint}")
  if not isinstance(entry.get("sha256"), str) or type(entry.get("bytes")) is not int:
    raise BackupError(f"{state_path}: {where} has no sha256/bytes of its weights file")
  return epoch


def _verify(backup_dir, entry):
  """None when entry's weights file is present and intact, else what is wrong with it."""
  path = os.path.join(backup_dir, entry["weights"])
  if not os.path.isfile(path):
    return f"{path} is missing"
  size = os.path.getsize(path)
  if size != entry["bytes"]:
    return f"{path} has {size} bytes, {STATE} recorded {entry['bytes']} (truncated or replaced)"
  if sha256(path) != entry["sha256"]:
    return (f"{path} does not match its SHA-256 in {STATE} (changed or damaged after it was "
            "written)")
  return None


def read_state(backup_dir):
  """The verified entry to resume from ({"epoch", "weights", ...}, weights as a path), or
  None when no epoch has finished. Raises BackupError naming the file and the way out."""
  state_path = os.path.join(backup_dir, STATE)
  if not os.path.exists(state_path):
    legacy = [n for n in _KERAS_FILES if os.path.exists(os.path.join(backup_dir, n))]
    if legacy:
      raise BackupError(
          f"{backup_dir} holds {legacy}, a resume backup of an earlier cimha_tf (Keras's "
          "BackupAndRestore, which nothing verifies): resume with that version, or delete "
          f"{backup_dir} to train again from epoch 0 (best.keras and last.keras stay)")
    later = sorted(n for n in os.listdir(backup_dir) if _WEIGHTS.match(n)
                   and n != weights_name(1)) if os.path.isdir(backup_dir) else []
    if later:  # only epoch 1's file can precede the first state (a kill between the two)
      raise BackupError(f"{state_path} is missing but {backup_dir} holds {later}: finished "
                        "epochs whose record is gone (deleted by hand?); nothing can verify "
                        f"them: restore {STATE}, or delete {backup_dir} to train again from "
                        "epoch 0 (best.keras and last.keras stay)")
    return None  # a kill before the first epoch's state: leftovers only, nothing finished
  try:
    with open(state_path, encoding="utf-8") as f:
      state = json.load(f)
  except (OSError, ValueError) as e:
    raise BackupError(f"{state_path}: unreadable ({type(e).__name__}: {e}); it is replaced "
                      "atomically, so it was edited or damaged after writing: restore it, or "
                      f"delete {backup_dir} to train again from epoch 0") from e
  if not isinstance(state, dict) or state.get("format") != FORMAT:
    raise BackupError(f"{state_path}: expected a format-{FORMAT} backup state, got "
                      f"{str(state)[:200]}")
  epoch = _check_entry(state, state_path, "the state")
  previous = state.get("previous")
  if previous is not None and _check_entry(previous, state_path, "'previous'") != epoch - 1:
    raise BackupError(f"{state_path}: 'previous' is epoch {previous['epoch']}, expected "
                      f"{epoch - 1}")
  problem = _verify(backup_dir, state)
  if problem and previous is not None and not os.path.exists(
      os.path.join(backup_dir, state["weights"])):
    # The way out given below, taken: the damaged file was deleted.
    if _verify(backup_dir, previous) is None:
      print(f"{backup_dir}: {problem}: resuming from the previous backup, after epoch "
            f"{epoch - 1} (epoch {epoch} is trained again, to the same weights when "
            "train.deterministic)")
      return {**previous, "weights": os.path.join(backup_dir, previous["weights"])}
  if problem:
    if previous is not None and _verify(backup_dir, previous) is None:
      way = (f"delete {os.path.join(backup_dir, state['weights'])} to resume from the intact "
             f"backup of epoch {epoch - 1} (epoch {epoch} is trained again)")
    else:
      way = (f"no earlier backup is intact: delete {backup_dir} to train again from epoch 0 "
             "(best.keras and last.keras stay), or use a new --workdir")
    raise BackupError(f"cannot resume after epoch {epoch}: {problem}; {way}")
  return {**state, "weights": os.path.join(backup_dir, state["weights"])}


class Backup(keras.callbacks.Callback):
  """Writes the backup after every epoch (put it last: an epoch counts as finished once
  everything else of it is written) and restores `resume` (read_state's entry) at the
  start of training; fit's initial_epoch must be resume's epoch."""

  def __init__(self, backup_dir, resume=None):
    super().__init__()
    self.backup_dir, self.resume = backup_dir, resume
    # The entry of the last finished epoch, kept as the next state's "previous".
    self._last = resume and {**resume, "weights": os.path.basename(resume["weights"])}

  def on_train_begin(self, logs=None):
    if not self.resume:
      return
    model = self.model
    if model.optimizer is not None and not model.optimizer.built:
      model.optimizer.build(model.trainable_variables)
    model.load_weights(self.resume["weights"])
    states, gens = self.resume.get("seed_generators"), _seed_generators(model)
    if (not isinstance(states, list) or len(states) != len(gens)
        or not all(isinstance(x, list) and all(type(v) is int for v in x) for x in states)):
      raise BackupError(f"{os.path.join(self.backup_dir, STATE)}: {len(gens)} dropout seed "
                        f"states expected, found {states!r:.200}: not this model's backup")
    for var, value in zip(gens, states):
      var.assign(value)

  def on_epoch_end(self, epoch, logs=None):
    os.makedirs(self.backup_dir, exist_ok=True)
    done = epoch + 1
    final = os.path.join(self.backup_dir, weights_name(done))
    with atomic.path(final) as tmp:
      self.model.save_weights(tmp)
    entry = {"epoch": done, "weights": weights_name(done), "sha256": sha256(final),
             "bytes": os.path.getsize(final),
             "seed_generators": [v.numpy().tolist() for v in _seed_generators(self.model)]}
    state_path = os.path.join(self.backup_dir, STATE)
    previous = self._last if self._last and self._last["epoch"] == epoch else None
    previous = previous and {k: v for k, v in previous.items() if k not in ("previous", "format")}
    atomic.write_json(state_path, {"format": FORMAT, **entry, "previous": previous})
    self._last = entry
    keep = {entry["weights"], previous and previous["weights"]}
    for name in os.listdir(self.backup_dir):
      if _WEIGHTS.match(name) and name not in keep:
        os.remove(os.path.join(self.backup_dir, name))

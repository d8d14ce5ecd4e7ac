"""Training callbacks: stop on NaN loss, keep the best and the last checkpoint, log the
history. Every file is written under a temporary name and renamed into place
(cimha_tf.data.atomic): Keras's own ModelCheckpoint and CSVLogger write in place, and a
kill during the save left a 0-byte best.keras for good."""

import csv
import math
import os

import keras

from cimha_tf.common import atomic
from cimha_tf.common import jsonfile
from cimha_tf.evaluation import runner


def save_model(model, path):
  """model.save(path), atomically."""
  with atomic.path(path) as tmp:
    model.save(tmp)


class StopOnNaN(keras.callbacks.Callback):
  """Raises (so the binary exits non-zero) with where it happened and what to try."""

  def __init__(self):
    super().__init__()
    self._epoch = 0

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    loss = (logs or {}).get("loss")
    if loss is not None and not math.isfinite(float(loss)):
      self.model.stop_training = True
      raise FloatingPointError(
          f"training loss is {loss} at epoch {self._epoch + 1}, batch {batch + 1}: stopped. "
          "Try a lower --config.train.learning_rate, and check the prepared features for "
          "extreme values.")


class BestCheckpoint(keras.callbacks.Callback):
  """After each epoch: evaluates the val split, adds `val_<metric>` to the epoch logs
  (TensorBoard and History see them), and saves the model when `monitor` improves.

  The best value so far lives in `state_path`, so a resumed run keeps comparing against
  the best of the epochs before the interruption.
  """

  def __init__(self, data_dir, split, batch_size, top_k, best_path, state_path, monitor="R1@0.5",
               max_span_fraction=None):
    super().__init__()
    self.data_dir, self.split = data_dir, split
    self.max_span_fraction = max_span_fraction
    self.batch_size, self.top_k = batch_size, top_k
    self.best_path, self.state_path, self.monitor = best_path, state_path, monitor
    self.best = -math.inf
    if os.path.exists(state_path):
      best = jsonfile.read_json_object(state_path, "best state", "a JSON object").get("best")
      if type(best) not in (int, float) or math.isnan(best):
        raise ValueError(f"{state_path}: 'best' is {best!r}, expected a number (edited or "
                         f"damaged by hand?); delete it to let the next epoch set it again")
      self.best = float(best)

  def on_epoch_end(self, epoch, logs=None):
    metrics, _ = runner.evaluate_split(self.model, self.data_dir, self.split, self.batch_size,
                                       self.top_k, progress=False,
                                       max_span_fraction=self.max_span_fraction)
    if logs is not None:
      logs.update({f"val_{k}": v for k, v in metrics.items() if isinstance(v, float)})
    value = metrics[self.monitor]
    if value > self.best:
      print(f"\nepoch {epoch + 1}: val {self.monitor} improved {self.best:.2f} -> {value:.2f}, "
            f"saving {self.best_path}")
      self.best = value
      # The model first: a kill between the two leaves the old state, and the epoch, redone
      # on resume, saves both again.
      save_model(self.model, self.best_path)
      atomic.write_json(self.state_path, {"best": value, "monitor": self.monitor,
                                          "epoch": epoch + 1, "metrics": metrics},
                        sort_keys=False)


class LastCheckpoint(keras.callbacks.Callback):
  """The model after every epoch (keras.callbacks.ModelCheckpoint, atomically)."""

  def __init__(self, path):
    super().__init__()
    self.path = path

  def on_epoch_end(self, epoch, logs=None):
    save_model(self.model, self.path)


class History(keras.callbacks.Callback):
  """history.csv, one row per finished epoch ("epoch" then the logs' keys, sorted, as
  keras.callbacks.CSVLogger writes): rewritten whole, atomically, after each epoch. A
  resumed run (initial_epoch) first drops the rows of epochs the backup does not hold (the
  epoch being redone), so no epoch appears twice."""

  def __init__(self, path, initial_epoch=0):
    super().__init__()
    self.path, self.initial_epoch, self.rows = path, initial_epoch, []

  def on_train_begin(self, logs=None):
    self.rows = []
    if os.path.exists(self.path):
      with open(self.path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
          try:
            epoch = int(row.get("epoch"))
          except (TypeError, ValueError):
            continue  # the torn last line of a file appended to in place (older versions)
          if epoch < self.initial_epoch:
            self.rows.append(row)

  def on_epoch_end(self, epoch, logs=None):
    self.rows.append({"epoch": epoch, **{k: float(v) if hasattr(v, "__float__") else v
                                         for k, v in (logs or {}).items()}})
    keys = sorted({k for r in self.rows for k in r} - {"epoch"})
    with atomic.open_file(self.path, "w") as f:
      writer = csv.DictWriter(f, ["epoch", *keys], restval="NA", lineterminator="\n")
      writer.writeheader()
      writer.writerows(self.rows)

"""Training callbacks: stop on NaN loss, keep the best checkpoint by a validation metric."""

import json
import math
import os

import keras

from cimha_tf.common.jsonfile import read_json_object
from cimha_tf.evaluation import runner


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
      state = read_json_object(state_path, "best state", expected='{"best": number}')
      if not isinstance(state.get("best"), (int, float)):
        raise ValueError(f"{state_path}: expected {{\"best\": number}}, got {state}")
      self.best = state["best"]

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
      self.model.save(self.best_path)
      tmp = self.state_path + ".tmp"
      with open(tmp, "w") as f:
        json.dump({"best": value, "monitor": self.monitor, "epoch": epoch + 1,
                   "metrics": metrics}, f, indent=1)
      os.replace(tmp, self.state_path)

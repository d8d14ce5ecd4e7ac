"""The optimizer a run trains with, from config.train: Adam (AdamW with weight decay), a
learning-rate schedule over the whole run, and gradient clipping.

The schedule is a function of the optimizer's step count, which the backup restores, so a
resumed run continues on the same curve. Its length is epochs x steps per epoch when the
run starts: a resume with a larger train.epochs stretches the rest of the curve.
"""

import keras
from keras import ops

from cimha_tf.experiment.config import SCHEDULES, optimizer_setting


@keras.saving.register_keras_serializable(package="cimha_tf")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up from ~0 to `peak` over `warmup_steps`, then constant, or a linear or
  cosine decay to `peak * final_fraction` at `total_steps` (held there after).

  Args:
    peak: the learning rate after warm-up.
    total_steps: the run's optimizer steps.
    warmup_steps: steps of the warm-up (0: none).
    decay: one of SCHEDULES.
    final_fraction: the last step's rate as a fraction of `peak`.
  """

  def __init__(self, peak, total_steps, warmup_steps=0, decay="linear", final_fraction=0.0):
    if decay not in SCHEDULES:
      raise ValueError(f"decay={decay!r}: expected one of {SCHEDULES}")
    self.peak, self.total_steps = float(peak), max(1, int(total_steps))
    self.warmup_steps, self.decay = max(0, int(warmup_steps)), decay
    self.final_fraction = float(final_fraction)

  def __call__(self, step):
    step = ops.cast(step, "float32")
    warm = (ops.minimum(1.0, (step + 1.0) / float(self.warmup_steps))
            if self.warmup_steps else 1.0)
    span = float(max(1, self.total_steps - self.warmup_steps))
    done = ops.clip((step - float(self.warmup_steps)) / span, 0.0, 1.0)
    if self.decay == "linear":
      shape = 1.0 - done
    elif self.decay == "cosine":
      shape = 0.5 * (1.0 + ops.cos(3.141592653589793 * done))
    else:
      shape = ops.ones_like(done)
    return self.peak * warm * (self.final_fraction + (1.0 - self.final_fraction) * shape)

  def get_config(self):
    return {"peak": self.peak, "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps, "decay": self.decay,
            "final_fraction": self.final_fraction}


def learning_rate(train_config, steps_per_epoch):
  """config.train's learning rate: a float (constant, no warm-up) or a WarmupDecay.

  Args:
    train_config: config.train (learning_rate, epochs, lr_schedule, warmup_fraction,
      final_lr_fraction; missing keys, as in older workdirs' configs, mean constant).
    steps_per_epoch: optimizer steps per epoch.
  """
  c = train_config
  schedule = optimizer_setting(c, "lr_schedule")
  warmup_fraction = float(optimizer_setting(c, "warmup_fraction"))
  if schedule == "constant" and not warmup_fraction:
    return float(c.learning_rate)
  total = int(c.epochs) * int(steps_per_epoch)
  return WarmupDecay(c.learning_rate, total, round(warmup_fraction * total), schedule,
                     float(optimizer_setting(c, "final_lr_fraction")))


def make_optimizer(train_config, steps_per_epoch):
  """Adam, or AdamW when train.weight_decay > 0, with train.clip_norm (global norm; 0: off).

  Args:
    train_config: config.train.
    steps_per_epoch: optimizer steps per epoch (for the schedule's length).
  """
  lr = learning_rate(train_config, steps_per_epoch)
  clip = float(optimizer_setting(train_config, "clip_norm"))
  kwargs = {"global_clipnorm": clip} if clip else {}
  weight_decay = float(optimizer_setting(train_config, "weight_decay"))
  if weight_decay:
    return keras.optimizers.AdamW(lr, weight_decay=weight_decay, **kwargs)
  return keras.optimizers.Adam(lr, **kwargs)


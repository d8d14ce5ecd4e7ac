"""config.train's optimizer: the schedule's values against a direct computation, the
optimizer kinds and clipping, round trips, and range errors naming the key. (Resume on the
schedule: tests/test_resume.py's runs train with it, helpers.trained_tiny_workdirs.)"""

import math

import keras
import ml_collections
import numpy as np
import pytest

from cimha_tf.experiment import config as config_lib
from cimha_tf.training import optimizer


def _train(**overrides):
  c = ml_collections.ConfigDict(dict(learning_rate=1e-3, epochs=4, lr_schedule="constant",
                                     warmup_fraction=0.0, final_lr_fraction=0.0, clip_norm=0.0,
                                     weight_decay=0.0))
  c.update(overrides)
  return c


def _expected(step, peak, total, warmup, decay, final):
  warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
  done = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
  shape = {"linear": 1 - done, "cosine": 0.5 * (1 + math.cos(math.pi * done)),
           "constant": 1.0}[decay]
  return peak * warm * (final + (1 - final) * shape)


@pytest.mark.parametrize("decay", ["linear", "cosine", "constant"])
@pytest.mark.parametrize("warmup,final", [(0, 0.0), (10, 0.0), (10, 0.1)])
def test_schedule_matches_a_direct_computation(decay, warmup, final):
  s = optimizer.WarmupDecay(2e-3, 100, warmup, decay, final)
  for step in (0, 1, 5, 9, 10, 11, 50, 99, 100, 150):
    np.testing.assert_allclose(float(s(step)), _expected(step, 2e-3, 100, warmup, decay, final),
                               rtol=1e-5, atol=1e-9, err_msg=f"step {step}")


def test_schedule_ends_at_the_final_fraction_and_peaks_after_warmup():
  s = optimizer.WarmupDecay(1e-3, 200, 20, "linear", 0.05)
  rates = [float(s(t)) for t in range(200)]
  assert int(np.argmax(rates)) == 19 and rates[19] == pytest.approx(1e-3)
  assert float(s(200)) == pytest.approx(5e-5) and float(s(10_000)) == pytest.approx(5e-5)
  assert all(a >= b for a, b in zip(rates[19:], rates[20:]))


def test_schedule_round_trips_through_its_config_and_keras_serialization():
  s = optimizer.WarmupDecay(1e-3, 321, 7, "cosine", 0.2)
  t = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
  assert isinstance(t, optimizer.WarmupDecay) and t.get_config() == s.get_config()
  assert float(t(100)) == pytest.approx(float(s(100)))


def test_learning_rate_length_is_epochs_times_steps():
  assert optimizer.learning_rate(_train(), 10) == pytest.approx(1e-3)  # plain float: the paper's Adam
  s = optimizer.learning_rate(_train(lr_schedule="linear", warmup_fraction=0.1), 10)
  assert (s.total_steps, s.warmup_steps, s.decay) == (40, 4, "linear")
  warm_only = optimizer.learning_rate(_train(warmup_fraction=0.25), 10)
  assert float(warm_only(0)) == pytest.approx(1e-4) and float(warm_only(39)) == pytest.approx(1e-3)


def test_older_configs_without_the_keys_mean_constant_adam():
  c = ml_collections.ConfigDict(dict(learning_rate=3e-4, epochs=2))
  opt = optimizer.make_optimizer(c, 5)
  assert type(opt) is keras.optimizers.Adam
  assert float(opt.learning_rate) == pytest.approx(3e-4) and opt.global_clipnorm is None


def test_weight_decay_gives_adamw_and_clip_norm_clips_the_global_norm():
  opt = optimizer.make_optimizer(_train(weight_decay=0.01, clip_norm=1.0), 5)
  assert isinstance(opt, keras.optimizers.AdamW) and opt.weight_decay == pytest.approx(0.01)
  assert opt.global_clipnorm == pytest.approx(1.0)


  def two_steps(clip_norm):
    opt = optimizer.make_optimizer(_train(clip_norm=clip_norm, learning_rate=1.0), 5)
    v = keras.Variable(np.zeros(2, np.float32))
    for g in ([30.0, 40.0], [0.3, 0.4]):
      opt.apply_gradients([(keras.ops.convert_to_tensor(np.array(g, np.float32)), v)])
    return keras.ops.convert_to_numpy(v)

  # Clipped to a global norm of 0.5 both gradients are (0.3, 0.4): Adam then moves each
  # weight by exactly lr per step. Unclipped, the large first gradient dominates v_hat and
  # the second step is far smaller.
  np.testing.assert_allclose(two_steps(0.5), [-2.0, -2.0], rtol=1e-4)
  assert abs(two_steps(0.0)[0] + 2.0) > 0.1

@pytest.mark.parametrize("key,value,expected", [
    ("lr_schedule", "step", "one of"),
    ("warmup_fraction", 1.0, "in [0, 1)"),
    ("final_lr_fraction", -0.1, "in [0, 1]"),
    ("clip_norm", -1.0, ">= 0"),
    ("weight_decay", -1e-3, ">= 0"),
])
def test_out_of_range_values_name_the_key(key, value, expected):
  c = config_lib.experiment_config(data_dir="x", train_split="train", val_split="val",
                                   test_split="test", epochs=1)
  c.train[key] = value
  with pytest.raises(ValueError, match=rf"config\.train\.{key}=.*{expected.split()[0]}"):
    config_lib.validate(c)


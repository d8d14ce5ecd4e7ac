"""Losses of eqs 14 and 16, and compile_model wiring them for model.fit.

Total: NLL(start) + NLL(end) + lambda * masked BCE(inside). Each is a plain per-sample
Keras loss function attached to its output by name in `compile`, so Keras does the
reduction: mean over the local batch, then divided by the number of replicas under a
tf.distribute strategy, i.e. the mean over the GLOBAL batch (tests check this against a
single-device step). No train_step override: checkpoints, callbacks, steps_per_execution
and jit_compile keep working as Keras defines them.

NLL is taken on the output probabilities (the model's outputs are probabilities by
contract) with p clipped to >= EPS: the masked softmax keeps valid steps' probabilities
well above EPS in practice, and a GT step on padding (a label bug) gives a large, finite
loss instead of inf/NaN.
"""

import keras
from keras import ops

from cimha_tf.model import config as config_lib

EPS = 1e-7


@keras.saving.register_keras_serializable(package="cimha_tf")
def span_nll(y_true, y_pred):
  """Eq 14's negative log-likelihood of the labelled start (or end) step.

  Args:
    y_true: (B,) or (B, 1) int step.
    y_pred: (B, N) probabilities.

  Returns:
    (B,) -log P(step), P clipped to >= EPS.
  """
  idx = ops.reshape(ops.cast(y_true, "int32"), (-1, 1))
  p = ops.take_along_axis(y_pred, idx, axis=1)[:, 0]
  return -ops.log(ops.clip(p, EPS, 1.0))


@keras.saving.register_keras_serializable(package="cimha_tf")
def masked_bce(y_true, y_pred):
  """Eq 16's binary cross-entropy of P_in, averaged over each row's labelled steps.

  Args:
    y_true: (B, N) in {1 inside, 0 outside, -1 padded (ignored)}.
    y_pred: (B, N) probabilities.

  Returns:
    (B,) mean BCE (0 for a row without labelled steps).
  """
  y_true = ops.cast(y_true, y_pred.dtype)
  valid = ops.greater_equal(y_true, 0.0)
  p = ops.clip(y_pred, EPS, 1.0 - EPS)
  bce = -(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
  bce = ops.where(valid, bce, ops.zeros_like(bce))
  count = ops.sum(ops.cast(valid, y_pred.dtype), axis=-1)
  return ops.sum(bce, axis=-1) / ops.maximum(count, 1.0)


def losses_and_weights(model_config):
  """({output: loss_fn}, {output: weight}): no inside loss for the variants without eq 15.

  Args:
    model_config: its variant and segment_loss_weight (lambda) count.
  """
  losses = {"start_probs": span_nll, "end_probs": span_nll}
  weights = {"start_probs": 1.0, "end_probs": 1.0}
  if config_lib.has_segment_head(model_config):
    losses["inside_probs"] = masked_bce
    weights["inside_probs"] = float(model_config.segment_loss_weight)
  return losses, weights


def compile_model(model, model_config, learning_rate=1e-4, **compile_kwargs):
  """Compiles with Adam(learning_rate) (docs/paper.md: 1e-4) and the per-output losses.

  Call inside `strategy.scope()` when training under a tf.distribute strategy.

  Args:
    model: a build_model model.
    model_config: its config (variant, segment_loss_weight).
    learning_rate: Adam's learning rate (ignored when compile_kwargs has an optimizer).
    **compile_kwargs: for model.compile (optimizer, steps_per_execution, jit_compile, ...).

  Returns:
    The model, compiled, its optimizer and loss trackers built.
  """
  losses, weights = losses_and_weights(model_config)
  optimizer = compile_kwargs.pop("optimizer", None) or keras.optimizers.Adam(learning_rate)
  model.compile(optimizer=optimizer, loss=losses, loss_weights=weights, **compile_kwargs)
  _build_training_state(model, losses)
  return model


def _build_training_state(model, losses):
  """Creates the loss trackers and Adam's slots now, from shapes alone.

  Keras does this before the first step only for a model made under a tf.distribute
  strategy; otherwise they appear inside the first traced step, and variables created
  there make tf.function trace the whole step a second time (~10 s even for a tiny model).
  """
  if getattr(model, "_distribute_strategy", None) is not None:
    return  # Keras's fit builds them itself
  build = getattr(model, "_symbolic_build", None)  # private Keras API: skip if it moves
  if build is None or not model.built or not isinstance(model.input, dict):
    return
  # Every label the data pipeline supplies (pipeline._to_train), not only the ones this
  # variant has a loss for: built with two, the mha / cimha_wo_ms rows' fit on the
  # pipeline's three labels failed ("Too many leaves for PyTreeSpec").
  labels = {"start_probs": keras.KerasTensor((None,), "int32"),
            "end_probs": keras.KerasTensor((None,), "int32"),
            "inside_probs": keras.KerasTensor((None, None), "float32")}
  build(data_batch=(model.input, labels, None))

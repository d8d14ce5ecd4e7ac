"""Keras 3.15 Model.fit under MultiWorkerMirroredStrategy (keras-team/keras#20585).

Multi-worker training is Keras's fit and TF's MWMS: the train dataset goes to fit as on
one machine, Keras distributes it with `strategy.experimental_distribute_dataset` (tf.data
auto-shards it across workers, DATA policy on identical streams (pipeline.py), and
splits the global batch config.train.batch_size over all replicas) and MWMS all-reduces
the gradients. One spot of Keras's TF trainer fails under MWMS only, and `adapt` replaces
it on the model instance (its class, hence the saved .keras files, stay the same): after
every step, `reduce_per_replica` reduces each train_step output with
`strategy.reduce("MEAN", v, axis=0)` under MWMS, which fails on the scalar losses
("Invalid reduction dimension 0 for input with 0 dimensions"). train_step returns them
with shape [1], so that reduction is the mean over all replicas: the global value, the
same on every worker.

The other MWMS failure, `_maybe_symbolic_build` averaging the first input batch across
replicas with `strategy.reduce` ("Attempt to convert a value ({'video_features':
PerReplica...}) with an unsupported type (dict)"), is gone with spec_build.py, which every
strategy gets: the build takes shapes and dtypes from the dataset's element_spec and
reads no batch, so there is nothing to reduce.
"""

import types

import keras
import tensorflow as tf


def adapt(model, strategy):
  """Makes `model.fit` work under `strategy` when it is MultiWorkerMirroredStrategy; other
  strategies leave the model untouched. Returns the model."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return model
  model.train_step = types.MethodType(_train_step_with_rank1_logs, model)
  return model


def _train_step_with_rank1_logs(self, data):
  logs = type(self).train_step(self, data)
  return keras.tree.map_structure(lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, logs)

"""Keras 3.15 Model.fit under MultiWorkerMirroredStrategy (keras-team/keras#20585).

Multi-worker training is Keras's fit and TF's MWMS: the train dataset goes to fit as on
one machine, Keras distributes it with `strategy.experimental_distribute_dataset` (tf.data
auto-shards it across workers, FILE or DATA policy per pipeline.auto_shard_policy, and
splits the global batch config.train.batch_size over all replicas) and MWMS all-reduces
the gradients. Two spots of Keras's TF trainer fail under MWMS only, and `adapt` replaces
them on the model instance (its class, hence the saved .keras files, stay the same):

1. Before the first step, `_maybe_symbolic_build` averages the first input batch across
   replicas with `strategy.reduce`, which MWMS (unlike MirroredStrategy) cannot do for a
   nest: "Attempt to convert a value ({'video_features': PerReplica...}) with an
   unsupported type (dict)". That build only needs shapes and dtypes, so it takes them
   from this worker's first replica, with no collective op.
2. After every step, `reduce_per_replica` reduces each train_step output with
   `strategy.reduce("MEAN", v, axis=0)` under MWMS, which fails on the scalar losses
   ("Invalid reduction dimension 0 for input with 0 dimensions"). train_step returns
   them with shape [1], so that reduction is the mean over all replicas: the global value,
   the same on every worker.
"""

import types

import keras
import tensorflow as tf


def adapt(model, strategy):
  """Makes `model.fit` work under `strategy` when it is MultiWorkerMirroredStrategy; other
  strategies leave the model untouched. Returns the model."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return model
  # Both replaced methods are private Keras API: fail loudly where a Keras upgrade moved them.
  for name in ("_maybe_symbolic_build", "_symbolic_build"):
    if not hasattr(model, name):
      raise RuntimeError(f"keras {keras.__version__} has no Model.{name}: "
                         "cimha_tf/training/multiworker.py needs updating for this Keras")
  model._maybe_symbolic_build = types.MethodType(_build_from_local_replica, model)
  model.train_step = types.MethodType(_train_step_with_rank1_logs, model)
  return model


def _build_from_local_replica(self, iterator=None, data_batch=None):
  if iterator is not None:
    for _, _, it in iterator:
      data_batch = keras.tree.map_structure(
          lambda v: self.distribute_strategy.experimental_local_results(v)[0], next(it))
      break
  with self.distribute_strategy.scope():
    self._symbolic_build(data_batch=data_batch)


def _train_step_with_rank1_logs(self, data):
  logs = type(self).train_step(self, data)
  return keras.tree.map_structure(lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, logs)

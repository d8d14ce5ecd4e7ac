"""Keras fit under a tf.distribute strategy builds the model from the dataset's element_spec,
never from a batch read through a throwaway iterator.

Keras 3.15's TF trainer, whenever the model was made under a strategy (the trainer always
makes it under one), starts fit/evaluate/predict with `_maybe_symbolic_build`: it opens an
iterator on the dataset, reads one batch for its shapes, drops the iterator and opens
another for the real run. The throwaway iterator's prefetching, parallel maps and batches
run ahead meanwhile, and every pass of a `shuffle(reshuffle_each_iteration=True)` draws
its seed from one generator that all iterators of the dataset share. On a split shorter
than that read-ahead (a few batches: the tests' and the demo's), the throwaway iterator
can reach the next `repeat` pass and draw more seeds, so the training order, and with it
every loss, would depend on thread timing even under train.deterministic. The build only
needs shapes and dtypes, which `element_spec` has without reading anything, so the real
run's iterator is the first.
"""

import types

import keras
import tensorflow as tf


def adapt(model):
  """Replaces `model._maybe_symbolic_build` (a private Keras method: fails loudly where an
  upgrade moved it) on this instance; its class, hence saved .keras files, stay the same.
  Returns the model."""
  for name in ("_maybe_symbolic_build", "_symbolic_build", "_distribute_strategy"):
    if not hasattr(model, name):
      raise RuntimeError(f"keras {keras.__version__} has no Model.{name}: "
                         "cimha_tf/training/spec_build.py needs updating for this Keras")
  model._maybe_symbolic_build = types.MethodType(_build_from_element_spec, model)
  return model


def _element_spec(iterator):
  """The (x, y[, sample_weight]) TensorSpecs behind a Keras epoch iterator, or None when
  its data is not a plain tf.data structure of tensors."""
  adapter = getattr(iterator, "data_adapter", None)
  if adapter is None:
    return None
  spec = adapter.get_tf_dataset().element_spec
  if not all(isinstance(s, tf.TensorSpec) for s in tf.nest.flatten(spec)):
    return None  # e.g. a DistributedDataset's per-replica specs, or ragged inputs
  return spec


def _build_from_element_spec(self, iterator=None, data_batch=None):
  if self._distribute_strategy is None:
    return  # as Keras: no strategy, the first traced step builds the model
  if data_batch is None and iterator is not None:
    data_batch = _element_spec(iterator)
    if data_batch is None:  # Keras's own way: one batch read through a throwaway iterator
      return type(self)._maybe_symbolic_build(self, iterator=iterator)
  with self.distribute_strategy.scope():
    self._symbolic_build(data_batch=data_batch)

"""Which tf.distribute strategy a run uses, and which worker writes the workdir.

MultiWorkerMirroredStrategy when TF_CONFIG names several workers; otherwise
MirroredStrategy over the local GPUs, or over the one CPU device when there are none
(MirroredStrategy rather than the default strategy so that the CPU, GPU and multi-worker
paths run the same distributed code).
"""

import json
import os

import tensorflow as tf


def tf_config():
  raw = os.environ.get("TF_CONFIG", "")
  if not raw:
    return {}
  try:
    return json.loads(raw)
  except json.JSONDecodeError as e:
    raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {raw[:200]!r}") from e


def num_workers():
  cluster = tf_config().get("cluster", {})
  return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def is_chief():
  """Worker 0 (or the 'chief' task) writes the workdir; the others write beside it."""
  task = tf_config().get("task", {})
  kind, index = task.get("type", "worker"), int(task.get("index", 0))
  if "chief" in tf_config().get("cluster", {}):
    return kind == "chief"
  return kind == "worker" and index == 0


def worker_dir(workdir):
  """Where this worker writes: WORKDIR on the chief, WORKDIR/worker_I on the others.

  Every worker must save (saving reads distributed variables collectively), but only one
  may own the shared paths.
  """
  if is_chief():
    return workdir
  return os.path.join(workdir, f"worker_{tf_config()['task']['index']}")


def get_strategy(devices=None):
  """The run's strategy; `devices` (e.g. two logical CPUs in tests) overrides discovery."""
  if num_workers() > 1:
    return tf.distribute.MultiWorkerMirroredStrategy()
  if devices is None:
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] if gpus else ["/cpu:0"]
  return tf.distribute.MirroredStrategy(devices)

"""Which tf.distribute strategy a run uses, and which worker writes the workdir.

MultiWorkerMirroredStrategy when TF_CONFIG names several workers; otherwise
MirroredStrategy over the local GPUs, or over the one CPU device when there are none
(MirroredStrategy rather than the default strategy so that the CPU, GPU and multi-worker
paths run the same distributed code).
"""

import json
import os

import tensorflow as tf


_JOBS = ("chief", "worker")


def tf_config():
  """TF_CONFIG as a dict ({} when unset), checked: TensorFlow's own errors for a bad one
  name neither TF_CONFIG nor the field, and some come only after the workdir was written."""
  raw = os.environ.get("TF_CONFIG", "")
  if not raw:
    return {}
  try:
    config = json.loads(raw)
  except json.JSONDecodeError as e:
    raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {raw[:200]!r}") from e
  _check_tf_config(config)
  return config


def _check_tf_config(config):
  def need(ok, field, expected):
    if not ok:
      raise ValueError(f"TF_CONFIG{field}: expected {expected}, got "
                       f"{json.dumps(config)[:300]}")
  example = ('e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
             '"task": {"type": "worker", "index": 0}}')
  need(isinstance(config, dict), "", f"a JSON object, {example}")
  cluster = config.get("cluster", {})
  need(isinstance(cluster, dict), '["cluster"]', "an object of job name -> list of host:port")
  for job, tasks in cluster.items():
    need(isinstance(tasks, list) and all(isinstance(t, str) and ":" in t for t in tasks),
         f'["cluster"]["{job}"]', 'a list of "host:port" strings')
  if sum(len(cluster.get(job, [])) for job in _JOBS) <= 1:
    return  # one machine: MirroredStrategy, the task is not used
  task = config.get("task")
  need(isinstance(task, dict), '["task"]', f"this machine's task, {example}")
  kind, index = task.get("type"), task.get("index")
  need(kind in _JOBS and kind in cluster, '["task"]["type"]',
       f"one of the cluster's training jobs {[j for j in _JOBS if j in cluster]} "
       "(no evaluator or parameter-server tasks)")
  need(isinstance(index, int) and not isinstance(index, bool)
       and 0 <= index < len(cluster[kind]), '["task"]["index"]',
       f"an integer from 0 to {len(cluster[kind]) - 1} (the cluster lists "
       f"{len(cluster[kind])} {kind} task(s))")


def num_workers():
  cluster = tf_config().get("cluster", {})
  return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def is_chief():
  """Worker 0 (or the 'chief' task) writes the workdir; the others write beside it."""
  config = tf_config()
  if num_workers() <= 1:
    return True
  task = config["task"]
  if "chief" in config["cluster"]:
    return task["type"] == "chief"
  return task["type"] == "worker" and task["index"] == 0


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
    config = tf_config()
    task = config["task"]
    # The constructor blocks, silently, until every task has connected: TensorFlow's
    # coordination service gives up only after an hour (kDefaultClusterRegisterTimeout).
    print(f"TF_CONFIG: this is {task['type']} {task['index']} of {json.dumps(config['cluster'])}; "
          "waiting for every worker to start (TensorFlow waits up to an hour without a word: "
          "check that each machine runs this command with its own task index and that the "
          "host:port addresses are reachable)", flush=True)
    return tf.distribute.MultiWorkerMirroredStrategy()
  if devices is None:
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] if gpus else ["/cpu:0"]
  return tf.distribute.MirroredStrategy(devices)

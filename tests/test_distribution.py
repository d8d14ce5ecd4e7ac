"""tf.distribute: two logical CPU devices under MirroredStrategy match one device, and two
worker processes under MultiWorkerMirroredStrategy train with Keras fit (through
cimha_tf/training/spec_build.py and multiworker.py) and agree on the weights and the logged losses.

Each case runs in subprocesses: logical devices and collective ops are process-global."""

import functools
import json
import os
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

from tests import helpers
from cimha_tf.experiment import workdir as wd

MIRRORED_SCRIPT = r"""
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from cimha_tf.data import pipeline
from cimha_tf.training import strategy as strategy_lib, trainer
from tests import helpers

prepared = sys.argv[1]
config = helpers.tiny_config(prepared, batch_size=8)
meta = pipeline.read_metadata(prepared)
batch = pipeline.train_dataset(prepared, "train", batch_size=8, shuffle=False, deterministic=True).take(1)
results = {}
weights = None
for name, devices in (("one", ["/cpu:0"]), ("two", ["/cpu:0", "/cpu:1"])):
  keras.utils.set_random_seed(0)
  strategy = strategy_lib.get_strategy(devices)
  model = trainer.build_and_compile(config, meta, strategy)
  if weights is None:
    weights = model.get_weights()
  model.set_weights(weights)
  loss = model.evaluate(batch, verbose=0, return_dict=True)["loss"]
  hist = model.fit(batch, epochs=1, verbose=0).history["loss"][0]
  results[name] = {"replicas": strategy.num_replicas_in_sync, "loss": loss, "fit_loss": hist,
                   "weights": [w.tolist() for w in model.get_weights()[:4]]}
print("RESULT " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  return helpers.write_tiny_prepared(str(tmp_path_factory.mktemp("dist") / "data"), num_videos=(6, 2, 2))


def test_two_logical_devices_give_the_loss_of_one(prepared):
  r = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, prepared], cwd=helpers.REPO,
                     capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-4000:]
  res = json.loads(r.stdout.split("RESULT ", 1)[1])
  assert (res["one"]["replicas"], res["two"]["replicas"]) == (1, 2)
  assert res["two"]["loss"] == pytest.approx(res["one"]["loss"], rel=1e-5)
  assert res["two"]["fit_loss"] == pytest.approx(res["one"]["fit_loss"], rel=1e-5)
  for a, b in zip(res["one"]["weights"], res["two"]["weights"]):  # after one identical step
    np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-6)


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def _run_two_workers(argv, timeout=600):
  """Runs argv as workers 0 and 1 of a localhost TF_CONFIG cluster, side by side;
  -> [(returncode, stdout and stderr)] in task order. Kills what is left on a timeout."""
  workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
  procs = [subprocess.Popen(
      argv, cwd=helpers.REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      env=dict(os.environ, TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                                 "task": {"type": "worker", "index": i}})))
      for i in range(2)]
  try:
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  return [(p.returncode, out) for p, out in zip(procs, outs)]


# slow: two processes tracing the model take ~45 s on an idle 2-core machine, minutes when
# it is loaded; workers starved of CPU for over TF's 10 s coordination heartbeat timeout
# fail with "heartbeat timeout" (an environment failure, not a training one).
@pytest.mark.slow
def test_two_workers_train_and_agree_on_the_weights(prepared, tmp_path):
  config = helpers.write_tiny_config_file(str(tmp_path / "c.py"), prepared, epochs=1)
  w = tmp_path / "w"
  runs = _run_two_workers([sys.executable, "-m", "cimha_tf.train", f"--config={config}",
                           f"--workdir={w}", "--config.train.steps_per_epoch=2"], timeout=900)
  for rc, out in runs:
    assert rc == 0, out[-4000:]
  outs = [out for _, out in runs]
  assert "MultiWorkerMirroredStrategy with 2 replica(s)" in outs[0]
  chief = wd.load_model(str(w / wd.LAST))
  other = wd.load_model(str(w / "worker_1" / wd.LAST))
  for a, b in zip(chief.get_weights(), other.get_weights()):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Both workers log the global epoch metrics, though each trained on its own shard.
  history = [(w / "history.csv").read_text(), (w / "worker_1" / "history.csv").read_text()]
  assert history[0] == history[1] and "loss" in history[0].splitlines()[0]
  assert json.load(open(w / wd.BACKUP / wd.BACKUP_STATE))["epoch"] == 1
  assert json.load(open(w / "worker_1" / wd.BACKUP / wd.BACKUP_STATE))["epoch"] == 1


UNEVEN_SCRIPT = r"""
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from cimha_tf.training import strategy as strategy_lib, trainer
from tests import helpers
config = helpers.tiny_config(sys.argv[1], batch_size=5)
try:
  trainer.train(config, sys.argv[2], strategy=strategy_lib.get_strategy(["/cpu:0", "/cpu:1"]), verbose=0)
except ValueError as e:
  print("ERROR " + str(e))
"""


def test_a_batch_that_two_replicas_cannot_split_evenly_is_refused(prepared, tmp_path):
  # 5 rows on 2 replicas: Keras weighs the replicas' means equally, so the gradient is not
  # the 1-replica one (measured: first-step weights differ by up to 0.006 for a 0.007 step).
  r = subprocess.run([sys.executable, "-c", UNEVEN_SCRIPT, prepared, str(tmp_path / "w")],
                     cwd=helpers.REPO, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-4000:]
  assert "ERROR config.train.batch_size=5: expected a multiple of the 2 replicas" in r.stdout
  assert not os.path.exists(tmp_path / "w" / wd.CONFIG)  # refused before writing the workdir


_TWO = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}


@pytest.mark.parametrize("tf_config, field, expected", [
    ("[1, 2]", "TF_CONFIG:", "a JSON object"),
    ({"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}},
     'TF_CONFIG["cluster"]["worker"]', 'a list of "host:port" strings'),
    ({"cluster": _TWO}, 'TF_CONFIG["task"]', "this machine's task"),
    ({"cluster": _TWO, "task": {"type": "evaluator", "index": 0}},
     'TF_CONFIG["task"]["type"]', "one of the cluster's training jobs ['worker']"),
    ({"cluster": _TWO, "task": {"type": "worker", "index": 2}},
     'TF_CONFIG["task"]["index"]', "an integer from 0 to 1"),
    ({"cluster": _TWO, "task": {"type": "worker", "index": "1"}},
     'TF_CONFIG["task"]["index"]', "an integer from 0 to 1"),
])
def test_a_malformed_tf_config_names_the_field(monkeypatch, tf_config, field, expected):
  # TensorFlow's own errors for these name neither TF_CONFIG nor the field (a missing task:
  # "you must also specify task_type and task_id"; an evaluator: KeyError 'evaluator').
  monkeypatch.setenv("TF_CONFIG", tf_config if isinstance(tf_config, str) else json.dumps(tf_config))
  from cimha_tf.training import strategy as strategy_lib
  with pytest.raises(ValueError) as e:
    strategy_lib.worker_dir("/w")
  assert str(e.value).startswith(field) and expected in str(e.value)


def test_a_task_index_past_the_cluster_stops_train_before_the_workdir(prepared, tmp_path):
  # It used to reach MultiWorkerMirroredStrategy, whose traceback came after worker_2/ was made.
  config = helpers.write_tiny_config_file(str(tmp_path / "c.py"), prepared, epochs=1)
  env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": _TWO, "task": {"type": "worker", "index": 2}}))
  r = helpers.run_binary("cimha_tf.train", f"--config={config}", f"--workdir={tmp_path / 'w'}",
                         env=env, check=False)
  assert r.returncode == 1
  assert 'FATAL: ValueError: TF_CONFIG["task"]["index"]: expected an integer from 0 to 1' in r.stderr
  assert not os.path.exists(tmp_path / "w")


EPOCH_SCRIPT = r"""
import json, sys
import tensorflow as tf
from cimha_tf.data import pipeline, tfrecords
prepared, batch_size, bucket_width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
to_train = pipeline._to_train
def with_qid(v, q):  # the labels carry each row's qid, to see which queries a step trains on
  x, y = to_train(v, q)
  return x, dict(y, qid=tfrecords.merge(v, q)["qid"])
pipeline._to_train = with_qid
strategy = tf.distribute.MultiWorkerMirroredStrategy()
steps = pipeline.batches_per_pass(prepared, "train", batch_size, bucket_width)
ds = pipeline.train_dataset(prepared, "train", batch_size, seed=0, deterministic=True, repeat=True,
                            bucket_width=bucket_width)
it = iter(strategy.experimental_distribute_dataset(ds))
epochs, widths = [[], []], []
for epoch in range(2):
  for _ in range(steps):
    x, y = next(it)
    widths.append(strategy.experimental_local_results(x["video_features"])[0].shape[1])
    epochs[epoch] += [q for v in strategy.experimental_local_results(y["qid"]) for q in v.numpy().tolist()]
print("RESULT " + json.dumps({"steps": steps, "epochs": epochs, "widths": widths}))
"""


# slow: two worker processes (~20 s idle); see the heartbeat note above.
@pytest.mark.slow
@pytest.mark.parametrize("bucket_width", [0, 8])
def test_two_workers_see_every_query_once_per_epoch(tmp_path, bucket_width):
  """As the trainer feeds fit: batches_per_pass steps of the distributed dataset are one pass
  over the split across both workers. 4 shards of unequal size, 20 queries, global batch 4:
  FILE sharding (before) gave each worker a pass of 6 steps in a 5-step epoch, so epoch 1
  missed 2 queries and epoch 2 repeated them. Length buckets (videos of 6-12 steps, bands
  of 8) were off under multi-worker; they now cut the time axis as on one machine."""
  from cimha_tf.data import prepare
  from unittest import mock
  with mock.patch.object(prepare, "prepare_splits",
                         functools.partial(prepare.prepare_splits, videos_per_shard=3)):
    data = helpers.write_tiny_prepared(str(tmp_path / "data"), num_videos=(10, 2, 2))
  meta = json.load(open(os.path.join(data, "metadata.json")))["splits"]["train"]
  assert (len(meta["records"]), meta["queries"]) == (4, 20)
  runs = _run_two_workers([sys.executable, "-c", EPOCH_SCRIPT, data, "4", str(bucket_width)])
  results = []
  for rc, out in runs:
    assert rc == 0, out[-4000:]
    results.append(json.loads(out.split("RESULT ", 1)[1]))
  assert results[0]["steps"] == 5
  for epoch in range(2):
    seen = results[0]["epochs"][epoch] + results[1]["epochs"][epoch]
    assert sorted(seen) == list(range(20)), epoch
  assert results[0]["widths"] == results[1]["widths"]  # each step's shares have one width
  assert set(results[0]["widths"]) == ({8, 16} if bucket_width else {16})


def test_a_worker_whose_peers_never_start_says_what_it_waits_for(prepared, tmp_path):
  # TensorFlow blocks without a word for up to an hour while a peer is missing (a wrong
  # address, a worker not started): the run says so first, naming the cluster.
  config = helpers.write_tiny_config_file(str(tmp_path / "c.py"), prepared, epochs=1)
  workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
  env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                               "task": {"type": "worker", "index": 0}}))
  p = subprocess.Popen([sys.executable, "-m", "cimha_tf.train", f"--config={config}",
                        f"--workdir={tmp_path / 'w'}"], cwd=helpers.REPO, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  timer = threading.Timer(300, p.kill)  # a run that never says it: fail, not hang
  timer.start()
  try:
    line = next((l for l in p.stdout if "TF_CONFIG:" in l), "")
  finally:
    timer.cancel()
    p.kill()
    p.wait()
  assert line.startswith(f"TF_CONFIG: this is worker 0 of {json.dumps({'worker': workers})}; "
                         "waiting for every worker to start (TensorFlow waits up to an hour")


# slow: two worker processes; see the heartbeat note above.
@pytest.mark.slow
def test_workers_resuming_from_different_epochs_stop_with_the_way_out(prepared, tmp_path):
  """The chief's backup says 1 epoch, worker 1 has none (its worker_1/ deleted, or a kill
  between the two backups). Before, each restored its own: the chief finished from other
  weights than worker 1, which then failed on a closed socket. Now both stop before training."""
  from cimha_tf.data import pipeline
  from cimha_tf.training import trainer
  config = helpers.tiny_config(prepared, epochs=2)
  w = tmp_path / "w"
  (w / wd.BACKUP).mkdir(parents=True)
  trainer.write_workdir_files(str(w), config, pipeline.read_metadata(prepared))
  (w / wd.BACKUP / wd.BACKUP_STATE).write_text(json.dumps({"epoch": 1, "batch": 0}))
  config_file = helpers.write_tiny_config_file(str(tmp_path / "c.py"), prepared, epochs=2)
  runs = _run_two_workers([sys.executable, "-m", "cimha_tf.train", f"--config={config_file}",
                           f"--workdir={w}"])
  for (rc, out), done in zip(runs, (1, 0)):
    assert rc == 1, out[-4000:]
    assert f"epoch(s), but the workers' resume backups differ (mean 0.5)" in out, out[-4000:]
    assert f"{done} finished epoch(s)" in out
  assert not (w / wd.LAST).exists()  # nothing trained

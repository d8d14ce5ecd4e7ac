"""What several test modules share (test modules never import each other).

- Tiny planted-moment datasets and experiment configs for training, evaluation and export
  tests, independent of cimha_tf.data.synthetic (the demo's data) so that training tests
  only need the prepare path: a handful of short videos, each holding one action per query
  whose feature signal sits inside the query's window; the binaries run on them.
- tiny_model_config / random_inputs: a small model config and padded random batches.
- deploy_setup: a trained tiny model as a workdir, exported to SavedModel and TFLite.
- load_config: the shipped config NAME loaded exactly as the binaries do.
- kill_when & co: fault injection, a real subprocess killed (or stopped) at a chosen moment.
"""

import atexit
import glob
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from cimha_tf.data.records import QueryRecord, ReadReport

ACTIONS = ("opens the door", "drinks water", "reads a book", "turns on the light")


def write_tiny_prepared(out_dir, num_videos=(12, 4, 4), splits=("train", "val", "test"),
                        feature_dim=8, steps=(6, 12), seed=0, max_video_len=16, max_query_len=6):
  """Writes raw npy features + a prepared folder under out_dir; returns the prepared path."""
  from cimha_tf.data import prepare
  rng = np.random.default_rng(seed)
  feat_dir = os.path.join(out_dir, "features")
  os.makedirs(feat_dir, exist_ok=True)
  signals = rng.normal(size=(len(ACTIONS), feature_dim)).astype(np.float32) * 2.0
  data, qid = {}, 0
  for split, count in zip(splits, num_videos):
    records, report = [], ReadReport(source=f"tiny:{split}")
    for v in range(count):
      vid = f"{split}_{v:03d}"
      n = int(rng.integers(steps[0], steps[1] + 1))
      duration = float(n * 2.0)
      x = rng.normal(scale=0.5, size=(n, feature_dim)).astype(np.float32)
      for a in rng.choice(len(ACTIONS), size=2, replace=False):
        s = int(rng.integers(0, n - 1))
        e = int(rng.integers(s, min(n, s + n // 2)))
        x[s:e + 1] += signals[a]
        records.append(QueryRecord(qid=qid, vid=vid, duration=duration,
                                   query=f"a person {ACTIONS[a]}",
                                   windows=[(s * 2.0, (e + 1) * 2.0)]))
        qid += 1
        report.read += 1
        report.kept += 1
      np.save(os.path.join(feat_dir, f"{vid}.npy"), x)
    data[split] = (records, report)
  prepared = os.path.join(out_dir, "prepared")
  prepare.prepare_splits(data, feat_dir, prepared, dataset="tiny", max_video_len=max_video_len,
                         max_query_len=max_query_len, progress=False)
  return prepared


def tiny_config(data_dir, epochs=2, batch_size=8, seed=0, **train):
  """An experiment config with a model small enough to train in seconds on a CPU; `train`
  sets further config.train keys (e.g. lr_schedule)."""
  from cimha_tf.model import default_config
  from cimha_tf.experiment.config import experiment_config
  m = default_config()
  m.update(dict(width=16, num_heads=2, dropout=0.0, ffn_width=16, query_lstm_units=8,
                span_lstm_units=8, mlp_width=16, max_video_len=16, max_query_len=6,
                embedding_dim=8))
  c = experiment_config(data_dir=str(data_dir), train_split="train", val_split="val",
                        test_split="test", epochs=epochs, batch_size=batch_size,
                        learning_rate=3e-3, seed=seed, top_k=3, model=m)
  c.train.update(train)
  return c


def write_tiny_config_file(path, data_dir, **overrides):
  """A cimha_tf/configs/*.py-style file returning tiny_config(data_dir, **overrides), for the binaries."""
  with open(path, "w") as f:
    f.write("from tests import helpers\n\n\n"
            f"def get_config():\n  return helpers.tiny_config({str(data_dir)!r}, **{overrides!r})\n")
  return path


# trained_tiny_workdirs's optimizer: a schedule with warm-up, clipping and weight decay, so
# the resume tests that compare against its runs cover the restored step count too.
TINY_RUN_TRAIN = dict(lr_schedule="linear", warmup_fraction=0.25, clip_norm=1.0,
                      weight_decay=0.01)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_PATH = pathlib.Path(REPO)
_TRAINED = {}


def run_binary(module, *args, timeout=600, env=None, check=True):
  """Runs `python -m module args` from the repository root; returns the CompletedProcess."""
  import subprocess
  import sys
  r = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env,
                     capture_output=True, text=True, timeout=timeout)
  if check and r.returncode != 0:
    raise AssertionError(f"python -m {module} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
  return r


def trained_tiny_workdirs(base_dir):
  """Prepares the tiny dataset and trains it twice, concurrently, with the train binary into
  two workdirs (the second is for the reproducibility check); once per process, since test
  modules share it and each training costs a graph trace.
  -> {"workdir": A, "workdir_b": B, "prepared": DIR, "config": config file}."""
  import subprocess
  import sys
  if "tiny" not in _TRAINED:
    os.makedirs(base_dir, exist_ok=True)
    prepared = write_tiny_prepared(os.path.join(base_dir, "data"))
    config = write_tiny_config_file(os.path.join(base_dir, "tiny_config.py"), prepared, epochs=2,
                                    **TINY_RUN_TRAIN)
    workdirs = [os.path.join(base_dir, name) for name in ("workdir", "workdir_b")]
    procs = [subprocess.Popen([sys.executable, "-m", "cimha_tf.train", f"--config={config}",
                               f"--workdir={w}"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for w in workdirs]
    for p in procs:
      out, _ = p.communicate(timeout=900)
      if p.returncode != 0:
        raise AssertionError(f"train binary failed ({p.returncode}):\n{out[-6000:]}")
    _TRAINED["tiny"] = {"workdir": workdirs[0], "workdir_b": workdirs[1], "prepared": prepared,
                        "config": config, "log": out}
  return _TRAINED["tiny"]


# A small model config and padded random batches (model, deploy and kernel tests).
VOCAB = 30
DV = 7


def tiny_model_config(variant="cimha", **overrides):
  """A model config small enough to build and run in a second (not the experiment's)."""
  from cimha_tf.model import default_config
  c = default_config()
  c.update(dict(variant=variant, width=16, num_heads=2, ffn_width=16, query_lstm_units=8,
                span_lstm_units=8, mlp_width=8, embedding_dim=6, max_video_len=24,
                max_query_len=8, dropout=0.1))
  c.update(overrides)
  return c


def random_inputs(rng, lengths, n, query_lengths, l, dv=DV):
  """Batch with the given valid video lengths / query lengths (valid steps first)."""
  b = len(lengths)
  mask = (np.arange(n)[None] < np.array(lengths)[:, None]).astype(np.float32)
  tokens = rng.integers(2, VOCAB, (b, l)).astype(np.int32)
  tokens[np.arange(l)[None] >= np.array(query_lengths)[:, None]] = 0
  return {"video_features": rng.normal(size=(b, n, dv)).astype(np.float32),
          "video_mask": mask, "query_tokens": tokens}


TFLITE_N, TFLITE_L = 20, 5


def small_tflite_model(variant="cimha", **overrides):
  """A tiny Keras model whose LSTMs take the forms the TFLite kernels special-case:
  embedding_dim >= 2 L, the query LSTM's identity-input form; L < width, the start
  LSTM's factored one."""
  import keras
  from cimha_tf.model import build_model
  keras.utils.set_random_seed(3)
  c = tiny_model_config(variant, max_video_len=TFLITE_N, max_query_len=TFLITE_L,
                        embedding_dim=12, dropout=0.0, **overrides)
  return build_model(c, DV, VOCAB)


def padded_query_batch():
  """Padding on both sides, a one-step video and a one-word query among them."""
  return random_inputs(np.random.default_rng(5), [TFLITE_N, 13, 1, 4], TFLITE_N,
                       [TFLITE_L, 3, 2, 1], TFLITE_L)


def run_each_query(model, x):
  """Curves of every query in x (a batch of inputs), one batch-1 invoke each of a TFLite
  model (as on a phone)."""
  outs = [model.run_batch(x["video_features"][b:b + 1], x["video_mask"][b:b + 1],
                          x["query_tokens"][b:b + 1]) for b in range(len(x["video_mask"]))]
  return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def load_config(name, *overrides):
  """Loads the shipped config NAME exactly as the binaries do (DEFINE_config_file, locked)."""
  from absl import flags
  from ml_collections import config_flags
  from cimha_tf import configs
  argv = ["prog", f"--config={configs.path(name)}", *overrides]
  fv = flags.FlagValues()
  holder = config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True,
                                           sys_argv=argv)
  fv(argv)
  return holder.value


# The deploy tests' trained model (test_export_saved_model, test_export_tflite, test_predict,
# test_serving_clients): synthetic Charades-style data (512-d features) through the real
# prepare path, a tiny model trained for a few steps, saved as a training workdir, then
# exported with the real `python -m cimha_tf.export` command to a SavedModel and a float32
# TFLite file; built once per pytest process.
MAX_VIDEO_LEN, MAX_QUERY_LEN, VIDEO_DIM = 32, 12, 512
_DEPLOY = {}


def _deploy_model_config():
  from cimha_tf.model import default_config
  c = default_config()
  c.width, c.num_heads, c.ffn_width, c.mlp_width = 16, 2, 32, 16
  c.query_lstm_units = c.span_lstm_units = 8
  c.embedding_dim, c.dropout = 8, 0.0
  c.max_video_len, c.max_query_len = MAX_VIDEO_LEN, MAX_QUERY_LEN
  return c


def run_module(*args, timeout=600, check=True):
  """Runs `python -m ARGS` from the repository; returns stdout, fails with stderr.
  check=False: returns the CompletedProcess whatever its exit status."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
  proc = run_binary(*args, timeout=timeout, env=env, check=check)
  return proc.stdout if check else proc


def _split_arrays(prepared, split):
  """(inputs, meta) of a prepared split as numpy arrays, in file order."""
  from cimha_tf.data import pipeline
  batches = list(pipeline.eval_dataset(prepared, split, 256))
  inputs = {k: np.concatenate([b[0][k].numpy() for b in batches]) for k in batches[0][0]}
  meta = {k: np.concatenate([b[1][k].numpy() for b in batches]) for k in batches[0][1]}
  return inputs, meta


def _labels(prepared, split, meta):
  from cimha_tf.common import timeline
  with open(os.path.join(prepared, "annotations", f"{split}.jsonl")) as f:
    windows = {r["qid"]: r["relevant_windows"][0] for r in map(json.loads, f)}
  starts, ends, inside = [], [], []
  for qid, duration, n in zip(meta["qid"], meta["duration"], meta["num_steps"]):
    s, e = timeline.seconds_to_steps(*windows[int(qid)], float(duration), int(n))
    starts.append(int(s))
    ends.append(int(e))
    inside.append(timeline.inside_mask(int(s), int(e), int(n), MAX_VIDEO_LEN))
  return {"start_probs": np.array(starts, np.int32), "end_probs": np.array(ends, np.int32),
          "inside_probs": np.stack(inside)}


def deploy_setup():
  """Dict: root, prepared, workdir, model (Keras), tokens, inputs (test split, numpy),
  queries, saved_model (version dir), tflite (float32 file)."""
  if _DEPLOY:
    return _DEPLOY
  import keras
  from cimha_tf.data import prepare, synthetic
  from cimha_tf.model import build_model, compile_model
  from cimha_tf.experiment import workdir as wd
  from cimha_tf.experiment.config import experiment_config

  root = tempfile.mkdtemp(prefix="cimha_deploy_test_")
  atexit.register(shutil.rmtree, root, True)
  raw = synthetic.write_synthetic_dataset(os.path.join(root, "raw"), num_train_videos=24,
                                          num_test_videos=25, queries_per_video=4,
                                          feature_dim=VIDEO_DIM, glove_dim=8, progress=False)
  prepared = os.path.join(root, "prepared")
  meta = prepare.prepare("charades_sta", raw["annotations"], raw["features"], prepared,
                         max_video_len=MAX_VIDEO_LEN, max_query_len=MAX_QUERY_LEN,
                         progress=False)
  config = experiment_config(data_dir=prepared, train_split="train", val_split="test",
                             test_split="test", epochs=1, batch_size=16, top_k=5,
                             model=_deploy_model_config())
  keras.utils.set_random_seed(0)
  model = build_model(config.model, VIDEO_DIM, meta["vocab_size"])
  # A few training epochs so that the curves are not an untrained model's (quantization
  # is judged on top-1 agreement). They stay nearly flat (cimha_tf/deploy/tflite.py
  # measures it), which makes the agreement test a strict one.
  train_x, train_meta = _split_arrays(prepared, "train")
  compile_model(model, config.model, learning_rate=3e-3)
  model.fit(train_x, _labels(prepared, "train", train_meta), batch_size=16, epochs=3,
            verbose=0, shuffle=False)

  workdir = os.path.join(root, "workdir")
  os.makedirs(workdir)
  with open(wd.path(workdir, wd.CONFIG), "w") as f:
    f.write(config.to_json())
  shutil.copy(os.path.join(prepared, "vocab.json"), wd.path(workdir, wd.VOCAB))
  shutil.copy(os.path.join(prepared, "metadata.json"), wd.path(workdir, wd.DATA_META))
  model.save(wd.path(workdir, wd.BEST))

  inputs, extra = _split_arrays(prepared, "test")
  with open(os.path.join(prepared, "annotations", "test.jsonl")) as f:
    by_qid = {r["qid"]: r["query"] for r in map(json.loads, f)}
  queries = [by_qid[int(q)] for q in extra["qid"]]
  with open(os.path.join(prepared, "vocab.json")) as f:
    tokens = json.load(f)["tokens"]

  export_dir = os.path.join(root, "export")
  out = json.loads(run_module("cimha_tf.export", f"--workdir={workdir}", "--format=saved_model",
                              f"--output={export_dir}"))
  tflite_path = os.path.join(root, "tflite", "cimha.tflite")
  out_tfl = json.loads(run_module("cimha_tf.export", f"--workdir={workdir}", "--format=tflite",
                                  f"--output={tflite_path}"))
  _DEPLOY.update(root=root, prepared=prepared, workdir=workdir, model=model, tokens=tokens,
                inputs=inputs, duration=extra["duration"], num_steps=extra["num_steps"],
                queries=queries, saved_model=out["path"], saved_model_summary=out,
                tflite=tflite_path, tflite_summary=out_tfl)
  return _DEPLOY


# Fault injection: run a real subprocess and kill -9 it at a chosen moment, e.g.
#     killed = kill_when(cmd, file_appears(str(w / "backup" / ".tmp-*")))
# The moment is a condition polled every millisecond or so: a file (glob) appearing, a file
# changing (size or mtime), or a printed line (stdout and stderr, merged) matching a regular
# expression. SIGKILL gives the process no chance to clean up, as a power cut or the OOM
# killer would not. If the process ends before the condition holds: AssertionError with its
# output (the test did not test what it meant to).

class Killed:
  """What kill_when saw: `output` (the lines printed before the signal), `matched` (the
  files or line that triggered it) and `process` (the Popen; still alive when stopped)."""

  def __init__(self, output, matched, process):
    self.output, self.matched, self.process = output, matched, process


def file_appears(pattern):
  """Holds once a file or folder matching the glob `pattern` exists."""
  def check(_lines):
    return glob.glob(pattern) or None
  check.what = f"a file matching {pattern}"
  return check


def file_changes(path):
  """Holds once `path` differs (size, mtime or existence) from when the process started."""
  def stat():
    try:
      s = os.stat(path)
      return (s.st_size, s.st_mtime_ns)
    except FileNotFoundError:
      return None
  start = stat()

  def check(_lines):
    return [path] if stat() != start else None
  check.what = f"{path} changing"
  return check


def line_printed(regex):
  """Holds once a printed line (stdout or stderr) matches `regex` (re.search)."""
  pattern = re.compile(regex)

  def check(lines):
    return next((l for l in list(lines) if pattern.search(l)), None)
  check.what = f"a line matching {regex!r}"
  return check


def python_module(module, *args):
  return [sys.executable, "-m", module, *map(str, args)]


def kill_when(cmd, condition, timeout=600, cwd=REPO, env=None, poll_s=0.001,
              sig=signal.SIGKILL):
  """Starts `cmd`, SIGKILLs it as soon as `condition` holds, waits for it; returns Killed.
  sig=signal.SIGSTOP freezes it there instead (e.g. holding a lock) and returns at once:
  the caller kills or continues (SIGCONT) Killed.process."""
  proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace")
  lines = []
  reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                            daemon=True)
  reader.start()
  deadline = time.monotonic() + timeout
  matched = None
  try:
    while proc.poll() is None and time.monotonic() < deadline:
      matched = condition(lines)
      if matched:
        os.kill(proc.pid, sig)
        break
      time.sleep(poll_s)
  finally:
    if proc.poll() is None and not matched:
      proc.kill()
    if not matched or sig != signal.SIGSTOP:
      proc.wait(timeout=60)
      reader.join(timeout=10)
  output = "".join(lines)
  if not matched:
    why = "timed out" if proc.returncode == -signal.SIGKILL else f"ended (status {proc.returncode})"
    raise AssertionError(f"{' '.join(map(str, cmd))} {why} before {condition.what}:\n"
                         f"{output[-4000:]}")
  return Killed(output, matched, proc)


def run_to_end(cmd, timeout=600, cwd=REPO, env=None):
  """Runs `cmd` to its end: (status, stdout and stderr merged)."""
  r = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     text=True, errors="replace", timeout=timeout)
  return r.returncode, r.stdout

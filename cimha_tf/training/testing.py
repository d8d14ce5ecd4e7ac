"""Tiny planted-moment datasets and configs for tests of training, evaluation and export.

Independent of cimha_tf.data.synthetic (the demo's data) so that training tests only
need the prepare path: a handful of short videos, each holding one action per query
whose feature signal sits inside the query's window.
"""

import os

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


def tiny_config(data_dir, epochs=2, batch_size=8, seed=0):
  """An experiment config with a model small enough to train in seconds on a CPU."""
  from cimha_tf.model import default_config
  from cimha_tf.experiment.config import experiment_config
  m = default_config()
  m.update(dict(width=16, num_heads=2, dropout=0.0, ffn_width=16, query_lstm_units=8,
                span_lstm_units=8, mlp_width=16, max_video_len=16, max_query_len=6,
                embedding_dim=8))
  c = experiment_config(data_dir=str(data_dir), train_split="train", val_split="val",
                        test_split="test", epochs=epochs, batch_size=batch_size,
                        learning_rate=3e-3, seed=seed, top_k=3, model=m)
  return c


def write_tiny_config_file(path, data_dir, **overrides):
  """A configs/*.py-style file returning tiny_config(data_dir, **overrides), for the binaries."""
  with open(path, "w") as f:
    f.write("from cimha_tf.training import testing\n\n\n"
            f"def get_config():\n  return testing.tiny_config({str(data_dir)!r}, **{overrides!r})\n")
  return path


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
    config = write_tiny_config_file(os.path.join(base_dir, "tiny_config.py"), prepared, epochs=2)
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

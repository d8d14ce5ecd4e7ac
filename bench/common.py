"""Shared benchmark plumbing: flags, timing statistics, memory, machine info, JSON out.

Every figure script is `python -m bench.NAME [--quick] [--output=FILE]`; it prints and
writes one JSON object with `figure`, `quick`, `machine`, `results`, `peak_rss_mb`, `notes`.
Timings are medians over repetitions after warm-up, with min/max and the interquartile
range as the spread: the CI machine is shared, so single numbers mean little.
"""

import importlib
import json
import os
import platform
import resource
import sys
import time

from absl import flags
import numpy as np

QUICK = flags.DEFINE_bool("quick", False, "tiny shapes and few repetitions (CI smoke run)")
OUTPUT = flags.DEFINE_string("output", None, "JSON file to write (default: print only)")
REPS = flags.DEFINE_integer("reps", None, "timed repetitions (default 5, 2 with --quick)")
WARMUP = flags.DEFINE_integer("warmup", None, "untimed warm-up calls (default 2, 1 with --quick)")

# The paper's shapes (docs/paper.md) and the peers' width (issue 7).
PAPER_SHAPES = dict(max_video_len=128, max_query_len=25, feature_dim=1024, batch_size=100,
                    width=128, vocab_size=8000)
# --quick: tiny, only to keep the scripts working in CI (~1.5 min for the whole set).
QUICK_SHAPES = dict(max_video_len=16, max_query_len=6, feature_dim=32, batch_size=4,
                    width=16, vocab_size=50)


def shapes():
  return dict(QUICK_SHAPES if QUICK.value else PAPER_SHAPES)


def cycle_batches():
  """Batches in one timed pass over a cycle of mixed-length batches (bucket_cycle)."""
  return 4 if QUICK.value else 12


def reps():
  return REPS.value or (2 if QUICK.value else 5)


def warmup():
  return WARMUP.value if WARMUP.value is not None else (1 if QUICK.value else 2)


def train_warmup():
  """Untimed executions of a fresh training step: the first traces, and the third can
  still take ~6-8 s (docs/benchmarks.md), so never fewer than three."""
  return max(3, warmup())


def stats(seconds):
  """Median and spread of a list of durations (seconds)."""
  a = np.asarray(seconds, dtype=np.float64)
  if a.size == 0:
    raise ValueError("stats() needs at least one timing")
  q1, med, q3 = np.percentile(a, [25, 50, 75])
  return {"median_s": float(med), "min_s": float(a.min()), "max_s": float(a.max()),
          "iqr_s": float(q3 - q1), "reps": int(a.size)}


def time_calls(fn, n_warmup=None, n_reps=None, sync=None):
  """Times fn() n_reps times after n_warmup untimed calls; sync(result) forces completion."""
  n_warmup = warmup() if n_warmup is None else n_warmup
  n_reps = reps() if n_reps is None else n_reps
  for _ in range(n_warmup):
    r = fn()
    if sync:
      sync(r)
  times = []
  for _ in range(n_reps):
    t0 = time.perf_counter()
    r = fn()
    if sync:
      sync(r)
    times.append(time.perf_counter() - t0)
  return stats(times)


def round_robin(calls, n_warmup=None, n_rounds=None):
  """{key: callable} -> {key: [seconds of each timed call]}: n_warmup untimed calls of each
  (warmup()), then n_rounds rounds (reps()) timing one call of each in turn, so the shared
  machine's drift hits all of them alike."""
  n_warmup = warmup() if n_warmup is None else n_warmup
  for f in calls.values():
    for _ in range(n_warmup):
      f()
  times = {k: [] for k in calls}
  for _ in range(reps() if n_rounds is None else n_rounds):
    for k, f in calls.items():
      t0 = time.perf_counter()
      f()
      times[k].append(time.perf_counter() - t0)
  return times


def rate(timing, items):
  """items/s at the median, and at the slowest/fastest repetition (the spread)."""
  return {"median": items / timing["median_s"], "low": items / timing["max_s"],
          "high": items / timing["min_s"]}


def paired_ratios(times, ours, other):
  """{system: {task: [[seconds of one round], ...]}} -> {task: median and range over rounds
  of ours / other in that round} (> 1: ours faster): drift between rounds cancels, when
  both systems ran each round within seconds of each other."""
  return {task: spread([np.median(p) / np.median(o)
                        for o, p in zip(mine, times[other][task])])
          for task, mine in times[ours].items()}


def spread(per_round):
  """Median, low, high and count of per-round values (e.g. paired ratios)."""
  return {"median": float(np.median(per_round)), "low": float(np.min(per_round)),
          "high": float(np.max(per_round)), "rounds": len(per_round)}


def peak_rss_mb():
  """Peak resident memory of this process so far, MiB: /proc/self/status VmHWM (this
  program's own address space). getrusage's ru_maxrss is only the fallback: Linux carries
  it over fork+exec, so a child started by a big parent reports the parent's peak."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine_info():
  import keras
  backend = keras.backend.backend()
  # The framework under Keras by name: TensorFlow for every figure but bench.jax_speed,
  # which runs where TensorFlow is not installed.
  framework = importlib.import_module(backend)
  info = {}
  try:
    with open("/proc/cpuinfo") as f:  # every core's block alike: the last one stays
      info = {k.strip(): v.strip() for k, v in (l.split(":", 1) for l in f if ":" in l)}
  except OSError:
    pass
  cpu, cpu_flags = info.get("model name", platform.processor() or ""), info.get("flags", "")
  try:
    load = os.getloadavg()
  except OSError:
    load = None
  # Machines of one kind differ (AVX2-only vs AVX-512 EPYCs seen): say which this was.
  simd = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
          if f in cpu_flags.split()]
  return {"cpu": cpu, "cpu_simd": simd, "cores": os.cpu_count(), "load_avg_1_5_15": load,
          "python": sys.version.split()[0], backend: framework.__version__,
          "keras": keras.__version__, "keras_backend": backend, "platform": platform.platform(),
          **({"TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS")}
             if backend == "tensorflow" else {}),
          "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def matmul_rate(n=None, n_reps=None):
  """This machine's fp32 matmul rate (FLOP/s): the ceiling achieved FLOP/s is compared to."""
  import tensorflow as tf
  n = n or (128 if QUICK.value else 1024)
  a = tf.random.normal([n, n])
  b = tf.random.normal([n, n])
  mm = tf.function(lambda: tf.matmul(a, b))
  t = time_calls(lambda: mm(), n_reps=n_reps or reps(), sync=lambda r: r.numpy())
  flops = 2.0 * n ** 3
  return {"n": n, "flops_per_s": flops / t["median_s"], "spread": rate(t, flops), "timing": t}


def report(figure, results, notes=(), extra=None, machine=None):
  """Prints and (with --output) writes the figure's JSON; returns the payload.
  machine: more of the machine block (e.g. the accelerators)."""
  payload = {"figure": figure, "quick": bool(QUICK.value),
             "machine": {**machine_info(), **(machine or {})},
             "results": results, "peak_rss_mb": peak_rss_mb(), "notes": list(notes)}
  if extra:
    payload.update(extra)
  text = json.dumps(payload, indent=2, sort_keys=False)
  print(text)
  if OUTPUT.value:
    os.makedirs(os.path.dirname(os.path.abspath(OUTPUT.value)), exist_ok=True)
    with open(OUTPUT.value, "w") as f:
      f.write(text + "\n")
  return payload


def synthetic_batch(batch_size, n, l, dv, vocab_size, seed=0, full=False):
  """Inputs/labels of the design.md contract with random valid lengths (real masks)."""
  rng = np.random.default_rng(seed)
  nv = np.full(batch_size, n) if full else rng.integers(max(1, n // 4), n + 1, batch_size)
  nq = np.full(batch_size, l) if full else rng.integers(max(1, l // 3), l + 1, batch_size)
  vmask = (np.arange(n)[None] < nv[:, None]).astype(np.float32)
  feats = rng.standard_normal((batch_size, n, dv)).astype(np.float32) * vmask[:, :, None]
  toks = rng.integers(2, vocab_size, (batch_size, l)).astype(np.int32)
  toks = np.where(np.arange(l)[None] < nq[:, None], toks, 0).astype(np.int32)
  start = (rng.random(batch_size) * nv * 0.5).astype(np.int32)
  end = np.minimum(nv - 1, start + (rng.random(batch_size) * nv * 0.5).astype(np.int32))
  steps = np.arange(n)[None]
  inside = np.where(steps < nv[:, None],
                    ((steps >= start[:, None]) & (steps <= end[:, None])).astype(np.float32),
                    -1.0).astype(np.float32)
  inputs = {"video_features": feats, "video_mask": vmask, "query_tokens": toks}
  labels = {"start_probs": start.astype(np.int32), "end_probs": end.astype(np.int32),
            "inside_probs": inside}
  return inputs, labels


def bucket_cycle(s, batch_size, bucket_width, num_batches, seed=1):
  """`num_batches` training batches as the pipeline forms them from a pool of synthetic
  examples with the figure's random lengths: length buckets of `bucket_width` steps with
  the time axis cut (pipeline.batch_by_length + cut_time_axis), or plain max_video_len
  batches of the same examples for bucket_width 0. -> (tf.data cycle, time-axis widths)."""
  import tensorflow as tf
  from cimha_tf.data import pipeline
  x, y = synthetic_batch(batch_size * num_batches, s["max_video_len"], s["max_query_len"],
                         s["feature_dim"], s["vocab_size"], seed=seed)
  ds = pipeline.batch_by_length(
      tf.data.Dataset.from_tensor_slices((x, y)).repeat(), batch_size, bucket_width,
      lambda a, b: pipeline.valid_length(a["video_mask"]), drop_remainder=True)
  if bucket_width:
    ds = ds.map(lambda a, b: pipeline.cut_time_axis(a, b, bucket_width))
  batches = list(ds.take(num_batches).as_numpy_iterator())
  widths = [int(b[0]["video_mask"].shape[1]) for b in batches]

  def spec(a):  # as the trainer's pipeline: a free time axis with buckets, N without
    time_axis = bucket_width and a.dtype == np.float32 and a.ndim > 1
    return tf.TensorSpec((None, None) + a.shape[2:] if time_axis else (None,) + a.shape[1:],
                         tf.as_dtype(a.dtype))
  spec = tf.nest.map_structure(spec, batches[0])
  cycle = tf.data.Dataset.from_generator(lambda: iter(batches), output_signature=spec)
  return cycle.cache(), widths

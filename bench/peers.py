"""The issue's peer, measured in the same run as ours: an ExCL-style model in PyTorch.

Issue 7's anchors (ExCL about 80 samples/s training, 7 ms batch-1, 270 samples/s batch-100
inference, "on this kind of machine", PyTorch 2.13 CPU) are absolute numbers, and this
machine's speed drifts by 2x between runs (docs/benchmarks.md). So this script times
the peer and our model in the same run, in turn: each in its own process (PyTorch's and
TensorFlow's thread pools never share one), one round of each after the other. The
ratio is what carries over between machines.

The peer is ExCL (Ghosh et al., NAACL 2019) with its conditioned-LSTM span predictor, at
the issue's shapes and width 128: frozen 300-d embeddings -> text Bi-LSTM (2 x 64; the
two final states are the sentence vector, read at each query's own length through
pack_padded_sequence); video Bi-LSTM (2 x 64) over the 1024-d clip features; start
Bi-LSTM over [video state; sentence]; end Bi-LSTM over the start LSTM's states (the
"conditioned" head; the same start/end LSTM heads as ours); linear start/end scorers over
[head state; video state; sentence]; cross-entropy on start and end with padded steps
masked out of the softmax; no dropout (ours has it). The video-side LSTMs run over all N
steps (no packing), the peer's faster form everywhere but one task: packed, they read
each video at its own length, and on mixed lengths infer faster but train slower
(docs/benchmarks.md); so throughput_mixed packs them, and --peer_packed packs them in
every task.

Mixed lengths (tasks train_mixed, throughput_mixed): one pass over a cycle of batches
drawn from one pool of examples with valid lengths uniform in N/4..N; the peer gets them
as plain batches of N steps, ours as our training and evaluation pipelines batch them
(length buckets of 8 steps, time axis cut to the batch's longest video).

Ours: the model default (`bench.models.build`, Keras LSTM) trained by Keras's fit as in
figure 1; inference under tf.function (batch 100) and TFLite float32 in LiteRT (batch 1),
as in figure 2. Needs PyTorch, which cimha-tf itself does not use:
`pip install torch==2.13.0` (the issue's version; a CPU build).

  python -m bench.peers [--quick] [--output=bench/results/peers.json]
"""

import functools
import os
import time

from absl import app
from absl import flags
import numpy as np

from bench import common
from bench import models

PEER_PACKED = flags.DEFINE_bool(
    "peer_packed", False, "pack the peer's video-side LSTMs in every task (default: only "
    "in throughput_mixed, the one task where packing makes the peer faster)")

ANCHORS = {"ExCL": {"train_samples_per_s_batch100": 80, "batch1_ms": 7,
                    "batch100_samples_per_s": 270}}
# Issue 7's targets as ratios to ExCL's anchors (120, 3.5 ms, 400), keyed as ratios();
# they are about the shapes (every video N steps), not the mixed-length tasks.
TARGETS = {"train": 1.5, "latency_batch1": 2.0, "throughput": 1.5}
TASKS = ("train", "latency_batch1", "throughput", "train_mixed", "throughput_mixed")
_PER_ROUND = 2  # timed executions per task and round; more for fast tasks:
_TIMED_S = 0.1  # each task's timed calls last at least this long (batch 1: ~20 calls)
# Untimed calls before each task's timed ones, every round: the "after warm-up".
# Right after the hand-over (or any idle pause) this machine runs slower for a while, ours
# more than the peer (docs/benchmarks.md); the busy re-warm also lets the other process's
# threads park before anything is timed.
_REWARM_S = 0.2


def _torch():
  try:
    import torch
  except ImportError as e:
    raise SystemExit("bench.peers needs PyTorch (the peers' framework; not a dependency of "
                     "cimha-tf): pip install torch==2.13.0") from e
  return torch


def build_excl(dv, vocab_size, embedding_dim=300, units=64, seed=0, packed=False):
  """The ExCL-style peer as a torch.nn.Module (see the module docstring). Its attribute
  `packed` (initially `packed`) packs its video-side LSTMs too: each video read at its
  own length, exact on padded batches."""
  torch = _torch()
  nn = torch.nn

  class ExCL(nn.Module):

    def __init__(self):
      super().__init__()
      w = 2 * units
      self.embed = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
      self.embed.weight.requires_grad_(False)  # frozen GloVe, as in our configs
      self.text = nn.LSTM(embedding_dim, units, batch_first=True, bidirectional=True)
      self.video = nn.LSTM(dv, units, batch_first=True, bidirectional=True)
      self.start = nn.LSTM(2 * w, units, batch_first=True, bidirectional=True)
      self.end = nn.LSTM(w, units, batch_first=True, bidirectional=True)
      self.start_score = nn.Linear(3 * w, 1)
      self.end_score = nn.Linear(3 * w, 1)
      self.packed = packed

    def forward(self, video_features, video_mask, query_tokens):
      lengths = (query_tokens != 0).sum(1).clamp(min=1).cpu()
      _, (h, _) = self.text(nn.utils.rnn.pack_padded_sequence(
          self.embed(query_tokens.long()), lengths, batch_first=True, enforce_sorted=False))
      sentence = torch.cat([h[0], h[1]], -1)  # final forward and backward states
      n = video_mask.sum(1).long().clamp(min=1).cpu()

      def video_lstm(lstm, x):
        if not self.packed:
          return lstm(x)[0]
        out, _ = lstm(nn.utils.rnn.pack_padded_sequence(x, n, batch_first=True,
                                                        enforce_sorted=False))
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True,
                                                total_length=x.shape[1])[0]

      hv = video_lstm(self.video, video_features)
      s = sentence[:, None].expand(-1, hv.shape[1], -1)
      hs = video_lstm(self.start, torch.cat([hv, s], -1))
      he = video_lstm(self.end, hs)
      pad = (1.0 - video_mask) * -1e30
      start = self.start_score(torch.cat([hs, hv, s], -1))[..., 0] + pad
      end = self.end_score(torch.cat([he, hv, s], -1))[..., 0] + pad
      return start, end

  torch.manual_seed(seed)
  return ExCL()


def _rewarm(f):
  t0 = time.perf_counter()
  f()
  while time.perf_counter() - t0 < _REWARM_S:
    f()


def _round(f):
  """f -> a callable that re-warms f (untimed calls for _REWARM_S, at least one), then
  runs it at least _PER_ROUND times and for _TIMED_S, and returns the seconds of each."""
  def run():
    _rewarm(f)
    seconds = []
    while len(seconds) < _PER_ROUND or sum(seconds) < _TIMED_S:
      t0 = time.perf_counter()
      f()
      seconds.append(time.perf_counter() - t0)
    return seconds
  return run


def _cycle_round(calls):
  """One callable per batch of a cycle -> a callable that re-warms on the first batch as
  _round does, then returns [the seconds of one pass over all of them]."""
  def run():
    _rewarm(calls[0])
    t0 = time.perf_counter()
    for call in calls:
      call()
    return [time.perf_counter() - t0]
  return run


def mixed_pool(s, batch_size):
  """The examples of the mixed-length tasks (common.bucket_cycle's pool: valid lengths
  uniform in N/4..N) as plain batches of N steps, in order. NumPy only: the peer's
  process never imports TensorFlow."""
  b, n = batch_size, s["cycle_batches"]
  x, y = common.synthetic_batch(b * n, s["max_video_len"], s["max_query_len"],
                                s["feature_dim"], s["vocab_size"], seed=1)
  cut = lambda d, i: {k: v[i * b:(i + 1) * b] for k, v in d.items()}
  return [(cut(x, i), cut(y, i)) for i in range(n)]


def _peer_runs(s, batch_size):
  """({task: callable timing one round of it}, trainable parameter count) for the peer."""
  torch = _torch()
  model = build_excl(s["feature_dim"], s["vocab_size"], s["embedding_dim"],
                     units=max(2, s["width"] // 2), packed=s["peer_packed"])
  opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
  ce = torch.nn.functional.cross_entropy

  def tensors(x, y):
    return ({k: torch.from_numpy(v) for k, v in x.items()},
            [torch.from_numpy(y[k]).long() for k in ("start_probs", "end_probs")])

  def train_step(t, labels):
    model.train()
    model.packed = s["peer_packed"]
    opt.zero_grad(set_to_none=True)
    ls, le = model(t["video_features"], t["video_mask"], t["query_tokens"])
    loss = ce(ls, labels[0]) + ce(le, labels[1])
    loss.backward()
    opt.step()
    return float(loss.detach())

  def infer(t, packed=s["peer_packed"]):
    model.eval()
    model.packed = packed
    with torch.inference_mode():
      ls, le = model(t["video_features"], t["video_mask"], t["query_tokens"])
      return float(ls[0, 0] + le[0, 0])

  t, labels = tensors(*common.synthetic_batch(batch_size, s["max_video_len"],
                                              s["max_query_len"], s["feature_dim"],
                                              s["vocab_size"]))
  t1 = {k: v[:1] for k, v in t.items()}
  # Mixed lengths: each task in the peer's faster form, measured: packed video-side
  # LSTMs infer faster on them and train slower (module docstring).
  mixed = [tensors(*b) for b in mixed_pool(s, batch_size)]
  trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
  return {"train": _round(lambda: train_step(t, labels)),
          "latency_batch1": _round(lambda: infer(t1)),
          "throughput": _round(lambda: infer(t)),
          "train_mixed": _cycle_round([functools.partial(train_step, *b) for b in mixed]),
          "throughput_mixed": _cycle_round(
              [functools.partial(infer, b[0], packed=True) for b in mixed])
          }, int(trainable)


def _our_runs(s, batch_size):
  """As _peer_runs, for ours; training steps are timed inside Keras's own loop."""
  import tensorflow as tf
  from bench import train_throughput
  from cimha_tf.deploy import tflite
  from cimha_tf.evaluation.runner import EVAL_BUCKET_WIDTH
  from cimha_tf.model import compile_model
  from cimha_tf.experiment.config import BUCKET_WIDTH
  model, cfg = models.build(s, "keras")
  x, y = common.synthetic_batch(batch_size, s["max_video_len"], s["max_query_len"],
                                s["feature_dim"], s["vocab_size"])
  ds = tf.data.Dataset.from_tensors((x, y)).repeat()
  infer_model, _ = models.build(s, "keras")  # untouched weights for inference
  fn = tf.function(lambda xi: infer_model(xi, training=False))
  xb = {k: tf.constant(v) for k, v in x.items()}
  # Fixed at 128 steps like the peer's input (a free time axis would run only the
  # example's valid steps; docs/benchmarks.md measures that separately).
  lite = tflite.TFLiteModel(tflite.convert(infer_model, s["max_video_len"], s["max_query_len"],
                                           free_length=False), num_threads=os.cpu_count())
  x1 = {k: v[:1] for k, v in x.items()}
  # Mixed lengths: the same examples as the peer's, batched as our pipelines batch them
  # (length buckets, time axis cut; the training and evaluation defaults).
  n = s["cycle_batches"]
  train_cycle, _ = common.bucket_cycle(s, batch_size, BUCKET_WIDTH, n)
  eval_inputs = [xi for xi, _ in common.bucket_cycle(s, batch_size, EVAL_BUCKET_WIDTH, n)[0]]
  mixed_model, _ = models.build(s, "keras")  # its own traced step: a free time axis
  compile_model(model, cfg, 1e-4)  # both traced and warmed up by _worker's untimed rounds
  compile_model(mixed_model, cfg, 1e-4)
  fn_mixed = tf.function(lambda xi: infer_model(xi, training=False), reduce_retracing=True)
  # time_steps / time_cycle leave their fit's first step untimed (~0.7 s): the re-warm.
  return {"train": lambda: train_throughput.time_steps(model, ds, n=_PER_ROUND),
          "latency_batch1": _round(lambda: lite.run_batch(
              x1["video_features"], x1["video_mask"], x1["query_tokens"])),
          "throughput": _round(lambda: fn(xb)["start_probs"].numpy()),
          "train_mixed": lambda: [train_throughput.time_cycle(mixed_model, train_cycle, n)],
          "throughput_mixed": _cycle_round(
              [functools.partial(lambda xi: fn_mixed(xi)["start_probs"].numpy(), xi)
               for xi in eval_inputs])
          }, int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _worker(system, s, batch_size, n_warm, conn):
  """One system in its own process: PyTorch's and TensorFlow's thread pools never share
  one. Builds and warms up, then times the task each message names until sent None."""
  if system == "ExCL":
    _torch().set_num_threads(os.cpu_count())
    runs, params = _peer_runs(s, batch_size)
  else:
    runs, params = _our_runs(s, batch_size)
  for _ in range(-(-n_warm // _PER_ROUND)):  # at least n_warm untimed runs of each task
    for f in runs.values():
      f()
  conn.send(params)
  for task in iter(conn.recv, None):
    conn.send(runs[task]())


def measure(s, batch_size):
  """Peer and ours in two processes, timed in turn, task by task: each round, for each
  task, one process re-warms and times it, then the other (first one, then the other
  going first, round by round), while the one not timing waits on its pipe (idle). The
  two timings of a task are seconds apart, so the machine's drift (minutes) pairs off."""
  import multiprocessing
  ctx = multiprocessing.get_context("spawn")  # no TensorFlow/PyTorch state forked
  # The workers parse no flags, and the peer's never imports TensorFlow: all they need
  # comes from here.
  s = dict(s, embedding_dim=models.model_config(s).embedding_dim,
           cycle_batches=common.cycle_batches(), peer_packed=PEER_PACKED.value)
  workers = {}
  for system in ("ExCL", "cimha-tf"):
    mine, theirs = ctx.Pipe()
    p = ctx.Process(target=_worker, args=(system, s, batch_size, common.train_warmup(), theirs),
                    daemon=True)
    p.start()
    workers[system] = (p, mine)
  params = {system: conn.recv() for system, (_, conn) in workers.items()}
  times = {system: {task: [] for task in TASKS} for system in workers}
  for r in range(common.reps()):
    for task in TASKS:
      for system in list(workers)[::1 if r % 2 == 0 else -1]:
        conn = workers[system][1]
        conn.send(task)
        times[system][task].append(conn.recv())
  for p, conn in workers.values():
    conn.send(None)
    p.join(60)
  out = {}
  for system, tasks in times.items():
    out[system] = {"trainable_parameters": params[system]}
    for task, rounds in tasks.items():
      st = common.stats([t for ts in rounds for t in ts])
      n = 1 if task == "latency_batch1" else batch_size
      # Mixed-length tasks time whole passes over the cycle's batches.
      per_call = n * s["cycle_batches"] if task.endswith("_mixed") else n
      r = {"timing": st, "samples_per_s": common.rate(st, per_call), "batch_size": n}
      if task == "latency_batch1":
        r["latency_ms"] = 1e3 * st["median_s"]
      out[system][task] = r
  return out, common.paired_ratios(times, "cimha-tf", "ExCL")


def ratios(out):
  """Ours over ExCL's, per task, each the way round where > 1 means ours is faster."""
  o, p = out["cimha-tf"], out["ExCL"]
  rate = lambda d, k: d[k]["samples_per_s"]["median"]
  return {k: rate(o, k) / rate(p, k) for k in TASKS if k in o and k in p}


def main(argv):
  del argv
  torch = _torch()
  s = common.shapes()
  out, paired = measure(s, s["batch_size"])
  r = ratios(out)
  for system, tasks in out.items():
    for task, v in tasks.items():
      if isinstance(v, dict):
        print(f"{system} {task}: {v['samples_per_s']['median']:.1f} samples/s"
              + (f", {v['latency_ms']:.2f} ms" if "latency_ms" in v else ""), flush=True)
  print("ours / ExCL:", {k: round(v, 2) for k, v in r.items()}, flush=True)
  print("ours / ExCL, round by round (median, min-max):",
        {k: f"{v['median']:.2f} ({v['low']:.2f}-{v['high']:.2f})" for k, v in paired.items()},
        flush=True)
  notes = ["ExCL-style PyTorch model (module docstring); it and ours each in its own process, "
           "timed in turn task by task (each round, per task and system, untimed calls for "
           f"{_REWARM_S} s, then timed ones: at least {_PER_ROUND} and {_TIMED_S} s)",
           f"torch {torch.__version__}, {os.cpu_count()} threads; ours: Keras fit "
           "(training), tf.function (batch inference), TFLite float32 in LiteRT (batch 1)"]
  common.report("peers", out, notes, extra={
      "shapes": s, "ratio_ours_over_peer": r, "ratio_ours_over_peer_by_round": paired,
      "target_ratio": TARGETS,
      "anchors_from_issue": ANCHORS, "torch": torch.__version__,
      "peer_packed": PEER_PACKED.value})


if __name__ == "__main__":
  app.run(main)

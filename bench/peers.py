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
steps (no packing), the cheapest form: any masking of them would only slow the peer down.

Ours: the model default (`bench.models.build`, Keras LSTM) trained by Keras's fit as in
figure 1; inference under tf.function (batch 100) and TFLite float32 in LiteRT (batch 1),
as in figure 2. Needs PyTorch, which cimha-tf itself does not use:
`pip install torch==2.13.0` (the issue's version; a CPU build).

  python -m bench.peers [--quick] [--output=bench/results/peers.json]
"""

import os
import time

from absl import app
import numpy as np

from bench import common
from bench import models

ANCHORS = {"ExCL": {"train_samples_per_s_batch100": 80, "batch1_ms": 7,
                    "batch100_samples_per_s": 270}}
# Issue 7's targets as ratios to ExCL's anchors (120, 3.5 ms, 400), keyed as ratios().
TARGETS = {"train": 1.5, "latency_batch1": 2.0, "throughput": 1.5}
_PER_ROUND = 2  # timed executions per task and round
# A pause before each task: the previous task's worker threads (TensorFlow's spin before
# they park; tf.data's prefetch) would otherwise still hold a core when TFLite starts.
_SETTLE_S = 0.3


def _torch():
  try:
    import torch
  except ImportError as e:
    raise SystemExit("bench.peers needs PyTorch (the peers' framework; not a dependency of "
                     "cimha-tf): pip install torch==2.13.0") from e
  return torch


def build_excl(dv, vocab_size, embedding_dim=300, units=64, seed=0):
  """The ExCL-style peer as a torch.nn.Module (see the module docstring)."""
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

    def forward(self, video_features, video_mask, query_tokens):
      lengths = (query_tokens != 0).sum(1).clamp(min=1).cpu()
      packed = nn.utils.rnn.pack_padded_sequence(
          self.embed(query_tokens.long()), lengths, batch_first=True, enforce_sorted=False)
      _, (h, _) = self.text(packed)
      sentence = torch.cat([h[0], h[1]], -1)  # final forward and backward states
      hv, _ = self.video(video_features)
      s = sentence[:, None].expand(-1, hv.shape[1], -1)
      hs, _ = self.start(torch.cat([hv, s], -1))
      he, _ = self.end(hs)
      pad = (1.0 - video_mask) * -1e30
      start = self.start_score(torch.cat([hs, hv, s], -1))[..., 0] + pad
      end = self.end_score(torch.cat([he, hv, s], -1))[..., 0] + pad
      return start, end

  torch.manual_seed(seed)
  return ExCL()


def _round(f):
  """f -> a callable that runs it _PER_ROUND times and returns the seconds of each."""
  def run():
    seconds = []
    for _ in range(_PER_ROUND):
      t0 = time.perf_counter()
      f()
      seconds.append(time.perf_counter() - t0)
    return seconds
  return run


def _peer_runs(s, batch_size):
  """({task: callable timing one round of it}, trainable parameter count) for the peer."""
  torch = _torch()
  model = build_excl(s["feature_dim"], s["vocab_size"], s["embedding_dim"],
                     units=max(2, s["width"] // 2))
  opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
  x, y = common.synthetic_batch(batch_size, s["max_video_len"], s["max_query_len"],
                                s["feature_dim"], s["vocab_size"])
  t = {k: torch.from_numpy(v) for k, v in x.items()}
  start, end = (torch.from_numpy(y[k]).long() for k in ("start_probs", "end_probs"))
  ce = torch.nn.functional.cross_entropy

  def train_step():
    model.train()
    opt.zero_grad(set_to_none=True)
    ls, le = model(t["video_features"], t["video_mask"], t["query_tokens"])
    loss = ce(ls, start) + ce(le, end)
    loss.backward()
    opt.step()
    return float(loss)

  def infer(batch):
    xi = {k: v[:batch] for k, v in t.items()}

    def run():
      model.eval()
      with torch.inference_mode():
        ls, le = model(xi["video_features"], xi["video_mask"], xi["query_tokens"])
        return float(ls[0, 0] + le[0, 0])
    return run

  trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
  return {"train": _round(train_step), "latency_batch1": _round(infer(1)),
          "throughput": _round(infer(batch_size))}, int(trainable)


def _our_runs(s, batch_size):
  """As _peer_runs, for ours; training steps are timed inside Keras's own loop."""
  import tensorflow as tf
  from bench import train_throughput
  from cimha_tf.deploy import tflite
  from cimha_tf.model import compile_model
  model, cfg = models.build(s, "keras")
  x, y = common.synthetic_batch(batch_size, s["max_video_len"], s["max_query_len"],
                                s["feature_dim"], s["vocab_size"])
  ds = tf.data.Dataset.from_tensors((x, y)).repeat()
  infer_model, _ = models.build(s, "keras")  # untouched weights for inference
  fn = tf.function(lambda xi: infer_model(xi, training=False))
  xb = {k: tf.constant(v) for k, v in x.items()}
  lite = tflite.TFLiteModel(tflite.convert(infer_model, s["max_video_len"], s["max_query_len"]),
                            num_threads=os.cpu_count())
  x1 = {k: v[:1] for k, v in x.items()}
  compile_model(model, cfg, 1e-4)  # traced and warmed up by _worker's untimed rounds
  return {"train": lambda: train_throughput.time_steps(model, ds, n=_PER_ROUND),
          "latency_batch1": _round(lambda: lite.run_batch(
              x1["video_features"], x1["video_mask"], x1["query_tokens"])),
          "throughput": _round(lambda: fn(xb)["start_probs"].numpy())}, int(
              sum(np.prod(w.shape) for w in model.trainable_weights))


def _worker(system, s, batch_size, n_warm, conn):
  """One system in its own process: PyTorch's and TensorFlow's thread pools never share
  one. Builds and warms up, then times one round per message until told to stop."""
  if system == "ExCL":
    _torch().set_num_threads(os.cpu_count())
    runs, params = _peer_runs(s, batch_size)
  else:
    runs, params = _our_runs(s, batch_size)
  for _ in range(-(-n_warm // _PER_ROUND)):  # at least n_warm untimed runs of each task
    for f in runs.values():
      f()
  conn.send(params)
  while conn.recv():
    times = {}
    for task, f in runs.items():
      time.sleep(_SETTLE_S)
      times[task] = f()
    conn.send(times)


def measure(s, batch_size):
  """Peer and ours in two processes, timed in turn: each round one process times two
  executions of each of its tasks while the other waits on its pipe (idle)."""
  import multiprocessing
  ctx = multiprocessing.get_context("spawn")  # no TensorFlow/PyTorch state forked
  # The peer's process never imports TensorFlow: its shapes come from here.
  s = dict(s, embedding_dim=models.model_config(s).embedding_dim)
  workers = {}
  for system in ("ExCL", "cimha-tf"):
    mine, theirs = ctx.Pipe()
    p = ctx.Process(target=_worker, args=(system, s, batch_size, common.train_warmup(), theirs),
                    daemon=True)
    p.start()
    workers[system] = (p, mine)
  params = {system: conn.recv() for system, (_, conn) in workers.items()}
  times = {system: {} for system in workers}
  for _ in range(common.reps()):
    for system, (_, conn) in workers.items():
      conn.send(True)
      for task, ts in conn.recv().items():
        times[system].setdefault(task, []).extend(ts)
  for p, conn in workers.values():
    conn.send(False)
    p.join(60)
  out = {}
  for system, tasks in times.items():
    out[system] = {"trainable_parameters": params[system]}
    for task, ts in tasks.items():
      st = common.stats(ts)
      n = 1 if task == "latency_batch1" else batch_size
      r = {"timing": st, "samples_per_s": common.rate(st, n), "batch_size": n}
      if task == "latency_batch1":
        r["latency_ms"] = 1e3 * st["median_s"]
      out[system][task] = r
  return out


def ratios(out):
  """Ours over ExCL's, per task, each the way round where > 1 means ours is faster."""
  o, p = out["cimha-tf"], out["ExCL"]
  rate = lambda d, k: d[k]["samples_per_s"]["median"]
  return {k: rate(o, k) / rate(p, k) for k in ("train", "latency_batch1", "throughput")}


def main(argv):
  del argv
  torch = _torch()
  s = common.shapes()
  out = measure(s, s["batch_size"])
  r = ratios(out)
  for system, tasks in out.items():
    for task, v in tasks.items():
      if isinstance(v, dict):
        print(f"{system} {task}: {v['samples_per_s']['median']:.1f} samples/s"
              + (f", {v['latency_ms']:.2f} ms" if "latency_ms" in v else ""), flush=True)
  print("ours / ExCL:", {k: round(v, 2) for k, v in r.items()}, flush=True)
  notes = ["ExCL-style PyTorch model (module docstring); it and ours each in its own process, "
           "timed in turn (each round: 2 executions per task and system)",
           f"torch {torch.__version__}, {os.cpu_count()} threads; ours: Keras fit "
           "(training), tf.function (batch inference), TFLite float32 in LiteRT (batch 1)"]
  common.report("peers", out, notes, extra={
      "shapes": s, "ratio_ours_over_peer": r, "target_ratio": TARGETS,
      "anchors_from_issue": ANCHORS, "torch": torch.__version__})


if __name__ == "__main__":
  app.run(main)

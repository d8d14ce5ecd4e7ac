"""Where a training step's (or, with --mode=inference, a batch's forward pass's) time goes:
the TF profiler over whole steps, summed per op type and per model block.

Traces --steps training steps (Keras's own step, batch 100 at the paper shapes) with
tf.profiler, reads the host plane of the .xplane.pb it writes, and sums the duration of
every TensorFlow op executed by the inter-op threads, per op type ("_MklMatMul",
"StatelessRandomUniformV2", ...) and per block (the model layer in the op's name,
forward and "gradient" separately). Two inter-op threads run ops side by side, so op
time per step exceeds wall time; the shares are what to read.

  python -m bench.profile_step [--quick] [--steps=2] [--output=bench/results/profile_step.json]
  python -m bench.profile_step --mode=inference --steps=5 --output=bench/results/profile_inference.json
  (bench.run_all's figure "profile_inference")

--mode=inference traces the Keras model under tf.function, training=False, as
bench.inference's "keras" engine times it (batch 100).
"""

import collections
import glob
import re
import shutil
import tempfile
import time

from absl import app
from absl import flags

from bench import common
from bench import models

STEPS = flags.DEFINE_integer("steps", 2, "training steps to trace")
TOP = flags.DEFINE_integer("top", 25, "op types / blocks to keep in the JSON")
MODE = flags.DEFINE_enum("mode", "train", ["train", "inference"],
                         "train: Keras's training step; inference: the forward pass")


def block_of(op_name):
  """'gradient_tape/cimha_cimha_1/span_head_1/start_lstm_1/...' -> 'gradient: span_head/start_lstm'."""
  parts = op_name.split("/")
  grad = parts[0] == "gradient_tape"
  if grad:
    parts = parts[1:]
  if len(parts) < 2 or not parts[0].startswith("cimha"):
    return "optimizer and other"
  layers = [re.sub(r"_\d+$", "", p) for p in parts[1:3] if not p.startswith("while")]
  return ("gradient: " if grad else "forward: ") + "/".join(layers)


def op_times(xplane_path, steps):
  """({op_type: seconds per step}, {block: seconds per step}, {op_type: calls per step})."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  space = xplane_pb2.XSpace()
  with open(xplane_path, "rb") as f:
    space.ParseFromString(f.read())
  by_type, by_block, calls = collections.Counter(), collections.Counter(), collections.Counter()
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    for line in plane.lines:
      if not line.name.startswith("tf_Compute"):  # inter-op threads: one event per op
        continue
      for ev in line.events:
        name = plane.event_metadata[ev.metadata_id].name
        if ":" not in name or "::" in name:  # executor / threadpool bookkeeping
          continue
        op, op_type = name.rsplit(":", 1)
        seconds = ev.duration_ps / 1e12 / steps
        by_type[op_type] += seconds
        by_block[block_of(op)] += seconds
        calls[op_type] += 1
  return by_type, by_block, {k: v // steps for k, v in calls.items()}


def main(argv):
  del argv
  import tensorflow as tf
  from cimha_tf.model import compile_model

  s = common.shapes()
  model, cfg = models.build(s, "keras")
  compile_model(model, cfg, 1e-4)
  x, y = common.synthetic_batch(s["batch_size"], s["max_video_len"], s["max_query_len"],
                                s["feature_dim"], s["vocab_size"])
  if MODE.value == "train":
    step = lambda: model.train_on_batch(x, y)
  else:
    forward = tf.function(lambda x: model(x, training=False))
    step = lambda: {k: v.numpy() for k, v in forward(x).items()}
  for _ in range(common.train_warmup()):
    step()
  logdir = tempfile.mkdtemp(prefix="cimha_profile_")
  tf.profiler.experimental.start(logdir)
  t0 = time.perf_counter()
  for _ in range(STEPS.value):
    step()
  wall = (time.perf_counter() - t0) / STEPS.value
  tf.profiler.experimental.stop()
  try:
    path = sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]
    by_type, by_block, calls = op_times(path, STEPS.value)
  finally:
    shutil.rmtree(logdir, ignore_errors=True)
  total = sum(by_type.values())
  results = {
      "wall_s_per_step": wall,
      "op_s_per_step": total,
      "by_op_type": {k: {"ms": 1e3 * v, "share": v / total, "calls": calls[k]}
                     for k, v in by_type.most_common(TOP.value)},
      "by_block": {k: {"ms": 1e3 * v, "share": v / total}
                   for k, v in by_block.most_common(TOP.value)},
  }
  for k, v in by_type.most_common(10):
    print(f"{1e3 * v:9.1f} ms {v / total:6.1%} {calls[k]:6d} calls  {k}")
  what = "training steps" if MODE.value == "train" else "forward passes (training=False)"
  notes = [f"batch {s['batch_size']}, {STEPS.value} {what} traced after warm-up; op time "
           "summed over the inter-op threads (runs in parallel, so > wall time)"]
  figure = "profile_step" if MODE.value == "train" else "profile_inference"
  common.report(figure, results, notes, extra={"shapes": s, "mode": MODE.value})


if __name__ == "__main__":
  app.run(main)

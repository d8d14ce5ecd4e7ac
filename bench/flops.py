"""Figure 5: model FLOPs per sample, counted from the graph, and achieved FLOP/s as a
fraction of this machine's fp32 matmul rate, all measured in this process.

How FLOPs are counted: the forward pass of cimha_tf.model at batch 1 and full length
(N = max_video_len, L = max_query_len; masks do not change the work) is traced with the
"unrolled" LSTM form, so every LSTM step is a static op, and every MatMul /
BatchMatMul / Einsum in the graph is counted as 2 * (product of all its dimensions)
(multiply + add), per name scope. Element-wise ops (activations, softmax, gates) are not
counted: they are a few percent of the matmul FLOPs here and mostly memory-bound.
A training step is counted as 3 x forward (backward = 2 matmuls per forward matmul:
input- and weight-gradient), minus the input-gradient matmul of the two layers whose
inputs need none (the video projection on Dv features, and the query LSTM's input
projection on the frozen embeddings); the optimizer's element-wise update is not counted.
Achieved FLOP/s = counted FLOPs/sample x measured samples/s (training, batch 100, and
Keras inference, batch 100), against the fp32 matmul rate (n x n tf.matmul, n = 1024)
measured here too, so the fraction holds under the same load.

  python -m bench.flops [--quick] [--output=bench/results/flops.json]
"""

import collections
import re

from absl import app
from absl import flags
import numpy as np

from bench import common
from bench import models

LSTMS = flags.DEFINE_list("lstms", None, "LSTM forms whose training step is timed "
                          "(default keras)")

_MATMULS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum")


def _dims(t):
  return [int(d) if d is not None else None for d in t.shape.as_list()]


def op_flops(op):
  """2 * multiply-adds of one matmul-like op from its static shapes (None if unknown)."""
  if op.type == "MatMul":
    a, b = _dims(op.inputs[0]), _dims(op.inputs[1])
    m, k = (a[1], a[0]) if op.get_attr("transpose_a") else (a[0], a[1])
    n = b[0] if op.get_attr("transpose_b") else b[1]
    vals = [m, k, n]
  elif op.type.startswith("BatchMatMul"):
    out = _dims(op.outputs[0])
    a = _dims(op.inputs[0])
    adj = op.get_attr("adj_x") if "adj_x" in op.node_def.attr else False
    k = a[-2] if adj else a[-1]
    vals = out + [k]
  else:  # Einsum: every distinct index once
    eq = op.get_attr("equation").decode().replace(" ", "")
    ins = eq.split("->")[0].split(",")
    sizes = {}
    for letters, t in zip(ins, op.inputs):
      for ch, d in zip(letters, _dims(t)):
        sizes[ch] = d
    vals = list(sizes.values())
  if any(v is None for v in vals):
    return None
  return 2 * int(np.prod(vals, dtype=np.int64))


def _scope(name, model_name):
  # the functional model's ops are named [MODEL/]LAYER_k/...: the layer is the block
  parts = name.split("/")
  if parts[0].startswith(model_name) and len(parts) > 1:
    parts = parts[1:]
  return re.sub(r"_\d+$", "", parts[0])


def count_forward(s):
  """-> (total FLOPs per sample, {block: FLOPs}, unknown-shape op count)."""
  import tensorflow as tf
  model, _ = models.build(s, "unrolled")
  spec = {"video_features": tf.TensorSpec([1, s["max_video_len"], s["feature_dim"]], tf.float32),
          "video_mask": tf.TensorSpec([1, s["max_video_len"]], tf.float32),
          "query_tokens": tf.TensorSpec([1, s["max_query_len"]], tf.int32)}
  graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
  per_block, unknown = collections.Counter(), 0
  for op in graph.get_operations():
    if op.type in _MATMULS:
      f = op_flops(op)
      if f is None:
        unknown += 1
      else:
        per_block[_scope(op.name, model.name)] += f
  return sum(per_block.values()), dict(per_block), unknown, model


def no_input_grad_flops(per_block, s, cfg):
  """Forward FLOPs of the matmuls whose input gradient training never computes."""
  video = 2 * s["max_video_len"] * s["feature_dim"] * cfg.width
  query_in = 2 * 2 * s["max_query_len"] * cfg.embedding_dim * 4 * cfg.query_lstm_units
  return video + query_in


def main(argv):
  del argv
  import tensorflow as tf
  from cimha_tf.model import compile_model
  from bench.train_throughput import measure
  s = common.shapes()
  fwd, per_block, unknown, model = count_forward(s)
  cfg = models.model_config(s)
  train_flops = 3 * fwd - no_input_grad_flops(per_block, s, cfg)
  mm = common.matmul_rate()
  results = {"forward_flops_per_sample": fwd, "train_flops_per_sample": train_flops,
             "forward_flops_by_block": dict(sorted(per_block.items(), key=lambda kv: -kv[1])),
             "ops_with_unknown_shapes": unknown, "matmul_rate": mm, "achieved": {}}
  lstms = LSTMS.value or ["keras"]
  bs = s["batch_size"]
  for lstm in lstms:
    r = measure(s, bs, lstm, False, 1)
    sps = r["samples_per_s"]["median"]
    results["achieved"][f"train_{lstm}@batch{bs}"] = {
        "samples_per_s": sps, "flops_per_s": sps * train_flops,
        "fraction_of_matmul_rate": sps * train_flops / mm["flops_per_s"]}
  x, _ = common.synthetic_batch(bs, s["max_video_len"], s["max_query_len"], s["feature_dim"],
                                s["vocab_size"], seed=1)
  x = {k: tf.constant(v) for k, v in x.items()}
  keras_model, _ = models.build(s, "keras")
  fn = tf.function(lambda x: keras_model(x, training=False))
  t = common.time_calls(lambda: fn(x)["start_probs"].numpy())
  sps = bs / t["median_s"]
  results["achieved"][f"inference_keras@batch{bs}"] = {
      "samples_per_s": sps, "flops_per_s": sps * fwd,
      "fraction_of_matmul_rate": sps * fwd / mm["flops_per_s"]}
  mm2 = common.matmul_rate()  # again after: the load may have moved
  results["matmul_rate_after"] = mm2
  notes = ["FLOPs: matmul/einsum ops of the traced forward graph (unrolled LSTMs), 2 per "
           "multiply-add; training = 3 x forward minus the input-gradients never computed "
           "(video projection, query LSTM input projection); element-wise ops not counted",
           "fraction = achieved FLOP/s / fp32 matmul FLOP/s measured in this process"]
  common.report("flops", results, notes, extra={"shapes": s})


if __name__ == "__main__":
  app.run(main)

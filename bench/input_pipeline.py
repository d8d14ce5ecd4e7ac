"""Figure 3: the input pipeline alone (examples/s from prepared TFRecords) and its ratio
to what the training step consumes (samples/s), both measured in this process.

Data: the synthetic planted-moment dataset (cimha_tf.data.synthetic) at Dv = 1024, run
through the real prepare path (TFRecords, one Example per video) and read with
cimha_tf.data.pipeline.train_dataset(repeat=True, drop_remainder=True), the training
input. Two regimes: the decoded-video cache on (small splits: after the first pass the
pipeline only unrolls, shuffles and batches) and off (cache_bytes=0: every pass reads and
decodes the TFRecords, as for a split larger than the cache), each with and without the
configs' length buckets (data.bucket_width). The consumption is the model's default
training step on max_video_len batches; length buckets make the step up to ~1.5x faster
(figure 1), which the bucketed regimes' margin must cover.

--deterministic reads the pipeline as the training binary does by default
(train.deterministic): op determinism on and a fixed order. Op determinism is for the
whole process, so run_all leaves it off.

  python -m bench.input_pipeline [--quick] [--deterministic] [--output=bench/results/input_pipeline.json]
"""

import os
import tempfile
import time

from absl import app
from absl import flags

from bench import common

VIDEOS = flags.DEFINE_integer("videos", None, "synthetic videos (default 120, 6 with --quick)")
DETERMINISTIC = flags.DEFINE_bool(
    "deterministic", False, "op determinism on and a fixed order, as cimha_tf.train by default")


def make_prepared(tmp, s):
  from cimha_tf.data import prepare, synthetic
  n = VIDEOS.value or (6 if common.QUICK.value else 120)
  paths = synthetic.write_synthetic_dataset(os.path.join(tmp, "raw"), num_videos=n,
                                            feature_dim=s["feature_dim"], glove_dim=8,
                                            progress=False)
  out = os.path.join(tmp, "prepared")
  meta = prepare.prepare("charades_sta", paths["annotations"], paths["features"], out,
                         max_video_len=s["max_video_len"], max_query_len=s["max_query_len"],
                         progress=False)
  return out, meta


def pipeline_rate(data_dir, batch, cache_bytes, n_batches, bucket_width=0):
  from cimha_tf.data import pipeline
  ds = pipeline.train_dataset(data_dir, "train", batch, repeat=True, drop_remainder=True,
                              seed=0, cache_bytes=cache_bytes, bucket_width=bucket_width,
                              deterministic=DETERMINISTIC.value)
  it = iter(ds)
  t0 = time.perf_counter()
  next(it)
  first = time.perf_counter() - t0
  for _ in range(n_batches):  # warm: fill the cache / autotune buffers
    next(it)
  times = []
  for _ in range(common.reps()):
    t0 = time.perf_counter()
    for _ in range(n_batches):
      next(it)
    times.append((time.perf_counter() - t0) / n_batches)
  t = common.stats(times)
  return {"examples_per_s": common.rate(t, batch), "batch_ms": 1e3 * t["median_s"],
          "first_batch_s": first, "timing_per_batch": t}


def train_rate(s, batch):
  from bench.train_throughput import measure
  return measure(s, batch, "keras", False, 1)["samples_per_s"]


def main(argv):
  del argv
  s = common.shapes()
  batch = s["batch_size"]
  results, notes = {}, []
  if DETERMINISTIC.value:
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    notes.append("--deterministic: op determinism on, train_dataset(deterministic=True), "
                 "as cimha_tf.train with train.deterministic (its default)")
  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    data_dir, meta = make_prepared(tmp, s)
    info = meta["splits"]["train"]
    results["dataset"] = {"train_videos": info["videos"], "train_queries": info["queries"],
                          "feature_dim": meta["feature_dim"], "prepare_s": time.perf_counter() - t0}
    n_batches = max(2, info["queries"] // batch)
    from cimha_tf.experiment.config import BUCKET_WIDTH
    for name, cache_bytes in (("cached", 1 << 40), ("uncached", 0)):
      results[f"pipeline_{name}"] = pipeline_rate(data_dir, batch, cache_bytes, n_batches)
      results[f"pipeline_{name}_buckets{BUCKET_WIDTH}"] = pipeline_rate(
          data_dir, batch, cache_bytes, n_batches, BUCKET_WIDTH)
  train = train_rate(s, batch)
  results["train_step"] = {"samples_per_s": train}
  for k in [k for k in results if k.startswith("pipeline_")]:
    results[k]["ratio_to_training"] = (results[k]["examples_per_s"]["median"]
                                       / train["median"])
  notes.append("ratio = pipeline examples/s / training samples/s (the model's default "
               "step); must stay well above 1. Both measured alone, one after the other; "
               "in training they share the 2 cores, so the margin is what keeps the step fed")
  common.report("input_pipeline", results, notes, extra={"shapes": s})


if __name__ == "__main__":
  app.run(main)

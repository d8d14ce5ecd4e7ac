"""The ceiling on any faster LSTM: the model against itself with every LSTM direction a Dense.

Issue 7's ratio targets rest on the recurrences (docs/benchmarks.md, the profiles). This
figure bounds what any LSTM implementation could give: the model with each of its six
LSTM directions replaced by a Dense of the same width (bench.models.build(lstm="dense"):
the same everything else, each step's output computed from its own input only, no
recurrence at all) is what a zero-cost recurrence would leave, short of the Dense's own
small cost. Timed as in bench/dropout.py: both models built and warmed, then in turn
round by round, who goes first alternating; the training step (Keras fit, batch B) and
batch-B inference (tf.function); per-round paired ratios.

  python -m bench.lstm_ceiling [--quick] [--output=bench/results/lstm_ceiling.json]
"""

from absl import app

from bench import common
from bench import models
from bench import train_throughput

SYSTEMS = ("dense", "keras")
_INFERENCE_CALLS = 3  # timed inference calls per system and round


def measure(s):
  import tensorflow as tf
  from cimha_tf.model import compile_model
  b = s["batch_size"]
  x, y = common.synthetic_batch(b, s["max_video_len"], s["max_query_len"], s["feature_dim"],
                                s["vocab_size"])
  ds = tf.data.Dataset.from_tensors((x, y)).repeat()
  xt = {k: tf.constant(v) for k, v in x.items()}
  runs, params = {}, {}
  for system in SYSTEMS:
    model, cfg = models.build(s, lstm=system)
    compile_model(model, cfg, 1e-4)
    model.fit(ds, steps_per_epoch=common.train_warmup(), epochs=1, verbose=0, shuffle=False)
    infer = tf.function(lambda x, model=model: model(x, training=False)["start_probs"])
    for _ in range(common.warmup() + 1):
      infer(xt).numpy()
    runs[system] = (model, infer)
    params[system] = int(model.count_params())
  times = {system: {"train": [], "inference": []} for system in SYSTEMS}
  for r in range(common.reps()):
    for system in SYSTEMS[::1 if r % 2 == 0 else -1]:
      model, infer = runs[system]
      times[system]["train"].append(train_throughput.time_steps(model, ds))
      times[system]["inference"].append(common.round_robin(
          {"call": lambda infer=infer: infer(xt).numpy()}, 0, _INFERENCE_CALLS)["call"])
  out = {system: {task: common.rate(common.stats(sum(rounds, [])), b)
                  for task, rounds in times[system].items()} for system in SYSTEMS}
  out["dense_over_keras_by_round"] = common.paired_ratios(times, "dense", "keras")
  out["parameters"] = params
  return out


def main(argv):
  del argv
  s = common.shapes()
  results = measure(s)
  for task in ("train", "inference"):
    r = results["dense_over_keras_by_round"][task]
    print(f"{task}: LSTMs {results['keras'][task]['median']:.1f}, Dense in their place "
          f"{results['dense'][task]['median']:.1f} samples/s; per round "
          f"{r['median']:.2f}x ({r['low']:.2f}-{r['high']:.2f})")
  common.report("lstm_ceiling", results,
                [f"batch {s['batch_size']}; 'dense': every LSTM direction a Dense of its "
                 "width (not the model: the ceiling any LSTM speed-up can reach); training "
                 "step (fit) and tf.function inference in turn, order alternating by round; "
                 "ratio > 1: the Dense form faster"], extra={"shapes": s})


if __name__ == "__main__":
  app.run(main)

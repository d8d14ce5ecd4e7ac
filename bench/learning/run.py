"""Runs the learning-quality suite: every set, its oracle, the fixed prior, the linear
probe, the VSLNet-style reference and CI-MHA variants, over seeds; writes a JSON report,
markdown tables and learning-curve figures.

  python -m bench.learning.run [--quick] [--sets=compositional,weak_signals,...] [--seeds=3] \
      [--variants=cimha,mha,cimha_wo_ms,pool_tile,no_skip,no_product] [--models=probe,reference] \
      [--config=demo] [--config.train.epochs=30 ...] --output=JSON \
      [--workdir=DIR] [--figures=DIR]

Each set is written once (data seed 0) into WORKDIR/NAME/raw and prepared through
cimha_tf.data.prepare into WORKDIR/NAME/prepared; CI-MHA trains with cimha_tf's trainer on
the config (validation on the set's test split, as issue 22 measures), at the set's
max_video_len where it needs more steps than the config, with the set's GloVe width when
it ships one. Seeds are training seeds (0..N-1). Every run leaves WORKDIR/NAME/MODEL/sS
with history.csv (losses and val metrics per epoch) and result.json; a rerun on the same
WORKDIR skips finished runs. Metrics are the project's (R1@0.5, R1@0.7, mIoU, percent) of
the model after its last epoch on the test split; "best" is the best epoch's R1@0.5
(selected on test, so only a curve's summary). --quick: tiny sets, 1 epoch, a
narrow reference (what the tests run).
"""

import csv
import dataclasses
import functools
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags
import numpy as np

from cimha_tf.common import cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KINDS = ("compositional", "weak_signals", "no_glove", "many_actions", "long_videos",
         "short_moments", "activitynet")
# CI-MHA rows: name -> config overrides (issue 22 item 3: the paper's ablations and eqs 7/9).
VARIANTS = {
    "cimha": {},
    "mha": {"model.variant": "mha"},
    "cimha_wo_ms": {"model.variant": "cimha_wo_ms"},
    "pool_tile": {"model.cross_fusion": "pool_tile"},
    "no_skip": {"model.cross_skip": False},
    # The paper's eq 9 alone, the rest of the config's recipe kept (model/config.py).
    "no_product": {"model.sentence_product": False},
}
MODELS = ("probe", "reference")
METRICS = ("R1@0.5", "R1@0.7", "mIoU")
COMPOSITIONAL_SIZES = {False: (600, 200), True: (16, 6)}  # issue 22's set; --quick
# (name, note, compositional.generate noise keywords). "compositional" is issue 22's
# held-out kind (i.i.d. noise, oracle ~84 as its 83.5); "compositional_smooth" adds what
# clip features have and it lacks: AR(1) noise in time and a per-video offset.
COMPOSITIONAL_SETS = (
    ("compositional", "verb + object, shared words, no GloVe, i.i.d. noise (issue 22's kind)",
     {"noise": 0.52, "ar": 0.0, "offset_std": 0.0}),
    ("compositional_smooth", "compositional with AR(1) noise and a per-video offset",
     {"noise": 0.42}),
)

FLAGS = flags.FLAGS
_CONFIG = None


def _define_flags():
  """The binary's flags, defined when it runs (not on import: the tests import this module
  beside bench.common, whose --quick would clash)."""
  global _CONFIG
  from cimha_tf import configs
  _CONFIG = cli.define_config_file("config", "CI-MHA's experiment config (a shipped name or "
                                  "a file).", shipped=configs, default="demo",
                                  lock_config=False)
  flags.DEFINE_bool("quick", False, "Tiny sets, one epoch, a narrow reference (CI).")
  flags.DEFINE_list("sets", list(KINDS), f"Set kinds, of {', '.join(KINDS)}, or single sets "
                    "(weak_signals_snr2).")
  flags.DEFINE_integer("seeds", 3, "Training seeds per model (0..N-1).", lower_bound=1)
  flags.DEFINE_list("variants", ["cimha"], f"CI-MHA rows, of {', '.join(VARIANTS)}.")
  flags.DEFINE_list("models", list(MODELS), f"Other learned rows, of {', '.join(MODELS)}.")
  flags.DEFINE_string("output", None, "The JSON report.")
  flags.DEFINE_bool("report_only", False, "Train nothing: the report of the runs WORKDIR holds.")
  flags.DEFINE_string("workdir", None, "Sets and runs (default: next to --output).")
  flags.DEFINE_string("figures", None, "Learning-curve PNGs (default: WORKDIR/figures).")
  flags.mark_flags_as_required(["output"])


class LearningSet:
  """One set of the suite: how to write it, its test split and prepare limit, its oracle."""

  def __init__(self, name, note, test_split="test", max_video_len=0, spec=None, noise=None):
    self.name, self.note, self.test_split = name, note, test_split
    self.max_video_len, self.spec = max_video_len, spec
    self.noise = noise  # compositional sets: compositional.generate's noise keywords

  def write(self, raw_dir, quick, sizes=None):
    """sizes: (train, test) videos instead of the set's own (its quick ones with quick)."""
    from bench.learning import planted
    if self.spec is not None:
      spec = self.spec.sized(quick)
      if sizes:
        spec = dataclasses.replace(spec, train_videos=sizes[0], test_videos=sizes[1])
      return planted.write(spec, raw_dir, seed=0)
    from bench.learning import compositional
    train, test = sizes or COMPOSITIONAL_SIZES[quick]
    paths = compositional.generate(raw_dir, seed=0, num_train=train, num_test=test,
                                   **(self.noise or {}))
    return dict(paths, dataset="charades_sta", glove=None, test_split="test")

  def oracle(self, raw_dir, prepared_dir):
    from bench.learning import planted
    if self.spec is not None:
      return planted.score(planted.oracle_rows(raw_dir, prepared_dir, self.test_split),
                           prepared_dir, self.test_split)
    from bench.learning import compositional
    return compositional.oracle_metrics(raw_dir, self.test_split)


def learning_sets(names):
  """[LearningSet] for the kinds (all their sets) or single sets (e.g. weak_signals_snr2)
  named; ValueError naming an unknown one."""
  import importlib
  every = [LearningSet(name, note, noise=noise) for name, note, noise in COMPOSITIONAL_SETS]
  kind_of = {name: "compositional" for name, _, _ in COMPOSITIONAL_SETS}
  for kind in KINDS[1:]:
    for spec in importlib.import_module(f"bench.learning.{kind}").SPECS:
      every.append(LearningSet(spec.name, spec.note, spec.test_split, spec.max_video_len, spec))
      kind_of[spec.name] = kind
  out = []
  for name in names:
    if name not in KINDS and name not in kind_of:
      raise ValueError(f"--sets: unknown set kind {name!r}; expected some of {', '.join(KINDS)} "
                       f"or a single set of {', '.join(kind_of)}")
    out += [s for s in every if name in (s.name, kind_of[s.name]) and s not in out]
  return out


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def _write_json(path, obj):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump(obj, f, indent=1)
  os.replace(path + ".tmp", path)


def prepare_set(lset, set_dir, max_video_len, max_query_len, quick, sizes=None):
  """Writes and prepares the set unless SET_DIR holds it already (same settings)."""
  from bench.learning import planted
  raw, prepared = os.path.join(set_dir, "raw"), os.path.join(set_dir, "prepared")
  stamp_path = os.path.join(set_dir, "set.json")
  stamp = {"quick": quick, "max_video_len": max_video_len, "max_query_len": max_query_len,
           "sizes": list(sizes) if sizes else None}
  if os.path.exists(stamp_path):
    old = _read_json(stamp_path)
    if dict({"sizes": None}, **old["settings"]) != stamp:  # its runs would be reused for other data
      raise ValueError(f"{stamp_path}: set {lset.name!r} was made with {old['settings']}, not "
                       f"{stamp} (e.g. --quick vs full): use another --workdir")
    return old
  # No stamp: new, or a run killed while writing it (rewritten; its runs never started).
  paths = lset.write(raw, quick, sizes)
  meta = planted.prepare(paths, prepared, max_video_len, max_query_len)
  info = {"settings": stamp, "paths": paths, "prepared": prepared,
          "embedding_dim": int(np.load(os.path.join(prepared, meta["embeddings"]), mmap_mode="r").shape[1])
          if meta["embeddings"] else 0,
          "train_queries": meta["splits"]["train"]["queries"],
          "test_queries": meta["splits"][lset.test_split]["queries"],
          "oracle": lset.oracle(raw, prepared)}
  _write_json(stamp_path, info)
  return info


def fixed_prior(prepared, test_split):
  from cimha_tf.evaluation import runner, scorer
  from cimha_tf.evaluation import baselines
  window = baselines.fit_fixed_prior(runner.read_ground_truth(prepared, "train"))
  test = runner.read_ground_truth(prepared, test_split)
  return scorer.score_predictions(baselines.predict_fixed_prior(window, test), test)


def read_history(path):
  """history.csv -> {column: [float per epoch]}."""
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  return {k: [float(r[k]) for r in rows] for k in (rows[0] if rows else {})}


def _summary(history, epochs):
  curve = history["val_R1@0.5"]
  best = int(np.argmax(curve))
  return {"metrics": {m: history[f"val_{m}"][-1] for m in METRICS},
          "best_R1@0.5": curve[best], "best_epoch": best + 1, "epochs": epochs}


def cimha_config(base, lset, info, variant, seed):
  """The experiment config of one CI-MHA run on a prepared set."""
  c = base.copy_and_resolve_references()
  c.seed = seed
  c.data.dir = info["prepared"]
  c.data.train_split, c.data.val_split, c.data.test_split = "train", lset.test_split, lset.test_split
  c.model.max_video_len = max(int(c.model.max_video_len), info["settings"]["max_video_len"])
  if info["embedding_dim"]:
    c.model.embedding_dim = info["embedding_dim"]
  for key, value in VARIANTS[variant].items():
    section, field = key.split(".")
    c[section][field] = value
  return c


def run_cimha(config, run_dir):
  from cimha_tf.training import trainer
  trainer.train(config, run_dir, verbose=2)
  return read_history(os.path.join(run_dir, trainer.HISTORY))


def _fit_with_curves(model, info, lset, batch_size, epochs, seed, run_dir, evaluate):
  """Keras fit on the prepared train split (the project's pipeline, length buckets), with
  `evaluate(model) -> metrics` on the test split after every epoch into history.csv."""
  import keras
  from cimha_tf.data import pipeline
  prepared = info["prepared"]

  class EvalEachEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
      logs.update({f"val_{k}": v for k, v in evaluate(self.model).items() if isinstance(v, float)})

  data = pipeline.train_dataset(prepared, "train", batch_size=batch_size, shuffle=True, seed=seed,
                                deterministic=True, repeat=True, bucket_width=8)
  steps = pipeline.batches_per_pass(prepared, "train", batch_size, 8)
  os.makedirs(run_dir, exist_ok=True)
  history = os.path.join(run_dir, "history.csv")
  if os.path.exists(history):
    os.remove(history)
  model.fit(data, epochs=epochs, steps_per_epoch=steps, verbose=2,
            callbacks=[EvalEachEpoch(), keras.callbacks.CSVLogger(history)])
  return read_history(history)


def run_probe(config, info, lset, seed, run_dir):
  import keras
  from bench.learning import probe
  keras.utils.set_random_seed(seed)
  meta = _read_json(os.path.join(info["prepared"], "metadata.json"))
  model = probe.compile_probe(probe.build(meta["feature_dim"], meta["vocab_size"]),
                              config.train.learning_rate)
  return _fit_with_curves(model, info, lset, config.train.batch_size, config.train.epochs, seed,
                          run_dir, lambda m: probe.evaluate(m, info["prepared"], lset.test_split))


def run_reference(config, info, lset, seed, run_dir, quick):
  import keras
  from bench.learning import reference
  from cimha_tf.evaluation import runner
  from cimha_tf.experiment import checks
  from cimha_tf.data import pipeline
  keras.utils.set_random_seed(seed)
  prepared = info["prepared"]
  meta = _read_json(os.path.join(prepared, "metadata.json"))
  model = reference.build(meta["feature_dim"], meta["vocab_size"], dim=32 if quick else 128,
                          num_heads=4 if quick else 8,
                          max_len=max(meta["max_video_len"], meta["max_query_len"]),
                          embeddings=checks.load_embeddings(prepared, meta))
  epochs = config.train.epochs
  steps = pipeline.batches_per_pass(prepared, "train", reference.BATCH_SIZE, 8)
  reference.compile_reference(model, steps * epochs)
  return _fit_with_curves(
      model, info, lset, reference.BATCH_SIZE, epochs, seed, run_dir,
      lambda m: runner.evaluate_split(m, prepared, lset.test_split, 64, 5, progress=False)[0])


def one_run(name, run_dir, train):
  """Runs train() -> history unless RUN_DIR/result.json exists; -> the run's summary."""
  done = os.path.join(run_dir, "result.json")
  if os.path.exists(done):
    return _read_json(done)
  t0 = time.time()
  history = train()
  result = dict(_summary(history, len(history["val_R1@0.5"])), seconds=round(time.time() - t0, 1),
                history=os.path.join(run_dir, "history.csv"))
  _write_json(done, result)
  print(f"{name}: R1@0.5 {result['metrics']['R1@0.5']:.2f} (best {result['best_R1@0.5']:.2f} at "
        f"epoch {result['best_epoch']}), {result['seconds']:.0f} s", flush=True)
  return result


def aggregate(runs, oracle):
  """Mean, std (over seeds, ddof 0) and fraction of the oracle's R1@0.5."""
  out = {"runs": runs}
  for stat, fn in (("mean", np.mean), ("std", np.std)):
    out[stat] = {m: float(fn([r["metrics"][m] for r in runs])) for m in METRICS}
    out[stat]["best_R1@0.5"] = float(fn([r["best_R1@0.5"] for r in runs]))
  out["fraction_of_oracle"] = (out["mean"]["R1@0.5"] / oracle["R1@0.5"] if oracle["R1@0.5"] else None)
  out["epochs"] = runs[0]["epochs"]
  return out


def run_suite(config, sets, seeds, variants, models, workdir, quick=False, sizes=None,
              report_only=False):
  """The report dict: {"sets": {name: {...}}, "settings": {...}}. sizes: optional
  {set name: (train videos, test videos)} instead of the sets' own. report_only: train
  nothing; rows average the finished runs (each row's "runs" says which seeds), and rows
  without one are left out."""
  if quick:
    config = config.copy_and_resolve_references()
    config.train.epochs = 1
  report = {"settings": {"quick": quick, "seeds": seeds, "variants": variants, "models": models,
                         "config": json.loads(config.to_json())}, "sets": {}}
  for lset in sets:
    set_dir = os.path.join(workdir, lset.name)
    max_len = max(int(config.model.max_video_len), lset.max_video_len)
    print(f"== {lset.name}: writing and preparing", flush=True)
    if report_only and not os.path.exists(os.path.join(set_dir, "set.json")):
      continue
    info = prepare_set(lset, set_dir, max_len, int(config.model.max_query_len), quick,
                       (sizes or {}).get(lset.name))
    entry = {"note": lset.note, "train_queries": info["train_queries"],
             "test_queries": info["test_queries"], "max_video_len": max_len,
             "oracle": {m: info["oracle"][m] for m in METRICS},
             "fixed_prior": {m: v for m, v in fixed_prior(info["prepared"], lset.test_split).items()
                             if m in METRICS},
             "models": {}}
    rows = [(m, m) for m in models] + [(v, f"cimha:{v}") for v in variants]
    for row, label in rows:
      runs = []
      for seed in range(seeds):
        run_dir = os.path.join(set_dir, row, f"s{seed}")
        if row == "probe":
          train = functools.partial(run_probe, config, info, lset, seed, run_dir)
        elif row == "reference":
          train = functools.partial(run_reference, config, info, lset, seed, run_dir, quick)
        else:
          train = functools.partial(run_cimha, cimha_config(config, lset, info, row, seed), run_dir)
        if report_only and not os.path.exists(os.path.join(run_dir, "result.json")):
          continue
        runs.append(dict(one_run(f"{lset.name} {label} seed {seed}", run_dir, train), seed=seed))
      if runs:
        entry["models"][label] = aggregate(runs, info["oracle"])
    report["sets"][lset.name] = entry
  return report


def _cell(entry, label, metric, seeds):
  m = entry["models"].get(label)
  if m is None:
    return "-"
  frac = f" ({m['mean'][metric] / entry['oracle'][metric]:.0%})" if entry["oracle"][metric] else ""
  n = f" [{len(m['runs'])} seed{'s' if len(m['runs']) > 1 else ''}]" if len(m["runs"]) != seeds else ""
  return f"{m['mean'][metric]:.1f} ± {m['std'][metric]:.1f}{frac}{n}"


def markdown_table(report, metric="R1@0.5"):
  """One row per set: oracle, fixed prior, then each model's mean ± std over seeds (fraction
  of the oracle; [k seeds] where fewer runs finished), test split, after the last epoch."""
  seeds = report["settings"]["seeds"]
  labels = list(dict.fromkeys(label for e in report["sets"].values() for label in e["models"]))
  head = ["set", "queries (train/test)", "epochs", "oracle", "fixed prior"] + labels
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for name, e in report["sets"].items():
    epochs = sorted({m["epochs"] for m in e["models"].values()})
    lines.append("| " + " | ".join(
        [name, f"{e['train_queries']}/{e['test_queries']}", "/".join(map(str, epochs)),
         f"{e['oracle'][metric]:.1f}", f"{e['fixed_prior'][metric]:.1f}"]
        + [_cell(e, label, metric, seeds) for label in labels]) + " |")
  return "\n".join(lines)


def plot_curves(report, out_dir):
  """One PNG per set: validation (test split) R1@0.5 per epoch, mean over seeds, per model,
  with the oracle as a line; and the training loss per epoch. -> paths."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for name, e in report["sets"].items():
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=80)
    for label, m in e["models"].items():
      hists = [read_history(r["history"]) for r in m["runs"]]
      epochs = np.arange(1, len(hists[0]["val_R1@0.5"]) + 1)
      ax1.plot(epochs, np.mean([h["val_R1@0.5"] for h in hists], axis=0), marker=".", label=label)
      ax2.plot(epochs, np.mean([h["loss"] for h in hists], axis=0), marker=".", label=label)
    ax1.axhline(e["oracle"]["R1@0.5"], color="k", ls="--", lw=1, label="oracle")
    ax1.axhline(e["fixed_prior"]["R1@0.5"], color="gray", ls=":", lw=1, label="fixed prior")
    ax1.set(xlabel="epoch", ylabel="test R1@0.5", title=name, ylim=(0, 100))
    ax2.set(xlabel="epoch", ylabel="training loss (each model's own)", yscale="log")
    ax1.legend(fontsize=6)
    fig.tight_layout()
    path = os.path.join(out_dir, f"learning_{name}.png")
    fig.savefig(path)
    plt.close(fig)
    paths.append(path)
  return paths


def main(argv):
  for v in FLAGS.variants:
    if v not in VARIANTS:
      raise cli.usage_error(f"--variants: unknown {v!r}; expected some of {', '.join(VARIANTS)}")
  for m in FLAGS.models:
    if m not in MODELS:
      raise cli.usage_error(f"--models: unknown {m!r}; expected some of {', '.join(MODELS)}")
  try:
    sets = learning_sets(FLAGS.sets)
  except ValueError as e:
    raise cli.usage_error(str(e)) from None
  workdir = FLAGS.workdir or os.path.splitext(FLAGS.output)[0] + "_runs"
  with cli.clear_errors():
    report = run_suite(_CONFIG.value, sets, FLAGS.seeds, FLAGS.variants, FLAGS.models, workdir,
                       quick=FLAGS.quick, report_only=FLAGS.report_only)
  report["tables"] = {m: markdown_table(report, m) for m in METRICS}
  report["figures"] = plot_curves(report, FLAGS.figures or os.path.join(workdir, "figures"))
  _write_json(os.path.abspath(FLAGS.output), report)
  for m in METRICS:
    print(f"\n{m}, test split, mean ± std over {FLAGS.seeds} seed(s) (fraction of the oracle):")
    print(report["tables"][m])
  print(f"wrote {FLAGS.output}")


EXAMPLE = "{prog} --quick --sets=compositional --seeds=1 --output=/tmp/learning.json"

if __name__ == "__main__":
  _define_flags()
  cli.run(main, EXAMPLE)

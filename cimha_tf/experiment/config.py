"""The experiment config every cimha_tf/configs/*.py file builds (docs/design.md, "Experiment config").

Dimensions (feature_dim, vocab_size) are deliberately absent: training reads them from the
prepared folder's metadata.json, so they can never disagree with the data.
"""

import ml_collections

BUCKET_WIDTH = 8
# train.lr_schedule: the learning rate's shape over the run (training/optimizer.py).
SCHEDULES = ("constant", "linear", "cosine")
# config.train's optimizer keys (training/optimizer.py) and their defaults, the paper's
# constant Adam. A config written before a key existed means its default.
OPTIMIZER_DEFAULTS = dict(
    # "constant", or "linear" / "cosine" decay to final_lr_fraction x learning_rate at the
    # last step, after a linear warm-up over warmup_fraction of the steps.
    lr_schedule="constant",
    warmup_fraction=0.0,
    final_lr_fraction=0.0,
    clip_norm=0.0,        # global gradient-norm clipping; 0: off
    weight_decay=0.0,     # > 0: AdamW's decoupled weight decay
)


def optimizer_setting(train_config, key):
  """config.train[key], or its OPTIMIZER_DEFAULTS value in a config written without it."""
  return train_config.get(key, OPTIMIZER_DEFAULTS[key])


def experiment_config(*, data_dir, train_split, val_split, test_split, epochs,
                      batch_size=100, learning_rate=1e-4, seed=0, top_k=5, model=None):
  """A ConfigDict with every key the binaries read; `model` defaults to the model's defaults."""
  if model is None:
    from cimha_tf.model import default_config
    model = default_config()
  c = ml_collections.ConfigDict()
  c.seed = seed
  c.data = ml_collections.ConfigDict(dict(
      dir=data_dir, train_split=train_split, val_split=val_split, test_split=test_split,
      # Training batches from length bands this many steps wide, time axis cut to the
      # longest video (pipeline.py); same losses per query, less padding. 0: off.
      bucket_width=BUCKET_WIDTH))
  c.model = model
  c.train = ml_collections.ConfigDict(dict(
      epochs=epochs,
      batch_size=batch_size,            # global batch, split across replicas
      learning_rate=learning_rate,
      **OPTIMIZER_DEFAULTS,             # the schedule, clipping, weight decay (above)
      steps_per_epoch=0,                # 0: one pass over the training split
      steps_per_execution=1,
      jit_compile=False,                # XLA on CPU: slower here, to compile and to run (docs/benchmarks.md)
      deterministic=True,               # op determinism + deterministic input order
  ))
  c.eval = ml_collections.ConfigDict(dict(
      batch_size=batch_size, top_k=top_k,
      # Decoding: windows at most this fraction of their video's valid steps (rounded up);
      # 1.0 = every (start, end) pair, the paper's decoding (docs/paper.md, "Decoding").
      max_span_fraction=1.0,
      # True: training sets max_span_fraction to the longest training moment's fraction of
      # its video (runner.resolve_max_span) and saves it in WORKDIR/config.json.
      max_span_from_train=False))
  return c


def require(config, ok, key, expected):
  """ValueError naming config.KEY (dotted), its value and what was expected, unless ok."""
  if not ok:
    raise ValueError(f"config.{key}={_get(config, key)!r}: expected {expected}")


def validate(config):
  """Clear errors for values no run can use (before any data is read)."""
  def need(ok, key, expected):
    require(config, ok, key, expected)
  need(bool(config.data.dir), "data.dir", "a prepared folder (python -m cimha_tf.prepare_data)")
  for key in ("train_split", "val_split", "test_split"):
    need(bool(config.data[key]), f"data.{key}", "a split name of the prepared folder")
  need(config.data.get("bucket_width", 0) >= 0, "data.bucket_width", ">= 0 (0 = no length buckets)")
  need(config.train.epochs >= 1, "train.epochs", ">= 1")
  need(config.train.batch_size >= 1, "train.batch_size", ">= 1")
  need(config.train.learning_rate > 0, "train.learning_rate", "> 0")
  def opt(key):
    return optimizer_setting(config.train, key)
  need(opt("lr_schedule") in SCHEDULES, "train.lr_schedule", f"one of {SCHEDULES}")
  need(0.0 <= opt("warmup_fraction") < 1.0, "train.warmup_fraction", "in [0, 1)")
  need(0.0 <= opt("final_lr_fraction") <= 1.0, "train.final_lr_fraction", "in [0, 1]")
  need(opt("clip_norm") >= 0.0, "train.clip_norm", ">= 0 (0 = no clipping)")
  need(opt("weight_decay") >= 0.0, "train.weight_decay", ">= 0 (0 = Adam)")
  need(config.train.steps_per_epoch >= 0, "train.steps_per_epoch", ">= 0 (0 = whole split)")
  need(config.train.steps_per_execution >= 1, "train.steps_per_execution", ">= 1")
  need(config.eval.batch_size >= 1, "eval.batch_size", ">= 1")
  need(config.eval.top_k >= 1, "eval.top_k", ">= 1")
  need(0.0 < config.eval.get("max_span_fraction", 1.0) <= 1.0, "eval.max_span_fraction",
       "in (0, 1] (1 = every pair)")
  _check_jit_compile(config, need)
  # The model section too: a misspelt variant used to surface only at build time, after
  # the data was read and the workdir created.
  from cimha_tf.model import config as model_config
  model_config.check_config(config.model)
  return config


def _check_jit_compile(config, need):
  """train.jit_compile=True only where XLA really compiles the step. Each refusal was
  measured: Keras silently drops jit_compile under op determinism (one UserWarning, then
  the same losses as without XLA), and Keras's TensorFlow scan, a while loop without
  maximum_iterations, has a gradient XLA cannot compile ("tf2xla conversion failed" at the
  first step). The unrolled form runs as that scan when the time axis is unknown, as in
  length-bucketed batches."""
  if not config.train.jit_compile:
    return
  need(not config.train.deterministic, "train.jit_compile",
       "False with train.deterministic=True (Keras turns XLA off under op determinism and "
       "trains without it); set --config.train.deterministic=False to compile")
  lstm = config.model.lstm_implementation
  need(lstm != "scan", "train.jit_compile",
       "False with model.lstm_implementation='scan' (XLA cannot compile the scan loop's "
       "gradient); 'keras' compiles")
  need(not (lstm == "unrolled" and config.data.get("bucket_width", 0) > 0), "train.jit_compile",
       "False with model.lstm_implementation='unrolled' and data.bucket_width > 0 (bucketed "
       "batches have no fixed time axis, where the unrolled LSTM runs as a scan loop XLA "
       "cannot compile); set --config.data.bucket_width=0")


def _get(config, dotted):
  for part in dotted.split("."):
    config = config[part]
  return config

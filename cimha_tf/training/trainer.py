"""Training glue behind `python -m cimha_tf.train`: checks, strategy, model, callbacks, fit.

Every strategy trains with Keras `model.fit` and the same callbacks. The model builds from
the dataset's element_spec rather than a batch read ahead of training (spec_build.py: that
read decided the training order by thread timing); under MultiWorkerMirroredStrategy it
also gets the Keras fix of multiworker.py.

Resume: WORKDIR/backup (backup.py) keeps the weights, optimizer state, dropout RNG states
and epoch count after every epoch, verified before resuming, so starting again on the same
workdir continues where the last finished epoch left off (after a crash or a kill mid-epoch
the unfinished epoch is redone, replaying its data order and randomness: a deterministic
run ends with the weights of an unbroken one) and runs the same total number of epochs; a
finished run started again trains nothing (both say so), and a larger --config.train.epochs
extends it. A damaged or inconsistent backup stops the run before any step with the file
named and the way out.
Writes and locks: the run holds WORKDIR's lock (cimha_tf.data.lock: a second trainer on it
is refused, naming this one), and every file is replaced atomically (cimha_tf.data.atomic),
so evaluate or export reading WORKDIR meanwhile never sees a half-written checkpoint.
"""

import json
import os

import keras
import tensorflow as tf

from cimha_tf.common import atomic
from cimha_tf.common import lock
from cimha_tf.data.text import Vocabulary
from cimha_tf.experiment import checks
from cimha_tf.experiment import config as config_lib
from cimha_tf.experiment import workdir as wd
from cimha_tf.training import backup as backup_lib
from cimha_tf.training import callbacks as callbacks_lib
from cimha_tf.training import multiworker
from cimha_tf.training import spec_build
from cimha_tf.training import strategy as strategy_lib

BEST_STATE = "best_state.json"
HISTORY = "history.csv"


def seed_everything(seed, deterministic=True):
  """Python, numpy, TF and Keras seeds; deterministic kernels for reproducible runs."""
  keras.utils.set_random_seed(int(seed))
  if deterministic:
    tf.config.experimental.enable_op_determinism()


def write_workdir_files(out, config, meta):
  """The resolved config, the vocabulary and the data metadata: the workdir is self-contained."""
  atomic.write_json(wd.path(out, wd.CONFIG), json.loads(config.to_json()))
  atomic.write_json(wd.path(out, wd.DATA_META), meta)
  # Loaded, not copied: a damaged vocab.json is refused here, naming it, not carried along.
  vocab = Vocabulary.load(os.path.join(config.data.dir, "vocab.json"))
  atomic.write_json(wd.path(out, wd.VOCAB), {"tokens": vocab.tokens})


def tensorboard_callbacks(log_dir):
  """TensorBoard logging when the tensorboard package is installed (tf.summary needs it)."""
  try:
    import tensorboard  # noqa: F401
  except ImportError:
    print("warning: the tensorboard package is not installed: no logs in "
          f"{log_dir} (pip install tensorboard)")
    return []
  return [keras.callbacks.TensorBoard(log_dir, update_freq="epoch")]


def steps_per_epoch(config):
  if config.train.steps_per_epoch:
    return int(config.train.steps_per_epoch)
  from cimha_tf.data import pipeline
  return max(1, pipeline.batches_per_pass(config.data.dir, config.data.train_split,
                                          config.train.batch_size,
                                          int(config.data.get("bucket_width", 0))))


def check_batch_split(batch_size, replicas):
  """The global batch must split evenly over the replicas. Keras averages the loss over each
  replica's own rows and then over the replicas, which is the mean over the global batch
  only when every replica holds as many rows: 5 rows on 2 replicas weigh 3 rows against 2
  (the logged loss stays right, the gradient does not). A pass's last, partial batch still
  splits unevenly: the pipeline keeps every query rather than drop them."""
  if batch_size % replicas:
    raise ValueError(
        f"config.train.batch_size={batch_size}: expected a multiple of the {replicas} "
        f"replicas in sync (the global batch is split evenly over them), e.g. "
        f"{max(replicas, batch_size // replicas * replicas)}")


def check_same_resume_epoch(strategy, done, backup):
  """Every worker must resume from the same epoch: each restores its own backup, and from
  different epochs the workers would train on different weights and run different numbers
  of epochs (measured: the chief finished and wrote WORKDIR from mixed weights; worker 1 then
  failed on a closed socket). Raised on every worker alike, so none is left waiting."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return
  # Every replica adds its worker's count: integers, exact in float32 (no division by the
  # local replicas, which would round for 3 of them).
  sums = strategy.run(lambda: tf.constant([done, done * done], tf.float32))
  total, squares = map(int, strategy.reduce(tf.distribute.ReduceOp.SUM, sums, axis=None).numpy())
  local, workers = len(strategy.extended.worker_devices), strategy_lib.num_workers()
  if workers * local * squares != total * total:  # zero variance iff every worker has `done`
    raise ValueError(
        f"{backup}: {done} finished epoch(s), but the workers' resume backups differ (mean "
        f"{total / (local * workers):g}): a worker was stopped between the workers' "
        "end-of-epoch backups, "
        "or its WORKDIR/worker_I was deleted. After an epoch every worker holds the same "
        "weights: copy the backup/ folder with the most epochs over the other workers' and "
        "start every worker again")


def build_and_compile(config, meta, strategy, steps=None):
  """The model, compiled with config.train's optimizer; `steps` per epoch sets its
  schedule's length (default: steps_per_epoch(config))."""
  from cimha_tf.model import build_model, compile_model
  from cimha_tf.training import optimizer as optimizer_lib
  embeddings = checks.load_embeddings(config.data.dir, meta, config.model.embedding_dim)
  steps = steps_per_epoch(config) if steps is None else steps
  with strategy.scope():
    model = build_model(config.model, video_dim=int(meta["feature_dim"]),
                        vocab_size=int(meta["vocab_size"]), embeddings=embeddings)
    compile_model(model, config.model, config.train.learning_rate,
                  optimizer=optimizer_lib.make_optimizer(config.train, steps),
                  steps_per_execution=config.train.steps_per_execution,
                  jit_compile=config.train.jit_compile)
  return multiworker.adapt(spec_build.adapt(model), strategy)


def train(config, workdir, *, strategy=None, extra_callbacks=(), verbose=1):
  """Trains `config` into `workdir`; returns (model, keras History).

  Every check runs before the first step. Non-chief workers of a multi-worker run write
  into WORKDIR/worker_I (strategy.worker_dir). Holds the workdir's lock meanwhile.
  """
  from cimha_tf.data import pipeline
  config_lib.validate(config)
  meta = pipeline.read_metadata(config.data.dir)
  splits = [config.data.train_split, config.data.val_split]
  checks.check_data(config, meta, splits)
  out = strategy_lib.worker_dir(workdir)
  with lock.hold(out, "training"):
    return _train_locked(config, meta, splits, out, strategy, extra_callbacks, verbose)


def _train_locked(config, meta, splits, out, strategy, extra_callbacks, verbose):
  from cimha_tf.data import pipeline
  os.makedirs(out, exist_ok=True)
  backup_dir = wd.path(out, wd.BACKUP)
  for folder in (out, backup_dir):  # what killed runs left half-written: never read
    atomic.remove_temporaries(folder)
  checks.check_workdir(out, config, meta)
  resume = backup_lib.read_state(backup_dir)
  done = resume["epoch"] if resume else 0

  seed_everything(config.seed, config.train.deterministic)
  strategy = strategy or strategy_lib.get_strategy()
  name = ("MultiWorkerMirroredStrategy" if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
          else type(strategy).__name__)
  print(f"strategy: {name} with {strategy.num_replicas_in_sync} replica(s); "
        f"global batch {config.train.batch_size}")
  check_batch_split(config.train.batch_size, strategy.num_replicas_in_sync)
  check_same_resume_epoch(strategy, done, backup_dir)
  with pipeline.naming_damaged_shards(config.data.dir, splits):
    steps = steps_per_epoch(config)
  # Started at the resumed epoch's first batch: the stream an unbroken run has there.
  dataset = pipeline.train_dataset(
      config.data.dir, config.data.train_split, batch_size=config.train.batch_size,
      shuffle=True, seed=config.seed, deterministic=config.train.deterministic, repeat=True,
      bucket_width=int(config.data.get("bucket_width", 0)), num_workers=strategy_lib.num_workers(),
      start_batch=done * steps)
  model = build_and_compile(config, meta, strategy, steps)
  from cimha_tf.evaluation import runner
  max_span = runner.resolve_max_span(config)  # into config.json: evaluate decodes the same
  write_workdir_files(out, config, meta)

  cbs = [
      callbacks_lib.StopOnNaN(),
      callbacks_lib.BestCheckpoint(
          config.data.dir, config.data.val_split, config.eval.batch_size, config.eval.top_k,
          best_path=wd.path(out, wd.BEST), state_path=wd.path(out, BEST_STATE),
          max_span_fraction=max_span),
      callbacks_lib.LastCheckpoint(wd.path(out, wd.LAST)),
      callbacks_lib.History(wd.path(out, HISTORY), initial_epoch=done),
      *tensorboard_callbacks(wd.path(out, wd.LOGS)),
      # Last, so an epoch counts as done only once its checkpoints are written.
      backup_lib.Backup(backup_dir, resume),
      *extra_callbacks,
  ]
  # shuffle=False: the pipeline shuffles (seeded); Keras would only warn that it ignores it.
  with pipeline.naming_damaged_shards(config.data.dir, splits):
    # The counts to check against prepare_data's accounting before a long run.
    train_q, val_q = (meta["splits"][s]["queries"] for s in splits)
    print(f"data: {config.data.dir}: {splits[0]!r} {train_q} queries, {steps} steps per epoch; "
          f"validation on {splits[1]!r} {val_q} queries")
    total = int(config.train.epochs)
    # Keras resumes (or skips) without a word: a rerun on an old workdir would look trained.
    if done >= total:
      print(f"{out}: all {total} epochs were trained already; nothing to train (a larger "
            "--config.train.epochs extends the run, a new --workdir starts another)")
    elif done:
      print(f"{out}: resuming after epoch {done} of {total}")
    history = model.fit(dataset, epochs=total, initial_epoch=min(done, total), shuffle=False,
                        steps_per_epoch=steps, callbacks=cbs, verbose=verbose)
  return model, history

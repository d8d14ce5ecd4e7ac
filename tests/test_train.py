"""The train binary end to end on a tiny planted dataset: workdir contents, checkpoints,
TensorBoard, reproducibility, and the clear errors before any training step."""

import csv
import glob
import json
import math
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

from cimha_tf.data import pipeline
from cimha_tf.training import callbacks as callbacks_lib
from cimha_tf.training import strategy as strategy_lib
from tests import helpers
from cimha_tf.training import trainer
from cimha_tf.experiment import workdir as wd


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return helpers.trained_tiny_workdirs(str(tmp_path_factory.getbasetemp() / "tiny_train"))


def history(workdir):
  with open(os.path.join(workdir, trainer.HISTORY)) as f:
    return list(csv.DictReader(f))


def test_workdir_holds_config_vocab_meta_and_checkpoints(run):
  w, prepared = run["workdir"], run["prepared"]
  saved = json.load(open(wd.path(w, wd.CONFIG)))
  expected = json.loads(helpers.tiny_config(prepared, epochs=2, **helpers.TINY_RUN_TRAIN).to_json())
  assert saved == expected
  assert json.load(open(wd.path(w, wd.VOCAB))) == json.load(open(os.path.join(prepared, "vocab.json")))
  assert json.load(open(wd.path(w, wd.DATA_META))) == json.load(open(os.path.join(prepared, "metadata.json")))
  assert json.load(open(os.path.join(w, wd.BACKUP, wd.BACKUP_STATE)))["epoch"] == 2
  for which in ("best", "last"):
    model = wd.load_model(wd.checkpoint_path(w, which))
    assert model.input["video_features"].shape[-1] == 8


def test_last_checkpoint_gives_valid_probabilities(run):
  from cimha_tf.data import pipeline
  model = wd.load_model(wd.checkpoint_path(run["workdir"], "last"))
  inputs, meta = next(iter(pipeline.eval_dataset(run["prepared"], "test", 8)))
  out = model(inputs, training=False)
  mask = inputs["video_mask"].numpy()
  for key in ("start_probs", "end_probs"):
    p = out[key].numpy()
    np.testing.assert_allclose((p * mask).sum(1), 1.0, atol=1e-5)
    assert np.all(p[mask == 0] == 0)
  assert np.all(np.isfinite(out["inside_probs"].numpy()))


def test_history_has_every_epoch_with_val_metrics_and_best_is_the_best_epoch(run):
  rows = history(run["workdir"])
  assert [int(r["epoch"]) for r in rows] == [0, 1]
  for r in rows:
    for key in ("loss", "val_R1@0.3", "val_R1@0.5", "val_R1@0.7", "val_R5@0.5", "val_mIoU"):
      assert math.isfinite(float(r[key]))
  values = [float(r["val_R1@0.5"]) for r in rows]
  state = json.load(open(os.path.join(run["workdir"], trainer.BEST_STATE)))
  assert state["best"] == pytest.approx(max(values))
  assert state["epoch"] == 1 + values.index(max(values))  # first epoch reaching the max


def test_tensorboard_logs_hold_train_and_val_metrics(run):
  """Per epoch, the scalars a researcher plots, equal to history.csv's (float32)."""
  scalars = {}  # (run, tag, epoch) -> value
  for path in glob.glob(os.path.join(run["workdir"], wd.LOGS, "**", "events.out.tfevents.*"), recursive=True):
    kind = os.path.basename(os.path.dirname(path))
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.metadata.plugin_data.plugin_name == "scalars":
          scalars[(kind, v.tag, event.step)] = float(tf.make_ndarray(v.tensor))
  rows = history(run["workdir"])
  from cimha_tf.training import optimizer
  config = helpers.tiny_config(run["prepared"], epochs=2, **helpers.TINY_RUN_TRAIN)
  steps = trainer.steps_per_epoch(config)
  schedule = optimizer.learning_rate(config.train, steps)
  assert float(schedule(steps - 1)) > float(schedule(2 * steps - 1)) > 0.0  # it decays
  for r in rows:
    epoch = int(r["epoch"])
    for key in ("loss", "start_probs_loss", "end_probs_loss", "inside_probs_loss"):
      assert scalars[("train", f"epoch_{key}", epoch)] == pytest.approx(float(r[key]), rel=1e-6)
    # The schedule (helpers.TINY_RUN_TRAIN) at the epoch's last step.
    assert scalars[("train", "epoch_learning_rate", epoch)] == pytest.approx(
        float(schedule((epoch + 1) * steps)), rel=1e-5, abs=1e-9)
    for m in ("R1@0.3", "R1@0.5", "R1@0.7", "R5@0.3", "R5@0.5", "R5@0.7", "mIoU"):
      assert scalars[("validation", f"epoch_{m}", epoch)] == pytest.approx(float(r[f"val_{m}"]), rel=1e-6)
  assert {e for _, _, e in scalars} == {int(r["epoch"]) for r in rows}


def test_the_binary_prints_the_counts_it_trains_on(run):
  from cimha_tf.data import pipeline
  steps = pipeline.batches_per_pass(run["prepared"], "train", 8, 8)  # tiny_config, bands of 8
  assert (f"data: {run['prepared']}: 'train' 24 queries, {steps} steps per epoch; "
          "validation on 'val' 8 queries") in run["log"]
  assert f"{steps}/{steps}" in run["log"]  # Keras's progress bar counts the same steps


def test_two_runs_of_the_same_config_are_identical(run):
  a, b = history(run["workdir"]), history(run["workdir_b"])
  assert a == b  # every loss and every val metric, to the printed digit
  ma = wd.load_model(wd.checkpoint_path(run["workdir"], "last"))
  mb = wd.load_model(wd.checkpoint_path(run["workdir_b"], "last"))
  for x, y in zip(ma.get_weights(), mb.get_weights()):
    np.testing.assert_array_equal(x, y)


# Bad input: each must fail before the first training step (no model is even built).

def _config(run, **overrides):
  c = helpers.tiny_config(run["prepared"], epochs=2, **helpers.TINY_RUN_TRAIN)
  for key, value in overrides.items():
    section, field = key.split("__")
    c[section][field] = value
  return c


def _fails_before_training(config, workdir, match):
  with pytest.raises(ValueError, match=match):
    trainer.train(config, str(workdir), verbose=0)
  for name in (trainer.HISTORY, wd.BACKUP, wd.LOGS):  # written from the first epoch on
    assert not os.path.exists(wd.path(str(workdir), name))


def test_missing_split(run, tmp_path):
  _fails_before_training(_config(run, data__val_split="dev"), tmp_path / "w",
                         r"metadata.json has no split 'dev' \(has \['test', 'train', 'val'\]\)")


def test_empty_split(run, tmp_path):
  data = tmp_path / "data"
  shutil.copytree(run["prepared"], data)
  meta = json.load(open(data / "metadata.json"))
  meta["splits"]["val"]["queries"] = 0
  json.dump(meta, open(data / "metadata.json", "w"))
  c = _config(run)
  c.data.dir = str(data)
  _fails_before_training(c, tmp_path / "w", "split 'val' is empty")


def test_damaged_shard_is_named(run, tmp_path):
  """tf.data's DataLossError on a truncated shard names no file; training's error does."""
  data = tmp_path / "data"
  shutil.copytree(run["prepared"], data)
  shard = data / json.load(open(data / "metadata.json"))["splits"]["train"]["records"][0]
  damaged = bytearray(shard.read_bytes())
  damaged[len(damaged) // 2] ^= 0xFF  # same size: only the record's checksum tells
  shard.write_bytes(bytes(damaged))
  c = _config(run)
  c.data.dir = str(data)
  with pytest.raises(ValueError, match=f"{shard}: unreadable TFRecord shard .*corrupted record"):
    trainer.train(c, str(tmp_path / "w"), verbose=0)


def _record_ends(data):
  """Byte offsets where a TFRecord file's records end (length, its CRC, data, its CRC)."""
  ends, i = [], 0
  while i < len(data):
    i += 8 + 4 + int.from_bytes(data[i:i + 8], "little") + 4
    ends.append(i)
  return ends


@pytest.mark.parametrize("keep", ["none", "half"])
def test_shard_that_lost_whole_records_is_named(run, tmp_path, keep):
  """0 bytes (an interrupted copy) or cut at a record boundary: tf.data reads it without an
  error, and training ran on part of the split (0 bytes: no step at all, exit 0, and a
  best.keras all the same)."""
  data = tmp_path / "data"
  shutil.copytree(run["prepared"], data)
  meta = json.load(open(data / "metadata.json"))
  shard = data / meta["splits"]["train"]["records"][0]
  raw = shard.read_bytes()
  ends = _record_ends(raw)
  assert ends[-1] == len(raw) and len(ends) >= 2
  cut = 0 if keep == "none" else ends[len(ends) // 2 - 1]
  shard.write_bytes(raw[:cut])
  c = _config(run)
  c.data.dir = str(data)
  with pytest.raises(ValueError, match=f"{shard}: {cut} bytes, but metadata.json says "
                     f"{len(raw)} .*split 'train'.*prepare_data"):
    trainer.train(c, str(tmp_path / "w"), verbose=0)
  assert not os.path.exists(wd.path(str(tmp_path / "w"), wd.BEST))
  # A folder prepared before the sizes were recorded is read as before.
  for info in meta["splits"].values():
    del info["record_bytes"]
  (data / "metadata.json").write_text(json.dumps(meta))
  assert len(pipeline.split_files(str(data), "train")) == len(meta["splits"]["train"]["records"])


def test_model_limits_smaller_than_the_prepared_data(run, tmp_path):
  _fails_before_training(_config(run, model__max_video_len=8), tmp_path / "w",
                         "prepared with max_video_len=16 but config.model.max_video_len=8")


def test_workdir_of_a_different_model(run, tmp_path):
  w = tmp_path / "w"
  w.mkdir()
  shutil.copy(wd.path(run["workdir"], wd.CONFIG), w / wd.CONFIG)
  _fails_before_training(_config(run, model__width=32), w,
                         r"different model .*model.width: 16 -> 32")


def test_workdir_trained_on_another_feature_dim(run, tmp_path):
  w = tmp_path / "w"
  w.mkdir()
  shutil.copy(wd.path(run["workdir"], wd.CONFIG), w / wd.CONFIG)
  meta = json.load(open(wd.path(run["workdir"], wd.DATA_META)))
  meta["feature_dim"] = 1024
  json.dump(meta, open(w / wd.DATA_META, "w"))
  _fails_before_training(_config(run), w, "feature_dim=1024 but .*metadata.json has feature_dim=8")


def _swap_two_tokens(vocab_path):
  vocab = json.load(open(vocab_path))
  vocab["tokens"][2], vocab["tokens"][3] = vocab["tokens"][3], vocab["tokens"][2]
  json.dump(vocab, open(vocab_path, "w"))


def test_resume_on_data_with_another_vocabulary(run, tmp_path):
  """Same size, two ids swapped: the finished epochs learnt the old ids, so resuming is
  refused, and the workdir's vocab.json is not overwritten."""
  w, data = tmp_path / "w", tmp_path / "data"
  shutil.copytree(run["workdir"], w)
  shutil.copytree(run["prepared"], data)
  _swap_two_tokens(data / "vocab.json")
  before = (w / wd.VOCAB).read_text()
  c = _config(run, train__epochs=3)
  c.data.dir = str(data)
  with pytest.raises(ValueError, match=f"{data / 'vocab.json'} differs from the vocabulary the "
                                       f"model was trained with \\({w / wd.VOCAB}\\)"):
    trainer.train(c, str(w), verbose=0)
  assert (w / wd.VOCAB).read_text() == before


def test_resume_with_other_settings(run, tmp_path):
  """A finished or killed run resumed with another learning rate or batch size would mix two
  runs in one model (and config.json would describe neither): refused, naming the keys."""
  w = tmp_path / "w"
  shutil.copytree(run["workdir"], w)
  before = (w / wd.CONFIG).read_text()
  c = _config(run, train__learning_rate=0.01, train__batch_size=4, train__epochs=3)
  with pytest.raises(ValueError, match=r"holds a run made with other settings \(.*config.json: "
                                       r"train.batch_size: 8 -> 4, train.learning_rate: 0.003 -> "
                                       r"0.01\); resuming would mix them"):
    trainer.train(c, str(w), verbose=0)
  assert (w / wd.CONFIG).read_text() == before


def test_embeddings_of_another_width(tmp_path):
  from cimha_tf.experiment import checks
  np.save(tmp_path / "embeddings.npy", np.ones((5, 7), np.float32))
  meta = {"embeddings": "embeddings.npy", "vocab_size": 5}
  assert checks.load_embeddings(str(tmp_path), meta, 7).shape == (5, 7)
  with pytest.raises(ValueError, match=r"embeddings.npy: 7-d word vectors but config.model."
                                       r"embedding_dim=300: set --config.model.embedding_dim=7"):
    checks.load_embeddings(str(tmp_path), meta, 300)


def test_checkpoint_from_another_workdir(run, tmp_path):
  """--checkpoint=PATH is paired with --workdir's vocabulary and config: a .keras from a
  workdir whose vocabulary or model differs is refused, and so is one whose embedding size
  is not the workdir's vocabulary size."""
  theirs = os.path.join(run["workdir"], wd.BEST)
  assert wd.load_checkpoint(run["workdir_b"], theirs)[0] == theirs  # same config and vocab
  w = tmp_path / "w"
  shutil.copytree(run["workdir"], w, ignore=shutil.ignore_patterns("*.keras", "backup"))
  _swap_two_tokens(w / wd.VOCAB)
  with pytest.raises(ValueError, match=f"checkpoint {theirs} was trained in {run['workdir']}, "
                                       f"whose vocab.json differs from {w}'s"):
    wd.load_checkpoint(str(w), theirs)
  config = json.load(open(w / wd.CONFIG))
  config["model"]["dropout"] = 0.5
  json.dump(config, open(w / wd.CONFIG, "w"))
  with pytest.raises(ValueError, match="whose config.json \\(its 'model' section\\) differs"):
    wd.load_checkpoint(str(w), theirs)
  shutil.copy(theirs, w / wd.BEST)  # as its own checkpoint: its architecture is checked too
  with pytest.raises(ValueError, match=r"best.keras is not the model .*config.json describes "
                                       r"\(cross.dropout: 0.0, config 0.5"):
    wd.load_checkpoint(str(w), "best")
  config["model"]["dropout"] = 0.0
  json.dump(config, open(w / wd.CONFIG, "w"))
  # its own checkpoint, a vocabulary one token longer
  vocab = json.load(open(w / wd.VOCAB))
  json.dump({"tokens": vocab["tokens"] + ["extra"]}, open(w / wd.VOCAB, "w"))
  with pytest.raises(ValueError, match=rf"its word embedding has {len(vocab['tokens'])} rows but "
                                       rf".*vocab.json has {len(vocab['tokens']) + 1} tokens"):
    wd.load_checkpoint(str(w), "best")


def test_checkpoints_without_a_config(run, tmp_path):
  w = tmp_path / "w"
  w.mkdir()
  shutil.copy(wd.path(run["workdir"], wd.LAST), w / wd.LAST)
  _fails_before_training(_config(run), w, "no config.json")


def test_nan_loss_stops_with_a_clear_message():
  cb = callbacks_lib.StopOnNaN()
  cb.set_model(_Dummy())
  cb.on_epoch_begin(2)
  cb.on_train_batch_end(0, {"loss": 1.5})
  with pytest.raises(FloatingPointError, match=r"loss is nan at epoch 3, batch 5.*learning_rate"):
    cb.on_train_batch_end(4, {"loss": float("nan")})
  assert cb.model.stop_training


class _Dummy:
  stop_training = False


def test_strategy_choice(monkeypatch):
  monkeypatch.delenv("TF_CONFIG", raising=False)
  s = strategy_lib.get_strategy()
  assert isinstance(s, tf.distribute.MirroredStrategy) and s.num_replicas_in_sync == 1
  assert strategy_lib.worker_dir("/w") == "/w"
  cluster = {"worker": ["localhost:1", "localhost:2"]}
  monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
  assert strategy_lib.num_workers() == 2 and not strategy_lib.is_chief()
  assert strategy_lib.worker_dir("/w") == os.path.join("/w", "worker_1")
  monkeypatch.setenv("TF_CONFIG", "{not json")
  with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
    strategy_lib.num_workers()


def test_clear_errors_prints_our_checks_and_keeps_foreign_tracebacks(capsys):
  """Our own check's error -> exit status 1 and one FATAL line; an error raised inside a
  library (its message alone rarely says where) propagates with its traceback."""
  import numpy as np
  from cimha_tf.data.features import validate_features
  from cimha_tf.common import cli
  with pytest.raises(SystemExit) as e, cli.clear_errors():
    validate_features(np.zeros((3, 2)), "v.npy", feature_dim=4)
  assert e.value.code == 1
  assert capsys.readouterr().err == ("FATAL: FeatureError: v.npy: feature dimension 2, "
                                     "expected 4 (the dimension of the store's other videos)\n")
  with pytest.raises(ValueError, match="could not broadcast"), cli.clear_errors():
    np.zeros(3)[:] = np.zeros(2)
  with pytest.raises(KeyError), cli.clear_errors():  # not a bad-input error: untouched
    {}["x"]


def test_damaged_workdir_json_names_the_file(tmp_path):
  # evaluate and export printed json's "Expecting property name ... (char 1)" and no file.
  (tmp_path / wd.CONFIG).write_text("{")
  with pytest.raises(ValueError, match=f"{tmp_path / wd.CONFIG} is not valid JSON"):
    wd.read_json(str(tmp_path), wd.CONFIG)
  (tmp_path / wd.CONFIG).write_bytes(b'{"model": "\xff"}')
  with pytest.raises(ValueError, match=f"{tmp_path / wd.CONFIG} is not valid JSON"):
    wd.read_json(str(tmp_path), wd.CONFIG)


@pytest.mark.parametrize("name", [wd.CONFIG, trainer.BEST_STATE, wd.DATA_META, wd.VOCAB])
def test_damaged_workdir_file_is_named_by_train_and_evaluate(run, tmp_path, name):
  # Resuming train on a workdir whose config.json was cut short gave json's bare
  # "Expecting value: line 1 column 12 (char 11)", naming no file.
  from cimha_tf.evaluation import workdir_eval
  w = str(tmp_path / "w")
  shutil.copytree(run["workdir"], w)
  with open(os.path.join(w, name), "w") as f:
    f.write('{"tokens": [')
  named = re.escape(os.path.join(w, name)) + " is not valid JSON"
  with pytest.raises(ValueError, match=named):
    trainer.train(helpers.tiny_config(run["prepared"], epochs=2, **helpers.TINY_RUN_TRAIN), w, verbose=0)
  if name != trainer.BEST_STATE:  # evaluation does not read it
    with pytest.raises(ValueError, match=named):
      workdir_eval.evaluate_workdir(workdir_eval.saved_config(w), w, num_figures=0, progress=False)


@pytest.mark.parametrize("key,value,shown", [
    ("width", 32, "video_projection.width: 32, config 16"),   # a weight's shape changes
    ("cross_skip", False, "cross.cross_skip: False, config True"),                      # no weight changes
    ("variant", "cimha_wo_ms", "layer 'no_segment_head' only in the checkpoint"),
])
def test_checkpoint_of_another_model_config_is_refused(run, tmp_path, key, value, shown):
  # A .keras copied out of its workdir was evaluated under another workdir's config.json
  # (its metrics/test.json overwritten with the other model's) and exported with the
  # config's graph around its weights, without a word.
  from cimha_tf.model import build_model
  config = json.load(open(wd.path(run["workdir"], wd.CONFIG)))
  other = _config(run)
  other.model[key] = value
  vocab = len(json.load(open(wd.path(run["workdir"], wd.VOCAB))))
  model = build_model(other.model, 8, vocab)
  model.save(str(tmp_path / "other.keras"))
  assert config["model"]["width"] == 16 and config["model"][key] != value
  with pytest.raises(ValueError, match=re.escape(shown)):
    wd.load_checkpoint(run["workdir"], str(tmp_path / "other.keras"))
  # The workdir's own checkpoint passes, against its config.json or the same config given.
  wd.load_checkpoint(run["workdir"], "best")
  wd.load_checkpoint(run["workdir"], "best", _config(run).model)
  # The LSTM form is not architecture (same weights, same function).
  wd.load_checkpoint(run["workdir"], "best", _config(run, model__lstm_implementation="scan").model)
  with pytest.raises(ValueError, match="is not the model the given config describes"):
    wd.load_checkpoint(run["workdir"], "best", other.model)

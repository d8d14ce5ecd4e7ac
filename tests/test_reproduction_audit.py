"""The researcher's reproduction path: prepare_data's accounting on the real annotation
files, the configs against docs/paper.md, and the train binary's command line."""

import collections
import json

import numpy as np
import pytest

from cimha_tf.data import prepare, text
from cimha_tf.data.records import QueryRecord, ReadReport


def test_duplicate_and_truncated_queries_are_kept_counted_and_warned(tmp_path, caplog):
  feats = tmp_path / "feats"
  feats.mkdir()
  for vid in ("a", "b"):
    np.save(feats / f"{vid}.npy", np.ones((6, 3), np.float32))
  q = lambda i, vid, s, w=(1.0, 4.0): QueryRecord(i, vid, 10.0, s, [w])  # noqa: E731
  train = [q(0, "a", "a person opens the door"), q(1, "a", "A person  opens the door"),
           q(2, "a", "a person opens the door"), q(3, "b", "a person opens the door"),
           q(4, "a", "a person opens the door", (1.0, 5.0)), q(5, "b", "a person, then " * 4)]
  splits = {"train": (train, ReadReport("train.txt", read=6, kept=6)),
            "test": (train[:1], ReadReport("test.txt", read=1, kept=1))}
  meta = prepare.prepare_splits(splits, str(feats), str(tmp_path / "out"), max_query_len=12,
                                progress=False)
  # qids 1 and 2 repeat qid 0 (same video, tokens, window); 3 (other video), 4 (other window) do not
  tr = meta["splits"]["train"]
  assert (tr["kept"], tr["duplicates_kept"], tr["queries_truncated"]) == (6, 2, 1)  # qid 5: 16
  te = meta["splits"]["test"]
  assert te["duplicates_kept"] == te["queries_truncated"] == 0
  assert ("train: read 6, kept 6 in 2 videos (1 shards), dropped 0, repaired 0, duplicates kept 2, "
          "truncated to 12 tokens 1,") in prepare.format_accounting(meta)
  assert "split 'train': 2 of 6 kept queries repeat an earlier query" in caplog.text
  assert "split 'train': 1 of 6 kept queries have more than max_query_len=12 tokens" in caplog.text


def test_real_tacos_duplicates_and_long_queries_are_counted(shared_data, tmp_path):
  """2D-TAN's TACoS repeats 12-14% of each split's queries exactly; the published counts
  (9,790 / 4,436 / 4,001) include them, so they are kept, and now counted, as are the
  queries cut to the paper's 25 tokens."""
  from cimha_tf.data.annotations import read_dataset
  expected, long, vids = {}, {}, set()
  for split in ("train", "val", "test"):
    with open(shared_data / "tacos" / f"{split}.json") as f:
      data = json.load(f)
    seen = collections.Counter()
    for vid, info in data.items():
      vids.add(vid)
      for (s, e), sentence in zip(info["timestamps"], info["sentences"]):
        seen[(vid, tuple(text.tokenize(sentence)), s, e)] += 1
    expected[split] = sum(n - 1 for n in seen.values())
    long[split] = sum(len(text.tokenize(sentence)) > 25 for info in data.values()
                      for sentence in info["sentences"])
  assert expected == {"train": 1211, "val": 521, "test": 574}
  assert long == {"train": 152, "val": 79, "test": 91}
  feats = tmp_path / "feats"
  feats.mkdir()
  for vid in vids:
    np.save(feats / f"{vid}.npy", np.ones((4, 2), np.float32))
  meta = prepare.prepare_splits(read_dataset("tacos", str(shared_data / "tacos")), str(feats),
                                str(tmp_path / "out"), dataset="tacos", progress=False)
  assert {k: s["duplicates_kept"] for k, s in meta["splits"].items()} == expected
  assert {k: s["queries_truncated"] for k, s in meta["splits"].items()} == long
  assert {k: s["kept"] for k, s in meta["splits"].items()} == {"train": 9790, "val": 4436,
                                                                "test": 4001}


def test_a_bad_model_value_fails_before_the_workdir_is_made(tmp_path):
  from cimha_tf.experiment import config as config_lib
  from tests import helpers
  c = helpers.tiny_config(str(tmp_path / "no_data"))
  c.model.variant = "cimha_wo-ms"
  with pytest.raises(ValueError, match=r"model.variant = 'cimha_wo-ms': expected one of"):
    config_lib.validate(c)
  r = helpers.run_binary("cimha_tf.train", "--config=charades_sta_i3d",
                         f"--workdir={tmp_path / 'wd'}", f"--config.data.dir={tmp_path / 'nope'}",
                         "--config.model.num_heads=3", check=False)
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
  assert "FATAL: ValueError: model.width = 512: expected a multiple of num_heads=3" in r.stderr
  assert not (tmp_path / "wd").exists()


@pytest.mark.parametrize("override,message", [
    ("--config.train.batch_size=0", "config.train.batch_size=0: expected >= 1"),
    ("--config.model.variant=mhaa", "model.variant = 'mhaa': expected one of"),
    ("--config.data.dir=", "config.data.dir='': expected a prepared folder")])
def test_train_config_value_out_of_range_is_a_bad_command_line(tmp_path, override, message):
  """docs/design.md, "Command lines": exit 2 for a flag value out of range, --config.KEY too."""
  from tests import helpers
  r = helpers.run_binary("cimha_tf.train", "--config=charades_sta_i3d",
                         f"--workdir={tmp_path / 'wd'}", override, check=False)
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
  assert f"FATAL: ValueError: {message}" in r.stderr
  assert not (tmp_path / "wd").exists()


@pytest.mark.parametrize("flag", ["--max_video_len=0", "--max_query_len=-3"])
def test_prepare_data_lengths_out_of_range_are_a_bad_command_line(tmp_path, flag):
  """docs/design.md, "Command lines": a flag value out of range exits 2, before any file."""
  from tests import helpers
  r = helpers.run_binary("cimha_tf.prepare_data", "--dataset=charades_sta",
                         f"--annotations={tmp_path}", f"--features={tmp_path}",
                         f"--output_dir={tmp_path / 'out'}", flag, check=False)
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
  assert f"flag {flag}: " in r.stderr and "is not a positive integer" in r.stderr, r.stderr[-2000:]
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("row,eq7,segmentation", [
    ("mha", False, False), ("cimha_wo_ms", True, False), ("cimha", True, True)])
def test_each_ablation_row_switch_builds_that_row(row, eq7, segmentation):
  """docs/paper.md's rows through the paper config and its command-line switch: MHA has eq 8
  only, CI-MHA w/o MS both directions and no segmentation head or loss, CI-MHA everything."""
  from cimha_tf.model import build_model
  from cimha_tf.model.losses import losses_and_weights
  from tests.helpers import load_config as load
  c = load("charades_sta_i3d", f"--config.model.variant={row}")
  model = build_model(c.model, video_dim=1024, vocab_size=50)
  cross = model.get_layer("cross")
  assert cross.mha_qv is not None and (cross.mha_vq is not None) == eq7
  assert model.get_layer("cross").compute_output_shape((1, 8, 128), (1, 4, 128))[-1] == (
      256 if eq7 else 128)
  names = {layer.name for layer in model.layers}
  assert ("segment_head" in names) == segmentation and ("no_segment_head" in names) != segmentation
  assert ("inside_probs" in losses_and_weights(c.model)[0]) == segmentation

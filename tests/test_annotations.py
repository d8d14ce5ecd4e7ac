"""Annotation readers: counts on the real files, every repair/drop, every clear error."""

import json

import pytest

from cimha_tf.data.annotations import DATASETS, read_dataset
from cimha_tf.common.timeline import seconds_to_steps


def _counts(splits):
  return {name: rep.read for name, (_, rep) in splits.items()}


# --- real files ---------------------------------------------------------------------

def test_real_charades_sta(shared_data):
  splits = read_dataset("charades_sta", shared_data / "charades_sta")
  assert list(splits) == ["train", "test"]
  assert _counts(splits) == {"train": 12408, "test": 3720}
  for name, clipped in (("train", 1802), ("test", 562)):
    records, rep = splits[name]
    assert rep.kept == rep.read and rep.repaired["end_clipped"] == clipped
    assert [r.qid for r in records] == list(range(rep.read))
  first = splits["train"][0][0]
  assert (first.vid, first.windows, first.query) == ("AO8RW", [(0.0, 6.9)], "a person is putting a book on a shelf.")


def test_real_activitynet(shared_data):
  splits = read_dataset("activitynet_captions", shared_data / "activitynet_captions")
  assert _counts(splits) == {"train": 37421, "val_1": 17505, "val_2": 17031}
  records, rep = splits["train"]
  assert rep.repaired["swapped"] == 2 and rep.repaired["zero_length_kept"] == 2
  assert rep.kept == 37421
  for r in records:
    for s, e in r.windows:
      assert 0 <= s <= e <= r.duration
  # Leading spaces of the sentences are stripped.
  assert all(r.query == r.query.strip() for r in records)


def test_real_tacos(shared_data):
  splits = read_dataset("tacos", shared_data / "tacos")
  assert _counts(splits) == {"train": 9790, "val": 4436, "test": 4001}
  raw = json.loads((shared_data / "tacos" / "train.json").read_text())
  vid, info = next(iter(raw.items()))
  rec = splits["train"][0][0]
  assert rec.vid == vid
  assert rec.duration == pytest.approx(info["num_frames"] / info["fps"])
  assert rec.windows[0] == pytest.approx((info["timestamps"][0][0] / info["fps"], info["timestamps"][0][1] / info["fps"]))
  assert splits["train"][1].repaired["end_clipped"] == 43


def test_real_qvhighlights(shared_data):
  splits = read_dataset("jsonl", shared_data / "qvhighlights" / "highlight_val_release.jsonl")
  assert list(splits) == ["val"] and _counts(splits) == {"val": 1550}
  records, _ = splits["val"]
  assert records[0].qid == 2579 and records[0].windows == [(82.0, 150.0)]
  assert max(len(r.windows) for r in records) > 1


# --- Charades-STA defects and errors ----------------------------------------------------

def _charades(tmp_path, train_lines, test_lines=("V1 0.0 1.0##x.",), durations=None):
  durations = durations or {"V1": 10.0, "V2": 20.0}
  (tmp_path / "charades.json").write_text(json.dumps(
      {v: {"subset": "training", "duration": d, "actions": []} for v, d in durations.items()}))
  (tmp_path / "charades_sta_train.txt").write_text("\n".join(train_lines) + "\n")
  (tmp_path / "charades_sta_test.txt").write_text("\n".join(test_lines) + "\n")
  return tmp_path


def test_charades_repairs_and_drops(tmp_path):
  folder = _charades(tmp_path, [
      "V1 1.0 4.0##person opens the door.",       # clean
      "V1 8.0 12.5##person sits down.",           # end past duration -> clipped
      "V2 -1.5 3.0##person stands up.",           # start < 0 -> clipped
      "V2 9.0 5.0##person eats.",                 # start > end -> swapped
      "V2 7.0 7.0##person blinks.",               # zero length -> kept
      "",                                         # blank line: not a query
      "V1 2.0 3.0##   ",                          # empty sentence -> dropped
      "V1 11.0 13.0##person leaves.",             # entirely past the duration -> dropped
      "V1 2.0 3.0##\u2022 \u201c",               # only ignored symbols -> empty
  ])
  splits = read_dataset("charades_sta", str(folder))
  records, rep = splits["train"]
  assert rep.read == 8 and rep.kept == 5
  assert dict(rep.dropped) == {"empty_query": 2, "outside_video": 1}
  assert dict(rep.repaired) == {"end_clipped": 1, "start_clipped": 1, "swapped": 1, "zero_length_kept": 1}
  assert [(r.qid, r.vid, r.windows) for r in records] == [
      (0, "V1", [(1.0, 4.0)]), (1, "V1", [(8.0, 10.0)]), (2, "V2", [(0.0, 3.0)]),
      (3, "V2", [(5.0, 9.0)]), (4, "V2", [(7.0, 7.0)])]
  # The zero-length window becomes a one-step moment.
  s, e = seconds_to_steps(7.0, 7.0, 20.0, 40)
  assert int(s) == int(e) == 14
  assert splits["test"][1].read == 1


@pytest.mark.parametrize("line, match", [
    ("V1 1.0 4.0 person opens the door.", r"charades_sta_train.txt:2: expected 'VIDEO start end##sentence'"),
    ("V1 1.0##person.", r"charades_sta_train.txt:2: expected"),
    ("V1 one 4.0##person.", r"charades_sta_train.txt:2: expected"),
    ("V9 1.0 4.0##person.", r"charades_sta_train.txt:2: video 'V9' is not in .*charades.json"),
])
def test_charades_line_errors(tmp_path, line, match):
  folder = _charades(tmp_path, ["V1 1.0 2.0##ok.", line])
  with pytest.raises(ValueError, match=match):
    read_dataset("charades_sta", str(folder))


def test_charades_line_breaks_and_bad_utf8_name_the_line(tmp_path):
  """Line numbers count every line break a text-mode reader would (CRLF, CR, LF), and a
  line that is not UTF-8 names file:line instead of a bare UnicodeDecodeError."""
  folder = _charades(tmp_path, ["V1 1.0 2.0##ok."])
  (folder / "charades_sta_train.txt").write_bytes(
      b"V1 1.0 2.0##one.\r\nV1 2.0 3.0##two.\rV2 3.0 4.0##three.\n")
  records, rep = read_dataset("charades_sta", str(folder))["train"]
  assert [(r.qid, r.vid, r.query) for r in records] == [
      (0, "V1", "one."), (1, "V1", "two."), (2, "V2", "three.")]
  (folder / "charades_sta_train.txt").write_bytes(
      b"V1 1.0 2.0##one.\r\nV1 2.0 3.0##two.\rV2 3.0 4.0##caf\xe9.\n")
  with pytest.raises(ValueError, match=r"charades_sta_train.txt:3: not valid UTF-8 \(byte 0xe9 "
                                       r"at column 16\)"):
    read_dataset("charades_sta", str(folder))


def test_charades_missing_files(tmp_path):
  folder = _charades(tmp_path, ["V1 1.0 2.0##ok."])
  (folder / "charades_sta_test.txt").unlink()
  with pytest.raises(FileNotFoundError, match="charades_sta_test.txt"):
    read_dataset("charades_sta", str(folder))
  with pytest.raises(FileNotFoundError, match="not a folder"):
    read_dataset("charades_sta", str(folder / "charades.json"))
  (folder / "charades_sta_test.txt").write_text("")
  (folder / "charades.json").write_text("{not json")
  with pytest.raises(ValueError, match="charades.json is not valid JSON"):
    read_dataset("charades_sta", str(folder))
  (folder / "charades.json").write_text(json.dumps({"V1": {"subset": "training"}}))
  with pytest.raises(ValueError, match="'V1' has no \"duration\""):
    read_dataset("charades_sta", str(folder))


def test_bad_duration_dropped(tmp_path):
  folder = _charades(tmp_path, ["V1 1.0 2.0##ok.", "V2 1.0 2.0##ok."], durations={"V1": 0.0, "V2": 20.0})
  records, rep = read_dataset("charades_sta", str(folder))["train"]
  assert rep.read == 2 and rep.kept == 1 and dict(rep.dropped) == {"bad_duration": 1}
  assert records[0].vid == "V2"


def test_unknown_dataset():
  with pytest.raises(ValueError, match="unknown dataset 'nope'"):
    read_dataset("nope", ".")
  assert DATASETS == ("charades_sta", "activitynet_captions", "tacos", "jsonl")


# --- ActivityNet Captions ----------------------------------------------------------------

def test_activitynet_present_splits_and_errors(tmp_path):
  data = {"v_a": {"duration": 50.0, "timestamps": [[0, 10], [30, 20], [45, 60.5]],
                  "sentences": ["A man runs.", " He sits.", "He leaves."]}}
  (tmp_path / "train.json").write_text(json.dumps(data))
  (tmp_path / "val_2.json").write_text(json.dumps({"v_b": {"duration": 5, "timestamps": [[1, 2]], "sentences": ["x"]}}))
  splits = read_dataset("activitynet_captions", str(tmp_path))
  assert list(splits) == ["train", "val_2"]
  records, rep = splits["train"]
  assert [r.windows for r in records] == [[(0.0, 10.0)], [(20.0, 30.0)], [(45.0, 50.0)]]
  assert records[1].query == "He sits."
  assert dict(rep.repaired) == {"swapped": 1, "end_clipped": 1}

  (tmp_path / "train.json").write_text(json.dumps({"v_a": {"duration": 5, "timestamps": [[1, 2]], "sentences": []}}))
  with pytest.raises(ValueError, match="train.json: video 'v_a'.*equal"):
    read_dataset("activitynet_captions", str(tmp_path))
  (tmp_path / "train.json").write_text(json.dumps({"v_a": {"duration": 5, "timestamps": [[1]], "sentences": ["x"]}}))
  with pytest.raises(ValueError, match="train.json: video 'v_a' timestamp 0: expected a window"):
    read_dataset("activitynet_captions", str(tmp_path))
  (tmp_path / "train.json").write_text(json.dumps({"v_a": {"timestamps": [[1, 2]], "sentences": ["x"]}}))
  with pytest.raises(ValueError, match="'v_a' has no 'duration'"):
    read_dataset("activitynet_captions", str(tmp_path))
  for f in ("train.json", "val_2.json"):
    (tmp_path / f).unlink()
  with pytest.raises(FileNotFoundError, match="train.json"):
    read_dataset("activitynet_captions", str(tmp_path))


# --- TACoS -------------------------------------------------------------------------------

def test_tacos_frames_to_seconds(tmp_path):
  video = {"timestamps": [[50, 100], [250, 400]], "sentences": ["He cuts.", "He washes."], "fps": 25.0, "num_frames": 300}
  for split in ("train", "val", "test"):
    (tmp_path / f"{split}.json").write_text(json.dumps({"s1.avi": video}))
  records, rep = read_dataset("tacos", str(tmp_path))["val"]
  assert records[0].duration == 12.0
  assert [r.windows for r in records] == [[(2.0, 4.0)], [(10.0, 12.0)]]
  assert dict(rep.repaired) == {"end_clipped": 1}
  (tmp_path / "val.json").write_text(json.dumps({"s1.avi": dict(video, fps=0)}))
  with pytest.raises(ValueError, match="val.json: video 's1.avi': fps must be a positive"):
    read_dataset("tacos", str(tmp_path))
  (tmp_path / "test.json").unlink()
  with pytest.raises(FileNotFoundError, match="test.json"):
    read_dataset("tacos", str(tmp_path))


# --- JSONL -------------------------------------------------------------------------------

def _line(**kw):
  base = {"qid": 1, "query": "a dog runs", "vid": "v1", "duration": 100, "relevant_windows": [[10, 20]]}
  base.update(kw)
  return json.dumps(base)


def test_jsonl_windows_and_splits(tmp_path):
  (tmp_path / "highlight_val_release.jsonl").write_text("\n".join([
      _line(qid=7, relevant_windows=[[10, 20], [30, 40]]),
      _line(qid=3, relevant_windows=[[90, 110], [120, 130]]),   # second window outside -> dropped from the query
      _line(qid=4, relevant_windows=[[120, 130]]),               # its only window outside -> query dropped
      _line(qid=5, relevant_windows=[]),                         # nothing -> dropped
      _line(qid=6, query=" "),
  ]) + "\n\n")
  (tmp_path / "my_test.jsonl").write_text(_line(qid=0) + "\n")
  splits = read_dataset("jsonl", str(tmp_path))
  assert list(splits) == ["val", "my_test"]
  records, rep = splits["val"]
  assert [(r.qid, r.windows) for r in records] == [(7, [(10.0, 20.0), (30.0, 40.0)]), (3, [(90.0, 100.0)])]
  assert rep.read == 5 and rep.kept == 2
  assert dict(rep.dropped) == {"outside_video": 1, "no_valid_window": 1, "empty_query": 1}
  assert dict(rep.repaired) == {"end_clipped": 1, "window_dropped_outside_video": 1}
  assert records[0].to_json()["relevant_windows"] == [[10.0, 20.0], [30.0, 40.0]]
  single = read_dataset("jsonl", str(tmp_path / "my_test.jsonl"))
  assert list(single) == ["my_test"]


@pytest.mark.parametrize("content, match", [
    (_line() + "\n" + _line(), r"x.jsonl:2: qid 1 already used on line 1"),
    ("{bad json\n", r"x.jsonl:1: not valid JSON"),
    (json.dumps({"qid": 1, "query": "q", "vid": "v", "duration": 5}), r"x.jsonl:1: missing field 'relevant_windows'"),
    (_line(qid="a"), r"x.jsonl:1: field 'qid' must be an integer"),
    (_line().replace('"qid": 1', '"qid": NaN'), r"x.jsonl:1: field 'qid' must be an integer, got nan"),
    (_line().replace('"qid": 1', '"qid": -Infinity'), r"x.jsonl:1: field 'qid' must be an integer, got -inf"),
    (_line() + "\n" + _line(qid=2).replace("a dog", "caf\udce9"), r"x.jsonl:2: not valid UTF-8"),
    (_line(duration="long"), r"x.jsonl:1: field 'duration'"),
    (_line(relevant_windows=[[1, "b"]]), r"x.jsonl:1: relevant_windows\[0\]"),
])
def test_jsonl_errors(tmp_path, content, match):
  (tmp_path / "x.jsonl").write_bytes(content.encode("utf-8", "surrogateescape"))
  with pytest.raises(ValueError, match=match):
    read_dataset("jsonl", str(tmp_path / "x.jsonl"))


def test_jsonl_missing(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.jsonl"):
    read_dataset("jsonl", str(tmp_path / "nope.jsonl"))
  with pytest.raises(FileNotFoundError, match="no \\*.jsonl"):
    read_dataset("jsonl", str(tmp_path))


def test_annotation_files_with_a_utf8_byte_order_mark_are_read(tmp_path):
  # Windows editors save one; it stayed in the first video id: "video '\ufeffV1' is not in
  # charades.json".
  from cimha_tf.data.annotations import charades_sta
  from cimha_tf.common import jsonfile
  path = tmp_path / "charades_sta_train.txt"
  path.write_bytes(b"\xef\xbb\xbfV1 1.0 2.0##a person opens the door.\nV1 3 4##a person sits.\n")
  records, report = charades_sta.read_split(str(path), {"V1": 10.0})
  assert report.kept == 2 and [r.vid for r in records] == ["V1", "V1"]
  durations = tmp_path / "charades.json"
  durations.write_bytes(b"\xef\xbb\xbf" + json.dumps({"V1": 10.0}).encode())
  assert jsonfile.read_json_object(str(durations), "durations") == {"V1": 10.0}

"""The standalone scorer: the golden QVHighlights numbers, file round trips, bad files."""

import json

import numpy as np
import pytest

from cimha_tf.data.records import QueryRecord
from cimha_tf.evaluation import metrics
from cimha_tf.evaluation import predictions
from cimha_tf.evaluation import scorer


def flatten(d, prefix=""):
  for k, v in d.items():
    if isinstance(v, dict):
      yield from flatten(v, f"{prefix}{k}/")
    else:
      yield f"{prefix}{k}", v


def test_golden_qvhighlights(shared_data):
  qvh = shared_data / "qvhighlights"
  got = scorer.score_files(qvh / "moment_detr_sample_val_preds.jsonl", qvh / "highlight_val_release.jsonl")
  want = json.loads((qvh / "moment_detr_sample_val_preds_metrics.json").read_text())
  got_flat, want_flat = dict(flatten(got["qvhighlights"])), dict(flatten(want))
  assert set(got_flat) == set(want_flat)
  mismatches = {k: (got_flat[k], v) for k, v in want_flat.items() if round(got_flat[k], 2) != v}
  assert not mismatches
  assert list(got["qvhighlights"]["brief"]) == list(want["brief"])  # their key order
  # the literature's R1 (best GT window) is the same quantity as moment_detr's MR R1
  assert round(got["R1@0.5"], 2) == want["brief"]["MR-full-R1@0.5"]
  gt_lines = (qvh / "highlight_val_release.jsonl").read_text().splitlines()
  assert got["num_queries"] == sum(1 for line in gt_lines if line.strip()) and got["num_missing"] == 0
  table = scorer.format_table(got)
  assert "53.94" in table and "HL-min-VeryGood-Hit1" in table


def make_case(rng, n=30, duration=60.0):
  records, rows = [], []
  for qid in range(n):
    s = float(rng.integers(0, 100)) / 2
    gt = (s, min(duration, s + float(rng.integers(1, 30))))
    records.append(QueryRecord(qid=qid, vid=f"v{qid % 7}", duration=duration, query=f"q {qid}",
                               windows=[gt]))
    k = int(rng.integers(1, 7))
    starts = rng.integers(0, 100, k) / 2.0
    wins = np.stack([starts, np.minimum(duration, starts + rng.integers(1, 30, k)),
                     np.sort(rng.random(k))[::-1]], 1).astype(np.float32)  # numpy values
    rows.append({"qid": np.int64(qid), "query": f"q {qid}", "vid": f"v{qid % 7}",
                 "pred_relevant_windows": wins, "pred_saliency_scores": rng.random(30)})
  return records, rows


def write_gt(path, records):
  path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
  return path


def test_round_trip_through_files(tmp_path):
  rng = np.random.default_rng(0)
  records, rows = make_case(rng)
  pred_path = predictions.write_predictions(tmp_path / "out" / "preds.jsonl", rows)
  gt_path = write_gt(tmp_path / "gt.jsonl", records)
  back = predictions.read_predictions(pred_path)
  assert [r["qid"] for r in back] == list(range(30))
  assert set(back[3]) == set(rows[3])  # nothing added or lost
  assert back[3]["pred_saliency_scores"] == pytest.approx(rows[3]["pred_saliency_scores"].tolist())
  np.testing.assert_allclose(back[3]["pred_relevant_windows"], rows[3]["pred_relevant_windows"], rtol=1e-6)
  got = scorer.score_files(pred_path, gt_path)
  want = metrics.moment_metrics([r["pred_relevant_windows"] for r in rows],
                                [np.array(r.windows) for r in records])
  for key, value in want.items():
    assert got[key] == pytest.approx(value, abs=1e-6)
  assert "qvhighlights" not in got  # single-window ground truth without saliency
  assert 0 < got["R5@0.3"] <= 100


def test_missing_and_unknown_qids(tmp_path):
  rng = np.random.default_rng(1)
  records, rows = make_case(rng, n=10)
  gt_path = write_gt(tmp_path / "gt.jsonl", records)
  partial = predictions.write_predictions(tmp_path / "p.jsonl", rows[:6])
  with pytest.raises(ValueError, match="4 of 10 ground-truth queries have no prediction"):
    scorer.score_files(partial, gt_path)
  got = scorer.score_files(partial, gt_path, allow_missing=True)
  full = metrics.moment_metrics([r["pred_relevant_windows"] for r in rows[:6]],
                                [np.array(r.windows) for r in records[:6]])
  assert got["num_missing"] == 4
  for key, value in full.items():
    assert got[key] == pytest.approx(value * 6 / 10)  # the 4 missing count as misses
  extra = dict(rows[0], qid=99)
  bad = predictions.write_predictions(tmp_path / "x.jsonl", rows + [extra])
  with pytest.raises(ValueError, match=r"1 predicted qids are not in the ground truth, e.g. \[99\]"):
    scorer.score_files(bad, gt_path)


@pytest.mark.parametrize("lines, match", [
    (['{"qid": 1, "pred_relevant_windows": [[0, 1, 0.5]]}', '{"qid": 2, "pred_'], r"p\.jsonl:2: not valid JSON"),
    (['{"qid": 1}'], r"p\.jsonl:1 \(qid 1\): missing key 'pred_relevant_windows'"),
    (['[1, 2]'], r"p\.jsonl:1: expected a JSON object"),
    (['{"qid": 1, "pred_relevant_windows": [[3, 1, 0.5]]}'], "start > end"),
    (['{"qid": 1, "pred_relevant_windows": [[0, 1]]}'], r"expected \[start, end, score\]"),
    (['{"qid": 1, "pred_relevant_windows": [[0, NaN, 0.5]]}'], "finite numbers"),
    (['{"qid": 1, "pred_relevant_windows": [[0, 1, 0.5]], "pred_saliency_scores": [0.1, null]}'],
     "pred_saliency_scores"),
    (['{"qid": 1, "pred_relevant_windows": [[0, 1, 0.5]]}', '',
      '{"qid": 1, "pred_relevant_windows": [[0, 1, 0.5]]}'], r"p\.jsonl:3 .*duplicate qid 1, first at line 1"),
    # a JSON true mixed with numbers is no number (numpy would read it as 1)
    (['{"qid": 1, "pred_relevant_windows": [[0, 1, true]]}'], r"p\.jsonl:1 .*holds True, expected finite"),
    (['{"qid": 1, "pred_relevant_windows": [[0.0, 1.5, true]]}'], r"p\.jsonl:1 .*holds True, expected finite"),
    (['{"qid": 1, "pred_relevant_windows": [[0, 1, 0.5]], "pred_saliency_scores": [0.5, false]}'],
     r"p\.jsonl:1 .*'pred_saliency_scores' holds False"),
    (['{"qid": 1, "pred_relevant_windows": [[0, Infinity, 0.5]]}'], r"p\.jsonl:1 .*holds inf"),
    (['{"qid": 1, "pred_relevant_windows": [[-2, 4, 0.5]]}'],
     r"p\.jsonl:1 \(qid 1\): 'pred_relevant_windows' window \[-2, 4, 0.5\] starts before 0 s"),
    (['{"qid": 1, "pred_relevant_windows": [[0, 1, 0.5]]}', '{"qid": 2, "pred_relevant_windows": []}'],
     r"p\.jsonl:2 \(qid 2\): 'pred_relevant_windows' is empty"),
])
def test_bad_prediction_files(tmp_path, lines, match):
  path = tmp_path / "p.jsonl"
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(ValueError, match=match):
    predictions.read_predictions(path)


def test_bad_ground_truth_and_missing_files(tmp_path):
  gt = tmp_path / "g.jsonl"
  gt.write_text('{"qid": 1, "relevant_windows": []}\n')
  with pytest.raises(ValueError, match=r"g\.jsonl:1 \(qid 1\): 'relevant_windows' is empty"):
    predictions.read_ground_truth(gt)
  gt.write_text('{"qid": 1, "relevant_windows": [[0, 2]]}\n{"qid": 2, "relevant_windows": [[-1, 2]]}\n')
  with pytest.raises(ValueError, match=r"g\.jsonl:2 \(qid 2\): 'relevant_windows' window \[-1, 2\] starts before 0 s"):
    predictions.read_ground_truth(gt)
  with pytest.raises(FileNotFoundError, match="nope.jsonl"):
    scorer.score_files(tmp_path / "nope.jsonl", gt)
  with pytest.raises(ValueError, match="row 0.*missing key 'pred_relevant_windows'"):
    predictions.write_predictions(tmp_path / "w.jsonl", [{"qid": 1}])
  assert not (tmp_path / "w.jsonl").exists()


def test_qvh_style_ground_truth_gets_qvh_metrics(tmp_path):
  gt = [{"qid": 1, "duration": 20, "relevant_windows": [[0, 4], [10, 14]],
         "relevant_clip_ids": [0, 1, 5, 6], "saliency_scores": [[4, 4, 4], [2, 2, 2], [3, 3, 1], [0, 1, 0]]}]
  rows = [{"qid": 1, "pred_relevant_windows": [[0, 4, 0.9], [10, 14, 0.8]],
           "pred_saliency_scores": [0.9, 0.1, 0, 0, 0, 0.5, 0.4, 0, 0, 0]}]
  gt_path = tmp_path / "g.jsonl"
  gt_path.write_text(json.dumps(gt[0]) + "\n")
  got = scorer.score_files(predictions.write_predictions(tmp_path / "p.jsonl", rows), gt_path)
  q = got["qvhighlights"]
  assert q["full"]["MR-mAP"]["average"] == 100.0 and q["full"]["MR-R1"]["0.95"] == 100.0
  # VeryGood (>= 4): only clip 0 is positive and it is ranked first -> AP 1, hit
  assert q["HL-min-VeryGood"] == {"HL-mAP": 100.0, "HL-Hit1": 100.0}
  # Fair (>= 2): clips 0, 1, 5 (rater 1); ranking 0 (.9), 5 (.5), 6 (.4), 1 (.1) -> AP (1 + 1 + 3/4) / 3
  fair_r1 = (1 + 1 + 0.75) / 3
  # rater 2 same as rater 1; rater 3 positives 0, 1 -> ranks 1, 4 -> (1 + 2/4) / 2
  fair_r3 = (1 + 0.5) / 2
  assert q["HL-min-Fair"]["HL-mAP"] == round(100 * (2 * fair_r1 + fair_r3) / 3, 2)


def test_qids_that_differ_only_in_type_say_so(tmp_path):
  gt_path = tmp_path / "g.jsonl"
  gt_path.write_text('{"qid": 1, "relevant_windows": [[0, 2]]}\n')
  p = tmp_path / "p.jsonl"
  p.write_text('{"qid": "1", "pred_relevant_windows": [[0, 2, 0.5]]}\n')
  with pytest.raises(ValueError, match=r"differ from a ground-truth qid only in type, e\.g\. "
                     r"prediction '1' vs ground truth 1"):
    scorer.score_files(p, gt_path)


def test_windows_out_of_score_order_are_counted_in_a_warning(tmp_path, caplog):
  """R@k takes windows in the order listed (moment_detr's convention); a file that lists
  them otherwise scores what it lists, and the warning says how many queries do."""
  gt_path = tmp_path / "g.jsonl"
  gt_path.write_text("".join(json.dumps({"qid": q, "relevant_windows": [[0, 2]]}) + "\n" for q in (1, 2, 3)))
  rows = [{"qid": 1, "pred_relevant_windows": [[5, 9, 0.1], [0, 2, 0.9]]},  # out of order
          {"qid": 2, "pred_relevant_windows": [[0, 2, 0.9], [5, 9, 0.9]]},  # tie: in order
          {"qid": 3, "pred_relevant_windows": [[0, 2, 0.9], [5, 9, 0.1]]}]
  got = scorer.score_files(predictions.write_predictions(tmp_path / "p.jsonl", rows), gt_path)
  assert got["R1@0.7"] == pytest.approx(200 / 3)  # qid 1's first listed window misses
  assert "1 of 3 queries list their windows out of score order" in caplog.text


def test_saliency_of_another_length_is_scored_as_moment_detr_with_a_counted_warning(caplog):
  """moment_detr pads a short pred_saliency_scores with 0 and cuts a long one (its sample
  predictions are one clip short on 13 queries); a warning counts such queries, since
  saliency per model step that is not per 2 s clip scores misaligned clips."""
  gt = [{"qid": q, "duration": 20, "relevant_windows": [[0, 4]], "relevant_clip_ids": [0, 1],
         "saliency_scores": [[4, 4, 4], [4, 4, 4]]} for q in (1, 2, 3)]
  rows = [{"qid": 1, "pred_relevant_windows": [[0, 4, 1]], "pred_saliency_scores": [0.9, 0.8] + [0] * 8},
          {"qid": 2, "pred_relevant_windows": [[0, 4, 1]], "pred_saliency_scores": [0.9, 0.8]},
          {"qid": 3, "pred_relevant_windows": [[0, 4, 1]], "pred_saliency_scores": [0.9, 0.8] + [0] * 12}]
  got = scorer.score_predictions(rows, gt, qvh=True)["qvhighlights"]
  assert got["HL-min-VeryGood"] == {"HL-mAP": 100.0, "HL-Hit1": 100.0}
  assert ("2 of 3 queries have pred_saliency_scores of another length than their 2 s clips"
          " (int(duration / 2)): 1 shorter, padded with 0; 1 longer, cut") in caplog.text


def test_in_memory_rows_with_a_repeated_qid_are_an_error():
  gt = [{"qid": 1, "relevant_windows": [[0, 2]]}]
  rows = [{"qid": 1, "pred_relevant_windows": [[0, 2, 0.9]]}, {"qid": 1, "pred_relevant_windows": [[5, 9, 0.9]]}]
  with pytest.raises(ValueError, match=r"run: 1 qids have more than one prediction row, e.g. \[1\]"):
    scorer.score_predictions(rows, gt, source="run")


def test_a_qid_of_another_video_is_an_error(tmp_path):
  """qids count from 0 in every split: predictions of another split must not score against
  this one's ground truth because their qids happen to match."""
  gt_path = tmp_path / "g.jsonl"
  gt_path.write_text("".join(json.dumps({"qid": q, "vid": v, "relevant_windows": [[0, 2]]}) + "\n"
                             for q, v in ((0, "a"), (1, "b"))))
  p = tmp_path / "p.jsonl"
  p.write_text('{"qid": 0, "vid": "a", "pred_relevant_windows": [[0, 2, 0.5]]}\n'
               '{"qid": 1, "vid": "c", "pred_relevant_windows": [[0, 2, 0.5]]}\n')
  with pytest.raises(ValueError, match=r"1 predicted qids name another video than the ground truth's,"
                     r" e\.g\. qid 1: 'c' vs 'b'"):
    scorer.score_files(p, gt_path)
  p.write_text('{"qid": 0, "pred_relevant_windows": [[0, 2, 0.5]]}\n'  # no vid: qids alone
               '{"qid": 1, "vid": "b", "pred_relevant_windows": [[0, 2, 0.5]]}\n')
  assert scorer.score_files(p, gt_path)["R1@0.7"] == 100.0

"""R@k / mIoU and the QVHighlights protocol against brute-force references and hand cases."""

import numpy as np
import pytest

from cimha_tf.evaluation import metrics
from cimha_tf.evaluation import qvhighlights as qv


def iou_scalar(a, b):
  inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
  union = (a[1] - a[0]) + (b[1] - b[0]) - inter
  if union == 0:
    return 1.0 if (a[0], a[1]) == (b[0], b[1]) else 0.0
  return inter / union


def rand_windows(rng, n, duration=30.0):
  """Random [s, e] windows on a 0.5 s grid (exact ties and zero-length windows happen)."""
  a = rng.integers(0, int(duration * 2), size=(n, 2)) / 2.0
  return np.sort(a, axis=1)


def test_temporal_iou_hand_cases():
  a = np.array([[0.0, 10.0]])
  b = np.array([[5.0, 15.0], [20.0, 30.0], [2.0, 4.0], [0.0, 10.0], [10.0, 12.0]])
  np.testing.assert_allclose(metrics.temporal_iou(a, b)[0], [5 / 15, 0.0, 0.2, 1.0, 0.0])
  # zero-length: same point -> 1, inside a window -> 0 (no length in common), elsewhere -> 0
  z = np.array([[3.0, 3.0]])
  np.testing.assert_allclose(metrics.temporal_iou(z, [[3.0, 3.0], [0.0, 10.0], [4.0, 4.0]])[0],
                             [1.0, 0.0, 0.0])


def test_temporal_iou_matches_brute_force():
  rng = np.random.default_rng(0)
  a, b = rand_windows(rng, 40), rand_windows(rng, 30)
  a = np.r_[a, [[3.0, 3.0], [5.0, 5.0], [4.0, 6.0]]]  # zero-length, identical and touching
  b = np.r_[b, [[3.0, 3.0], [6.0, 9.0]]]
  got = metrics.temporal_iou(np.c_[a, rng.random(len(a))], b)  # score column ignored
  want = np.array([[iou_scalar(x, y) for y in b] for x in a])
  np.testing.assert_allclose(got, want, atol=1e-12)


def brute_moment_metrics(preds, gts, ks=(1, 5), thds=(0.3, 0.5, 0.7)):
  out = {}
  for k in ks:
    for t in thds:
      hits = [any(max(iou_scalar(p, g) for g in gt) >= t for p in pred[:k])
              for pred, gt in zip(preds, gts)]
      out[f"R{k}@{t}"] = 100.0 * sum(hits) / len(hits)
  out["mIoU"] = 100.0 * np.mean([max(iou_scalar(pred[0], g) for g in gt)
                                 for pred, gt in zip(preds, gts)])
  return out


def test_moment_metrics_matches_brute_force():
  rng = np.random.default_rng(1)
  preds = [rand_windows(rng, int(rng.integers(1, 8))) for _ in range(200)]
  gts = [rand_windows(rng, int(rng.integers(1, 4))) for _ in range(200)]
  got = metrics.moment_metrics(preds, gts)
  assert list(got) == ["R1@0.3", "R1@0.5", "R1@0.7", "R5@0.3", "R5@0.5", "R5@0.7", "mIoU"]
  want = brute_moment_metrics(preds, gts)
  for key in got:
    assert got[key] == pytest.approx(want[key], abs=1e-9), key
  assert 0 < got["R1@0.3"] < got["R5@0.3"] < 100  # the data is not degenerate


def test_moment_metrics_hand_case():
  gts = [np.array([[10.0, 20.0]]), np.array([[0.0, 4.0], [50.0, 60.0]])]
  preds = [np.array([[12.0, 20.0], [0.0, 1.0]]),         # IoU 0.8 at top-1
           np.array([[30.0, 40.0], [52.0, 60.0], [50.0, 56.0]])]  # top-1 miss; 2nd: 0.8 with GT 2
  m = metrics.moment_metrics(preds, gts)
  assert m["R1@0.7"] == 50.0 and m["R1@0.3"] == 50.0
  assert m["R5@0.7"] == 100.0  # fewer than 5 predictions: uses what exists
  assert m["mIoU"] == pytest.approx(40.0)
  m = metrics.moment_metrics(preds, gts, num_missing=2)  # two more queries, both misses
  assert m["R5@0.7"] == 50.0 and m["mIoU"] == pytest.approx(20.0)


@pytest.mark.parametrize("preds, gts, match", [
    ([], [], "empty prediction list"),
    ([np.zeros((0, 2))], [np.array([[0.0, 1.0]])], r"pred_windows\[0\]: no windows"),
    ([np.array([[0.0, np.nan]])], [np.array([[0.0, 1.0]])], "non-finite"),
    ([np.array([[5.0, 1.0]])], [np.array([[0.0, 1.0]])], "start > end"),
    ([np.array([[0.0, 1.0]])], [np.array([[0.0, 1.0, 2.0, 3.0]])], r"gt_windows\[0\].*shape"),
    ([np.array([[0.0, 1.0]])] * 2, [np.array([[0.0, 1.0]])], "2 predictions but 1"),
])
def test_moment_metrics_bad_input(preds, gts, match):
  with pytest.raises(ValueError, match=match):
    metrics.moment_metrics(preds, gts)


def test_recall_curve_agrees_with_metrics():
  rng = np.random.default_rng(2)
  preds = [rand_windows(rng, 1) for _ in range(100)]
  gts = [rand_windows(rng, 1) for _ in range(100)]
  curve = metrics.recall_at_1_curve(preds, gts, thresholds=(0.1, 0.3, 0.5, 0.7, 0.9))
  m = metrics.moment_metrics(preds, gts)
  np.testing.assert_allclose(curve[[1, 2, 3]], [m["R1@0.3"], m["R1@0.5"], m["R1@0.7"]])
  assert np.all(np.diff(curve) <= 0)


# ------------------------------------------------------------ QVHighlights references

def ref_detection_ap(pred, gt, thds):
  """moment_detr's loop (ActivityNet matching + VOC 2011 interpolation), written plainly."""
  order = sorted(range(len(pred)), key=lambda i: -pred[i][2])
  aps = []
  for t in thds:
    used, tp = set(), []
    for i in order:
      cands = sorted(((iou_scalar(pred[i], g), j) for j, g in enumerate(gt)), key=lambda x: -x[0])
      match = next((j for v, j in cands if v >= t and j not in used), None)
      if match is not None:
        used.add(match)
      tp.append(match is not None)
    prec = [sum(tp[:n + 1]) / (n + 1) for n in range(len(tp))]
    rec = [sum(tp[:n + 1]) / len(gt) for n in range(len(tp))]
    # area under the precision envelope: at each recall step, the best precision at or after it
    ap, prev_r = 0.0, 0.0
    for n in range(len(tp)):
      if rec[n] > prev_r:
        ap += (rec[n] - prev_r) * max(prec[n:])
        prev_r = rec[n]
    aps.append(ap)
  return np.array(aps)


def test_detection_ap_hand_cases():
  gt = np.array([[10.0, 20.0]])
  good, bad = [10.0, 20.0], [40.0, 50.0]
  np.testing.assert_allclose(qv.detection_ap(np.array([good + [0.9], bad + [0.5]]), gt), 1.0)
  np.testing.assert_allclose(qv.detection_ap(np.array([good + [0.5], bad + [0.9]]), gt), 0.5)
  # two GT windows, one found: recall 0.5 at precision 1
  gt2 = np.array([[10.0, 20.0], [60.0, 70.0]])
  np.testing.assert_allclose(qv.detection_ap(np.array([good + [0.9]]), gt2), 0.5)
  # a duplicate of a matched window is a false positive
  np.testing.assert_allclose(qv.detection_ap(np.array([good + [0.9], good + [0.8]]), gt), 1.0)
  assert qv.detection_ap(np.zeros((0, 3)), gt).tolist() == [0.0] * 10


def test_detection_ap_matches_reference():
  rng = np.random.default_rng(3)
  preds, gts = [], []
  for _ in range(150):
    n = int(rng.integers(0, 11))  # includes queries without predictions
    preds.append(np.c_[rand_windows(rng, n, 20), rng.integers(0, 4, n) / 4.0])  # tied scores
    gt = rand_windows(rng, int(rng.integers(1, 4)), 20)
    gts.append(gt[gt[:, 1] > gt[:, 0]])
  want = np.array([ref_detection_ap(p, g, qv.IOU_THRESHOLDS) if len(p) and len(g) else np.zeros(10)
                   for p, g in zip(preds, gts)])
  np.testing.assert_allclose(qv.detection_ap_batch(preds, gts), want, atol=1e-12)  # all at once
  for i in (0, 1, 2):
    np.testing.assert_allclose(qv.detection_ap(preds[i], gts[i]), want[i], atol=1e-12)
  assert 0 < want.mean() < 1 and (np.array([len(g) for g in gts]) > 1).sum() > 30


def ref_saliency_ap(y, s):
  """moment_detr's get_ap with sklearn's precision_recall_curve, by explicit loops."""
  if len(set(y)) == 1:
    return float(y[0] == 1)
  thresholds = sorted(set(s), reverse=True)
  pos = sum(y)
  prec, rec = [], []
  for t in thresholds:  # descending threshold = growing prediction set
    tp = sum(1 for yi, si in zip(y, s) if si >= t and yi == 1)
    n = sum(1 for si in s if si >= t)
    prec.append(tp / n)
    rec.append(tp / pos)
  prec, rec = prec[::-1] + [1.0], rec[::-1] + [0.0]  # sklearn order: increasing threshold
  for i in range(1, len(prec)):
    prec[i] = max(prec[i - 1], prec[i])
  picked = [prec[i] for i in range(len(rec) - 1) if rec[i] != rec[i + 1]]
  return float(np.mean(picked))


def test_saliency_ap_hand_case_and_reference():
  y = np.array([[1.0], [0.0], [1.0]])
  assert qv.saliency_ap(y, [0.9, 0.8, 0.7])[0] == pytest.approx(5 / 6)
  assert qv.saliency_ap(np.zeros((4, 1)), [1, 2, 3, 4])[0] == 0.0
  assert qv.saliency_ap(np.ones((4, 1)), [1, 2, 3, 4])[0] == 1.0
  rng = np.random.default_rng(4)
  for _ in range(100):
    n = int(rng.integers(2, 30))
    y = (rng.random((n, 3)) < rng.random()).astype(float)
    s = rng.integers(0, 6, n) / 5.0  # ties
    got = qv.saliency_ap(y, s)
    want = [ref_saliency_ap(list(y[:, c]), list(s)) for c in range(3)]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_eval_submission_missing_query_is_a_miss():
  gt = [{"qid": 1, "relevant_windows": [[0, 10], [20, 40]]},
        {"qid": 2, "relevant_windows": [[50, 60]]}]
  sub = [{"qid": 1, "pred_relevant_windows": [[0, 10, 0.9], [20, 40, 0.8]]}]
  m = qv.eval_submission(sub, gt)
  assert m["full"]["MR-R1"]["0.5"] == 50.0 and m["full"]["MR-mAP"]["average"] == 50.0
  assert "HL-min-Fair" not in m and set(m) == {"brief", "full", "short", "middle"}
  with pytest.raises(ValueError, match="not in the ground truth"):
    qv.eval_submission(sub + [{"qid": 9, "pred_relevant_windows": [[0, 1, 1]]}], gt)


def test_gt_saliency_bad_clip_ids():
  row = {"qid": 7, "duration": 10, "relevant_clip_ids": [4, 5], "saliency_scores": [[1, 2, 3]] * 2}
  with pytest.raises(ValueError, match=r"qid 7: relevant_clip_ids outside \[0, 5\)"):
    qv.gt_saliency(row)
  with pytest.raises(ValueError, match="'saliency_scores' missing"):
    qv.gt_saliency({"qid": 7, "duration": 10, "relevant_clip_ids": []})

"""predict_video's long-video modes (pool, overlapping windows + NMS), on a stand-in model
whose curves are known: features mark a planted moment, the stand-in finds its rise and
fall in whatever stretch of clips it is given."""

import numpy as np
import pytest

from cimha_tf.deploy import video_predictor as vp
from cimha_tf.video.recipe import Recipe


class Planted:
  """A predictor stand-in: inside = feature 0; start mass on a clip whose predecessor in
  the stretch is outside (a rise), end mass on a clip whose successor is outside."""
  video_dim = 4

  def __init__(self, max_video_len):
    self.max_video_len = max_video_len
    self.calls = []

  def check_features(self, features, source):
    return np.asarray(features, np.float32)

  def unknown_words(self, query):
    return []

  def curves(self, features, queries, duration):
    self.calls.append((features.shape[0], len(queries), duration))
    inside = features[:, 0].astype(np.float64)
    prev = np.concatenate([[np.nan], inside[:-1]])
    nxt = np.concatenate([inside[1:], [np.nan]])
    start = np.where((inside == 1) & (prev == 0), 1.0, 1e-3)
    end = np.where((inside == 1) & (nxt == 0), 1.0, 1e-3)
    rows = lambda x: np.repeat((x / x.sum())[None], len(queries), 0).astype(np.float32)
    return {"start_probs": rows(start), "end_probs": rows(end),
            "inside_probs": np.repeat(inside[None], len(queries), 0).astype(np.float32)}


def _video(n, moment, clip_s=2.0):
  feats = np.zeros((n, 4), np.float32)
  feats[moment[0]:moment[1] + 1, 0] = 1.0
  return vp.EncodedVideo("planted.mp4", feats, n * clip_s, Recipe("x", output_dim=4),
                         {"load_extractor": 0.0, "decode": 0.0, "embed": 0.0}, {})


def test_window_starts_cover_every_clip_and_end_on_the_last():
  assert vp.window_starts(10, 16) == [0]
  assert vp.window_starts(40, 16) == [0, 8, 16, 24]
  assert vp.window_starts(41, 16) == [0, 8, 16, 24, 25]
  for n, length, overlap in ((100, 16, 0.5), (37, 8, 0.25), (129, 128, 0.5)):
    starts = vp.window_starts(n, length, overlap)
    covered = np.zeros(n, int)
    for s in starts:
      covered[s:s + length] += 1
    assert covered.min() >= 1 and starts[-1] + length == n


def test_temporal_nms_against_a_hand_worked_case():
  windows = [[0, 10, 0.5], [1, 10, 0.9], [20, 30, 0.8], [0, 4, 0.7], [21, 29, 0.1]]
  # [1,10] (0.9) kept; [20,30] kept; [0,4]: IoU with [1,10] = 3/10 < 0.5 kept;
  # [0,10]: IoU 9/10 with [1,10] suppressed; [21,29]: IoU 8/10 with [20,30] suppressed
  assert vp.temporal_nms(windows, 0.5) == [[1, 10, 0.9], [20, 30, 0.8], [0, 4, 0.7]]
  assert len(vp.temporal_nms(windows, 1.01)) == 5


def test_window_mode_finds_a_moment_beyond_max_video_len():
  L, n, moment = 16, 60, (41, 47)
  model = Planted(L)
  result = vp.predict_video(model, _video(n, moment), ["q1", "q2"], top_k=3, long_video="window")
  assert result["mode"] == "window" and result["windows"] == len(vp.window_starts(n, L))
  assert all(c == (L, 2, L * 2.0) for c in model.calls)  # the queries batched per window
  for p in result["predictions"]:
    best = p["pred_relevant_windows"][0]
    assert best[:2] == [moment[0] * 2.0, (moment[1] + 1) * 2.0]
    # saliency: every window reports the indicator, so the mean is the indicator
    expected = np.zeros(n)
    expected[moment[0]:moment[1] + 1] = 1
    np.testing.assert_allclose(p["pred_saliency_scores"], expected)
    # NMS: no two returned windows overlap at IoU >= 0.5
    ws = p["pred_relevant_windows"]
    assert all(vp._iou(a, b) < 0.5 for i, a in enumerate(ws) for b in ws[i + 1:])


def test_pool_mode_pools_and_spreads_saliency_back_to_clips():
  from cimha_tf.data.pooling import pool_to_max_len
  L, n = 16, 40
  video = _video(n, (20, 29))
  model = Planted(L)
  result = vp.predict_video(model, video, ["q"], top_k=2, long_video="pool")
  assert result["mode"] == "pool" and model.calls == [(L, 1, n * 2.0)]
  pooled = pool_to_max_len(video.features, L)[:, 0]
  bins = [(k * n) // L for k in range(L)] + [n]
  expected = np.concatenate([[pooled[k]] * (bins[k + 1] - bins[k]) for k in range(L)])
  np.testing.assert_allclose(result["predictions"][0]["pred_saliency_scores"], expected, atol=1e-4)
  # short videos run whole
  short = vp.predict_video(Planted(L), _video(10, (3, 5)), ["q"], long_video="window")
  assert short["mode"] == "full" and short["predictions"][0]["pred_relevant_windows"][0][:2] == [6.0, 12.0]


def test_a_model_without_a_recipe_refuses_a_video():
  model = Planted(16)
  with pytest.raises(ValueError, match="records no feature recipe.*I3D"):
    vp.encode_video(model, "any.mp4")
  model.feature_recipe = Recipe("clip_vit_b32").to_dict()

  class Extractor:
    recipe = Recipe("clip_vit_b32", weights="random", random_weights=True, seed=0)
  with pytest.raises(ValueError, match="random_weights.*It needs: clip_vit_b32.*weights clip_vit_base_patch32"):
    vp.encode_video(model, "any.mp4", extractor=Extractor())
  model.feature_recipe = Recipe("i3d", clip_seconds=1.0, output_dim=1024).to_dict()
  with pytest.raises(ValueError, match="features of the user extractor 'i3d'"):
    vp.encode_video(model, "any.mp4")

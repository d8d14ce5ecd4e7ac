"""cimha_tf.video: frame choice by timestamps, pixels, the recipe, the extractors, and every
bad input named. Odd videos are written by the tests with PyAV (tiny, lossless); the real
sample is ../shared/data/sample_video (skipped when absent)."""

import io
import json
import os
from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av")

from cimha_tf.video import decode, extract, extractor as extractor_lib  # noqa: E402
from cimha_tf.video.recipe import CLIP_MEAN, CLIP_STD, Recipe, check_compatible, differences  # noqa: E402

SMALL = Recipe("test", size=16, output_dim=3)


# ---------------------------------------------------------------- test videos
# Tiny videos written with PyAV: each frame a uniform grey whose level encodes the frame's
# index (lossless codecs), so a test can tell which frame the decoder chose.

SAMPLE = "sample_video/charades_sample.mp4"
SAMPLE_FEATURES = "sample_video/charades_sample_clip_vid.npz"


def level(i):
  """The grey level of frame i (distinct for i < 64, 4 levels apart)."""
  return (i * 4) % 256


def write_video(path, times_s, width=64, height=36, fmt="matroska", codec="ffv1",
                pix_fmt="yuv444p", frames=None, rotation=None, seekable=True, fps=25):
  """A video whose frame i shows at times_s[i] seconds (millisecond time base); `frames`
  (uint8 HxWx3 each) overrides the grey frames. seekable=False writes through a pipe-like
  object, so the container gets no duration in its header. Returns path."""
  import av
  target = open(path, "wb") if seekable else _Unseekable(path)
  try:
    out = av.open(target, "w", format=fmt)
    stream = out.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    tb = Fraction(1, 1000)
    stream.time_base = tb
    stream.codec_context.time_base = tb
    if rotation is not None:
      stream.set_display_rotation(rotation)
    for i, t in enumerate(times_s):
      img = frames[i] if frames is not None else np.full((height, width, 3), level(i), np.uint8)
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
      frame = frame.reformat(format=pix_fmt)
      frame.pts = int(round(t * 1000))
      frame.time_base = tb
      for packet in stream.encode(frame):
        out.mux(packet)
    for packet in stream.encode():
      out.mux(packet)
    out.close()
  finally:
    target.close()
  return path


class _Unseekable(io.RawIOBase):
  def __init__(self, path):
    self._f = open(path, "wb")

  def writable(self):
    return True

  def seekable(self):
    return False

  def write(self, b):
    return self._f.write(b)

  def close(self):
    if not self._f.closed:
      self._f.close()
    super().close()


def write_audio_only(path, seconds=1.0, rate=8000):
  import av
  out = av.open(path, "w", format="wav")
  stream = out.add_stream("pcm_s16le", rate=rate)
  stream.layout = "mono"
  frame = av.AudioFrame.from_ndarray(np.zeros((1, int(rate * seconds)), np.int16), format="s16",
                                     layout="mono")
  frame.sample_rate = rate
  for packet in stream.encode(frame):
    out.mux(packet)
  for packet in stream.encode():
    out.mux(packet)
  out.close()
  return path


def decoded_levels(frames):
  """The frame index each uniform grey frame shows (inverse of level)."""
  return [int(round(float(np.mean(f)) / 4)) for f in frames]



def _clips(path, recipe=SMALL, **kw):
  reader = decode.ClipReader(path, recipe, **kw)
  times, frames = [], []
  for t, f in reader.batches(7):
    times += list(t)
    frames += list(f)
  return reader, np.asarray(times), np.asarray(frames)


def _expected_choice(times, end, clip):
  """The fps filter's choice, written independently of decode.select_clips: clip n shows
  the last frame with t < clip * (n + 1/2) (round half away from zero of t / clip <= n),
  for n from round(t_first / clip) up to round(end / clip)."""
  times = np.asarray(times, np.float64)
  r = lambda x: int(np.floor(x + 0.5))  # times are >= 0 here
  first, last = r(times[0] / clip), r(end / clip)
  return [int(np.searchsorted(times, clip * (n + 0.5), side="left")) - 1 for n in range(first, last)]


# ---------------------------------------------------------------- frame choice

def test_sample_video_gives_15_clips_at_the_fps_filter_times(shared_data):
  path = shared_data / SAMPLE
  reader, times, frames = _clips(path, Recipe("clip_vit_b32"))
  assert frames.shape == (15, 224, 224, 3) and frames.dtype == np.uint8
  assert np.load(shared_data / SAMPLE_FEATURES)["features"].shape == (15, 512)
  # every frame's time, read independently of the reader
  with av.open(str(path)) as c:
    all_t = [float(f.pts * f.time_base) for f in c.decode(video=0)]
    last_duration = 1 / float(c.streams.video[0].average_rate)
  assert reader.duration == pytest.approx(all_t[-1] + last_duration, abs=1e-6)
  assert reader.duration == pytest.approx(30.697, abs=1e-3)
  chosen = _expected_choice(all_t, reader.duration, 2.0)
  np.testing.assert_allclose(times, [all_t[i] for i in chosen], atol=1e-9)
  # the frame just before the middle of each 2 s clip: 0.934 s, 2.936 s, ...
  assert times[0] == pytest.approx(14 * 1001 / 15000) and all(2 * n + 0.9 < t < 2 * n + 1
                                                             for n, t in enumerate(times))


def test_variable_frame_rate_and_gaps_choose_by_timestamp(tmp_path):
  times = [0, 0.5, 0.9, 1.2, 3.7, 4.05, 9.0, 9.3, 13.0]  # a 4.95 s gap, a 3.7 s one
  path = write_video(str(tmp_path / "vfr.mkv"), times, width=65, height=37)
  reader, got_t, frames = _clips(path)
  end = 13.0 + 0.04  # the muxer's last frame lasts one period at the stream's 25 fps
  assert reader.duration == pytest.approx(end)
  expected = _expected_choice(times, end, 2.0)
  assert decoded_levels(frames) == expected == [2, 3, 5, 5, 5, 7, 7]
  np.testing.assert_allclose(got_t, [times[i] for i in expected])
  # the pure function agrees with the streaming one
  assert [i for _, i in decode.select_clips([Fraction(t).limit_denominator(1000) for t in times],
                                            Fraction(1304, 100), 2)] == expected


def test_missing_header_duration_uses_the_frames(tmp_path):
  times = [i * 0.1 for i in range(51)]
  path = write_video(str(tmp_path / "nohead.mkv"), times, seekable=False)
  reader, got_t, frames = _clips(path)
  assert reader.info["header_duration"] is None
  assert reader.duration == pytest.approx(5.04) and len(frames) == 3  # round(5.04 / 2) = 3
  assert decoded_levels(frames) == _expected_choice(times, 5.04, 2.0)


def test_short_video_follows_heros_denser_rate(tmp_path):
  path = write_video(str(tmp_path / "short.mkv"), [i / 25 for i in range(37)])  # 1.48 s
  reader, times, _ = _clips(path)
  assert reader.clip_seconds() == Fraction(1, 2)  # fps = 2 / max(int(1.48), 1) = 2
  assert len(times) == 3  # round(1.48 / 0.5)
  path = write_video(str(tmp_path / "tiny.mkv"), [0, 0.04, 0.08])  # 0.12 s: not half a clip
  reader, times, frames = _clips(path)
  assert len(frames) == 1 and reader.repairs == {"one_clip": 1} and decoded_levels(frames) == [2]


def test_truncated_matroska_is_repaired_with_a_count(tmp_path):
  path = write_video(str(tmp_path / "full.mkv"), [i * 0.1 for i in range(100)])
  data = open(path, "rb").read()
  cut = tmp_path / "cut.mkv"
  cut.write_bytes(data[:len(data) // 2])
  reader, times, frames = _clips(str(cut))
  assert reader.info["header_duration"] == pytest.approx(9.94, abs=0.05)
  assert reader.repairs == {"header_duration_mismatch": 1}
  assert 2 <= len(frames) <= 3 and reader.duration < 6


# ---------------------------------------------------------------- pixels

def test_pixels_equal_an_independent_numpy_crop(tmp_path):
  """A frame whose short side is already `size` is not resampled: the output must be the
  frame's centre crop, offsets int((W - size) / 2), exactly (rgb24 through png is lossless)."""
  rng = np.random.default_rng(0)
  frames = [rng.integers(0, 256, (16, 31, 3), dtype=np.uint8) for _ in range(3)]
  path = write_video(str(tmp_path / "rgb.mov"), [0, 1.5, 3.2], width=31, height=16, fmt="mov",
                     codec="png", pix_fmt="rgb24", frames=frames)
  _, _, got = _clips(path)
  x = int((31 - 16) / 2.0)
  expected = [frames[i][:, x:x + 16] for i in _expected_choice([0, 1.5, 3.2], 3.24, 2.0)]
  np.testing.assert_array_equal(got, np.asarray(expected))


def test_odd_sizes_and_portrait_keep_a_uniform_frame_exact(tmp_path):
  for w, h in ((101, 57), (57, 101), (17, 17)):
    path = write_video(str(tmp_path / f"odd{w}x{h}.mkv"), [0, 2, 4, 6], width=w, height=h)
    _, _, frames = _clips(path, Recipe("test", size=24, output_dim=3))
    assert frames.shape == (3, 24, 24, 3)
    assert decoded_levels(frames) == [0, 1, 2]
    assert all(np.ptp(f) <= 1 for f in frames)  # uniform in, uniform out (after scaling)


def test_rotation_metadata_is_applied(tmp_path):
  img = np.zeros((32, 64, 3), np.uint8)
  img[:, :32] = 255  # the left half white
  plain = write_video(str(tmp_path / "plain.mp4"), [0, 1], 64, 32, fmt="mp4", codec="mpeg4",
                      pix_fmt="yuv420p", frames=[img, img])
  rotated = write_video(str(tmp_path / "rot.mp4"), [0, 1], 64, 32, fmt="mp4", codec="mpeg4",
                        pix_fmt="yuv420p", frames=[img, img], rotation=90)
  _, _, a = _clips(plain)
  _, _, b = _clips(rotated)
  # unrotated: left half of the crop white; rotated 90 deg counter-clockwise (as players
  # show it): the left edge goes to the bottom, so the crop's bottom half is white
  assert a[0][:, :6].mean() > 200 and a[0][:, 10:].mean() < 50
  assert b[0][10:].mean() > 200 and b[0][:6].mean() < 50


def test_preprocess_equals_an_independent_numpy_implementation():
  rng = np.random.default_rng(1)
  frames = rng.integers(0, 256, (3, 5, 4, 3), dtype=np.uint8)
  recipe = Recipe("clip_vit_b32")
  got = extractor_lib.preprocess(frames, recipe)
  expected = np.empty(frames.shape, np.float64)
  for c, (m, s) in enumerate(zip(CLIP_MEAN, CLIP_STD)):  # lighthouse's Normalize, per channel
    expected[..., c] = (frames[..., c] / 255.0 - m) / (s + 1e-8)
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- bad input

def test_bad_inputs_are_named_errors(tmp_path):
  text = tmp_path / "notes.mp4"
  text.write_text("not a video")
  wav = write_audio_only(str(tmp_path / "sound.wav"))
  from PIL import Image
  Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "still.png")
  ten_hours = write_video(str(tmp_path / "ten_hours.mkv"), [0, 18000, 36000], 16, 16)
  cases = {str(text): "not_a_video", wav: "no_video_stream",
           str(tmp_path / "still.png"): "still_image", ten_hours: "too_long",
           str(tmp_path / "absent.mp4"): "missing"}
  for path, reason in cases.items():
    with pytest.raises(decode.VideoError) as e:
      _clips(path)
    assert e.value.reason == reason and os.path.basename(path) in str(e.value)
  assert "max_video_seconds" in str(pytest.raises(decode.VideoError, _clips, ten_hours).value)


def test_truncated_mp4_and_zero_frames(tmp_path, shared_data):
  data = (shared_data / SAMPLE).read_bytes()
  cut = tmp_path / "cut.mp4"
  cut.write_bytes(data[:len(data) // 2])  # its index (moov) is at the end: gone
  with pytest.raises(decode.VideoError, match="cut.mp4: not a readable video") as e:
    decode.ClipReader(cut, SMALL)
  assert e.value.reason == "not_a_video"
  # an H.264 stream without its key frame: the stream opens, no frame decodes
  h264 = write_video(str(tmp_path / "h.mkv"), [i / 25 for i in range(20)], codec="libx264",
                     pix_fmt="yuv420p")
  with av.open(h264) as src, av.open(str(tmp_path / "nokey.mkv"), "w", format="matroska") as out:
    stream = out.add_stream_from_template(src.streams.video[0])
    for packet in src.demux(video=0):
      if packet.dts is not None and not packet.is_keyframe:
        packet.stream = stream
        out.mux(packet)
  with pytest.raises(decode.VideoError, match="nokey.mkv: the video stream has no decodable") as e:
    _clips(str(tmp_path / "nokey.mkv"))
  assert e.value.reason == "no_frames"


def test_a_ten_hour_video_streams_when_allowed(tmp_path):
  """Memory holds one batch: 18,000 clips of a 10-hour video come in batches of 256."""
  path = write_video(str(tmp_path / "ten_hours.mkv"), [0, 18000, 36000], 16, 16)
  reader = decode.ClipReader(path, SMALL, max_seconds=11 * 3600)
  sizes, levels = [], set()
  for _, frames in reader.batches(256):
    sizes.append(len(frames))
    levels.update(decoded_levels(frames))
  assert sum(sizes) == 18000 and max(sizes) == 256 and levels == {0, 1}
  # without a header duration the limit is enforced while decoding
  nohead = write_video(str(tmp_path / "nohead.mkv"), [0, 18000, 36000], 16, 16, seekable=False)
  with pytest.raises(decode.VideoError, match="frames past 10800 s") as e:
    _clips(nohead)
  assert e.value.reason == "too_long"


def test_missing_weights_name_the_preset_and_how_to_get_it(tmp_path):
  for weights in (str(tmp_path / "no_such_dir"), str(tmp_path), str(tmp_path / "x.weights.h5")):
    with pytest.raises(extractor_lib.WeightsError) as e:
      extractor_lib.clip_vit_b32(weights)
    message = str(e.value)
    assert weights in message and "clip_vit_base_patch32" in message and "save_to_preset" in message


# ---------------------------------------------------------------- the recipe

def test_recipe_round_trip_and_mismatch_messages(tmp_path):
  real = Recipe("clip_vit_b32")
  assert Recipe.from_json(real.to_json()) == real
  real.save(str(tmp_path))
  assert Recipe.load(str(tmp_path)) == real
  rand = Recipe("clip_vit_b32", weights="random", random_weights=True, seed=0)
  assert [d[0] for d in differences(real, rand)] == ["random_weights"]
  with pytest.raises(ValueError, match="Random-weight features are for tests"):
    check_compatible(real, rand)
  i3d = Recipe("i3d", clip_seconds=1.0, output_dim=1024)
  with pytest.raises(ValueError) as e:
    check_compatible(i3d, real)
  assert "clip_seconds" in str(e.value) and "It needs: i3d (1024-d, one clip per 1 s" in str(e.value)
  with pytest.raises(ValueError, match="unknown recipe fields"):
    Recipe.from_dict({"extractor": "x", "fps": 2})
  with pytest.raises(ValueError, match="clip_seconds"):
    Recipe.from_dict({"extractor": "x", "clip_seconds": 0})


# ---------------------------------------------------------------- extractors

def test_user_keras_model_with_its_recipe(tmp_path):
  """A .keras model (mean colour -> Dense) behind the interface: the vectors equal numpy's
  computation on the recipe's pixels, L2-normalised when the recipe says so."""
  import keras
  inputs = keras.Input((16, 16, 3))
  pooled = keras.layers.GlobalAveragePooling2D()(inputs)
  model = keras.Model(inputs, keras.layers.Dense(4, use_bias=False)(pooled))
  model.save(tmp_path / "mine.keras")
  kernel = model.layers[-1].get_weights()[0]
  recipe = Recipe("mine", clip_seconds=1.0, size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                  std_epsilon=0.0, output_dim=4, l2_normalize=True)
  ex = extractor_lib.user_model_extractor(str(tmp_path / "mine.keras"), recipe)
  path = write_video(str(tmp_path / "v.mkv"), [0, 0.6, 1.3, 2.2], 20, 16)
  feats, reader = ex.extract_video(path)
  levels = [_expected_choice([0, 0.6, 1.3, 2.2], 2.24, 1.0)]
  grey = np.array([decode_level * 4 for decode_level in levels[0]], np.float64)
  x = (grey[:, None] / 255.0 - 0.5) / 0.25 * np.ones((1, 3))
  expected = x @ kernel
  expected /= np.linalg.norm(expected, axis=1, keepdims=True)
  np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="returns 4-d vectors, but the recipe says output_dim=5"):
    extractor_lib.user_model_extractor(str(tmp_path / "mine.keras"),
                                       Recipe("mine", size=16, output_dim=5)).extract_video(path)


@pytest.fixture(scope="module")
def random_clip():
  return extractor_lib.clip_vit_b32("random", seed=0)


def test_random_clip_on_the_sample_and_the_folder_binary_library(random_clip, shared_data, tmp_path):
  videos = tmp_path / "videos"
  videos.mkdir()
  (videos / "sample.mp4").write_bytes((shared_data / SAMPLE).read_bytes())
  (videos / "broken.mp4").write_text("not a video")
  out = tmp_path / "features"
  summary = extract.extract_videos(videos, out, random_clip, batch_size=8, progress=False)
  assert summary["extracted"] == 1 and summary["clips"] == 15
  assert summary["failed"]["broken"]["reason"] == "not_a_video"
  feats = np.load(out / "sample.npz")["features"]
  assert feats.shape == (15, 512) and feats.dtype == np.float32 and np.isfinite(feats).all()
  durations = json.loads((out / "durations.json").read_text())
  assert durations["sample"]["duration"] == pytest.approx(30.697, abs=1e-3)
  assert "broken" in json.loads((out / "failed.json").read_text())
  recipe = Recipe.load(str(out))
  assert recipe.random_weights and recipe.seed == 0 and recipe.output_dim == 512
  from cimha_tf.data.annotations.charades_sta import load_durations
  assert load_durations(str(out / "durations.json")) == {"sample": pytest.approx(30.697333)}
  # resume: nothing redone; the same seed gives the same features
  again = extract.extract_videos(videos, out, random_clip, progress=False)
  assert again["skipped_existing"] == 1 and again["extracted"] == 0
  redo = extract.extract_videos(videos / "sample.mp4", out, random_clip, overwrite=True,
                                progress=False)
  np.testing.assert_array_equal(np.load(out / "sample.npz")["features"], feats)
  assert redo["extracted"] == 1
  # another recipe into the same folder is refused, not mixed
  other = extractor_lib.Extractor(random_clip._fn, Recipe("clip_vit_b32", clip_seconds=1.0,
                                                          weights="random", random_weights=True,
                                                          seed=0))
  with pytest.raises(ValueError, match="clip_seconds.*--overwrite"):
    extract.extract_videos(videos, out, other, progress=False)


def _local_clip_weights():
  env = os.environ.get("CIMHA_CLIP_WEIGHTS")
  if env:
    return env
  cache = os.path.expanduser("~/.cache/kagglehub/models/keras/clip/keras/clip_vit_base_patch32")
  if os.path.isdir(cache):
    for version in sorted(os.listdir(cache), reverse=True):  # a failed download leaves a shell
      if os.path.isfile(os.path.join(cache, version, "config.json")):
        return os.path.join(cache, version)
  return None


def test_golden_features_match_the_published_clip_features(shared_data):
  """Our clip_vit_b32 features of the sample against UniVTG's (charades_sample_clip_vid.npz),
  clip by clip. Needs the real weights: set CIMHA_CLIP_WEIGHTS to a preset folder (or have
  KerasHub's cache hold clip_vit_base_patch32)."""
  weights = _local_clip_weights()
  if weights is None:
    pytest.skip("CLIP ViT-B/32 weights not present locally: set CIMHA_CLIP_WEIGHTS=DIR (a "
                "KerasHub preset folder, see docs/video.md) to run the golden test")
  ex = extractor_lib.clip_vit_b32(weights)
  ours, _ = ex.extract_video(shared_data / SAMPLE)
  ref = np.load(shared_data / SAMPLE_FEATURES)["features"]
  assert ours.shape == ref.shape
  cos = np.sum(ours * ref, 1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
  assert cos.min() > 0.99, cos


def test_random_tower_numbers_its_positions(random_clip):
  """KerasHub leaves position_ids zero until a preset fills them; a fresh tower that kept
  them would give every patch position 0's embedding (another network than CLIP's)."""
  ids = random_clip.model.get_layer("clip_vision_encoder").embedding.position_ids
  np.testing.assert_array_equal(np.asarray(ids)[0], np.arange(50))


def test_tower_equals_openai_clips_vit_b32_written_in_pytorch(random_clip):
  """The same weights in our Keras tower and in openai/CLIP's VisionTransformer written
  out in PyTorch (bench/extraction.py) give the same vectors. Needs PyTorch (not a
  dependency): pip install torch==2.13.0."""
  pytest.importorskip("torch")
  from bench.extraction import port_clip_weights, reference_embed, torch_clip
  saved = random_clip.model.get_weights()
  try:
    peer = torch_clip()
    port_clip_weights(peer.visual, random_clip.model)
    frames = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    ours, theirs = random_clip(frames), reference_embed(peer, frames, 60)
    np.testing.assert_allclose(ours, theirs, atol=1e-4 * np.abs(theirs).max())
  finally:
    random_clip.model.set_weights(saved)

"""Video decoding with PyAV: one frame per clip, chosen by presentation time, streamed.

`ClipReader(path, recipe).batches(n)` yields (times, frames) batches: frames uint8
(B, size, size, 3) RGB, resized and centre-cropped as the recipe says; memory holds one
batch and the decoder's few frames, never the video (an hour at 2 s per clip is 1,800
clips, read in batches). The frame of each clip is the one ffmpeg's `fps` filter keeps,
which is what moment_detr / UniVTG / lighthouse feed CLIP (docs/video.md, "Frame choice"):
clip n is the last frame whose time t (seconds from the container's start) has
round(t / clip_seconds) <= n (half away from zero), and the clips run from round(t_first /
c) to round(t_end / c), t_end = the last frame's time plus its duration. Timestamps, not
frame indices, decide: variable frame rates and long gaps choose the right frames.

Bad input raises `VideoError` naming the file, `reason` a countable key: not_a_video
(unreadable, truncated header, corrupt), no_video_stream, still_image, no_frames,
too_long (over `max_seconds`, checked on the header and while decoding), decode_error.
Documented repairs, counted in `ClipReader.repairs` and warned about: frames without a
timestamp get the previous one plus a frame period (`no_timestamp`), timestamps that go
back are taken as ffmpeg takes them (`backwards_timestamp`), a header duration that the
frames do not reach (wrong, or a truncated file) gives way to the frames' own
(`header_duration_mismatch`), a video shorter than one clip gives one clip (`one_clip`).
"""

import math
import os
from fractions import Fraction

import numpy as np

from absl import logging

# A guard, not a model limit: a 3-hour video is 5,400 clips at 2 s. Larger videos stream
# fine (memory holds one batch); raise it with --max_video_seconds.
DEFAULT_MAX_SECONDS = 3 * 3600.0

# Demuxers that read a single picture (an image passed as a video).
_IMAGE_FORMATS = ("image2", "image2pipe", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe",
                  "gif", "tiff_pipe", "pam_pipe", "ppm_pipe", "pgm_pipe", "svg_pipe", "jpegxl_pipe")


class VideoError(ValueError):
  """A video that cannot be read; `reason` is a short countable key."""

  def __init__(self, reason, message):
    super().__init__(message)
    self.reason = reason


def round_half_away(x: Fraction) -> int:
  """FFmpeg's AV_ROUND_NEAR_INF: to the nearest integer, halves away from zero."""
  floor = math.floor(x)
  frac = x - floor
  if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and x > 0):
    return floor + 1
  if frac == Fraction(1, 2):  # negative half: away from zero is down
    return floor
  return floor


def output_size(height, width, size):
  """(out_h, out_w): the short side becomes `size`, the long one int(long * size / short),
  as moment_detr's / lighthouse's VideoLoader._get_output_dim writes it."""
  if height >= width:
    return int(height * size / width), size
  return size, int(width * size / height)


def crop_offsets(height, width, size):
  """(y, x) of the centre crop: int((dim - size) / 2.0), as VideoLoader crops."""
  return int((height - size) / 2.0), int((width - size) / 2.0)


def select_clips(times, end_time, clip_seconds):
  """[(clip index, index into times)]: the frame ffmpeg's fps filter keeps for each clip.
  `times` are the frames' presentation times (Fractions, decode order), `end_time` the
  end of the last frame. A pure function of timestamps (the decoder calls the streaming
  form in ClipReader; tests compare both)."""
  out = []
  clip = Fraction(clip_seconds)
  n = None
  prev = None
  for i, t in enumerate(times):
    k = round_half_away(Fraction(t) / clip)
    if n is None:
      n = k
    while n < k:
      out.append((n, prev))
      n += 1
    prev = i
  if n is None:
    return out
  n_end = round_half_away(Fraction(end_time) / clip)
  while n < n_end:
    out.append((n, prev))
    n += 1
  return out


def _fraction(value):
  return Fraction(value).limit_denominator(1_000_000) if not isinstance(value, Fraction) else value


class ClipReader:
  """One video's clips under a recipe. `info` (dict) is read at construction, which raises
  VideoError for files that are not videos; `batches()` decodes. After the batches are
  exhausted, `num_clips`, `duration` (seconds the frames cover) and `repairs` hold."""

  def __init__(self, path, recipe, max_seconds=DEFAULT_MAX_SECONDS):
    import av
    self.path = os.fspath(path)
    self.recipe = recipe
    self.max_seconds = max_seconds
    self.repairs = {}
    self.num_clips = 0
    self.duration = None
    self._graph = None
    if not os.path.isfile(self.path):
      raise VideoError("missing", f"video {self.path} not found")
    try:
      container = av.open(self.path)
    except av.error.FFmpegError as e:
      raise VideoError("not_a_video", f"{self.path}: not a readable video ({_ffmpeg_message(e)}); "
                       "a corrupt or truncated file, or not a video at all") from None
    try:
      self.info = self._probe(container)
    finally:
      container.close()

  def _probe(self, container):
    streams = container.streams.video
    if not streams:
      kinds = sorted({s.type for s in container.streams}) or ["none"]
      raise VideoError("no_video_stream", f"{self.path}: no video stream (streams: {kinds})")
    stream = streams[0]
    fmt = container.format.name
    if fmt in _IMAGE_FORMATS or fmt.endswith("_pipe"):
      raise VideoError("still_image", f"{self.path}: a still image ({fmt}), not a video; "
                       "pass video files (mp4, mkv, webm, avi, ...)")
    stream_duration = (float(stream.duration * stream.time_base)
                       if stream.duration and stream.time_base else None)
    container_duration = container.duration / 1e6 if container.duration else None
    start = container.start_time / 1e6 if container.start_time is not None else 0.0
    info = {"path": self.path, "format": fmt, "codec": stream.codec_context.name,
            "width": stream.codec_context.width, "height": stream.codec_context.height,
            "average_rate": float(stream.average_rate) if stream.average_rate else None,
            "header_duration": stream_duration or container_duration,
            "start_time": start, "header_frames": stream.frames or None}
    hd = info["header_duration"]
    if hd is not None and self.max_seconds and hd > self.max_seconds:
      raise VideoError("too_long", f"{self.path}: {hd:.0f} s long, over the limit of "
                       f"{self.max_seconds:.0f} s (max_video_seconds); raise the limit to "
                       "extract it (it streams: memory holds one batch of clips)")
    return info

  def clip_seconds(self):
    """The recipe's clip length, or HERO's denser rate for a video shorter than a clip
    plus 0.1 s (fps = 2 / max(int(duration), 1), moment_detr/lighthouse VideoLoader)."""
    c = _fraction(self.recipe.clip_seconds)
    d = self.info["header_duration"]
    if self.recipe.short_video_rule and d is not None and 0 < d < float(c) + 0.1:
      return Fraction(max(int(d), 1), 2)
    return c

  def _frames(self):
    """(time Fraction relative to the start, duration Fraction, frame) in decode order."""
    import av
    container = av.open(self.path)
    try:
      stream = container.streams.video[0]
      stream.thread_type = "AUTO"
      start = _fraction(self.info["start_time"] or 0)
      period = (1 / Fraction(stream.average_rate)) if stream.average_rate else Fraction(1, 25)
      prev_t = None
      try:
        for frame in container.decode(stream):
          if frame.pts is None or frame.time_base is None:
            self._repair("no_timestamp")
            t = (prev_t + period) if prev_t is not None else Fraction(0)
          else:
            t = Fraction(frame.pts) * Fraction(frame.time_base) - start
          if prev_t is not None and t < prev_t:
            self._repair("backwards_timestamp")
          dur = (Fraction(frame.duration) * Fraction(frame.time_base)
                 if frame.duration and frame.time_base else period)
          prev_t = t
          yield t, dur, frame
      except av.error.FFmpegError as e:
        at = f" at {float(prev_t):.2f} s" if prev_t is not None else ""
        raise VideoError("decode_error", f"{self.path}: decoding failed{at} "
                         f"({_ffmpeg_message(e)}); the file is corrupt or truncated") from None
    finally:
      container.close()

  def _repair(self, key):
    self.repairs[key] = self.repairs.get(key, 0) + 1

  def clips(self):
    """(clip index, time of the chosen frame in seconds, uint8 frame) per clip, streamed;
    the streaming form of select_clips."""
    clip = self.clip_seconds()
    n = None
    prev = None  # (t, frame)
    end = None
    for t, dur, frame in self._frames():
      if self.max_seconds and t > self.max_seconds:
        raise VideoError("too_long", f"{self.path}: frames past {self.max_seconds:.0f} s, the "
                         "limit (max_video_seconds; the header said "
                         f"{self.info['header_duration']}); raise the limit to extract it")
      k = round_half_away(t / clip)
      if n is None:
        n = k
      while n < k:
        yield n, float(prev[0]), self._pixels(prev[1])
        n += 1
      prev = (t, frame)
      end = t + dur if end is None else max(end, t + dur)
    if prev is None:
      raise VideoError("no_frames", f"{self.path}: the video stream has no decodable frame")
    n_end = round_half_away(end / clip)
    while n < n_end:
      yield n, float(prev[0]), self._pixels(prev[1])
      n += 1
    if self.num_clips == 0:
      self._repair("one_clip")
      logging.warning("%s: %.3f s, shorter than half a clip: one clip from its last frame",
                      self.path, float(end))
      yield n, float(prev[0]), self._pixels(prev[1])
    self.duration = float(end)
    hd = self.info["header_duration"]
    if hd is not None and float(end) < hd - max(float(clip), 0.05 * hd):
      self._repair("header_duration_mismatch")
      logging.warning("%s: the frames end at %.2f s but the header says %.2f s (a wrong "
                      "header or a truncated file); the frames' %.2f s are used",
                      self.path, float(end), hd, float(end))

  def _pixels(self, frame):
    """The recipe's pixels of one frame, through the FFmpeg filters the reference's ffmpeg
    command runs (autorotation, scale with swscale's interpolation, crop, rgb24): PyAV
    bundles the same libraries, so the pixels are the reference's bit for bit."""
    self.num_clips += 1
    rotation = (getattr(frame, "rotation", 0) or 0) % 360
    key = (frame.width, frame.height, frame.format.name, rotation)
    if self._graph is None or self._graph[0] != key:
      self._graph = (key,) + self._build_graph(frame, rotation)
    _, graph = self._graph
    graph.push(frame)
    return np.ascontiguousarray(graph.pull().to_ndarray(format="rgb24"))

  def _build_graph(self, frame, rotation):
    import av
    r = self.recipe
    h, w = (frame.width, frame.height) if rotation in (90, 270) else (frame.height, frame.width)
    chain = {90: [("transpose", "cclock")], 270: [("transpose", "clock")],
             180: [("hflip", ""), ("vflip", "")]}.get(rotation, [])
    if r.center_crop:
      out_h, out_w = output_size(h, w, r.size)
      y, x = crop_offsets(out_h, out_w, r.size)
      chain += [("scale", f"{out_w}:{out_h}:flags={r.resize}"),
                ("crop", f"{r.size}:{r.size}:{x}:{y}")]
    else:
      chain += [("scale", f"{r.size}:{r.size}:flags={r.resize}")]
    chain.append(("format", "rgb24"))
    graph = av.filter.Graph()
    nodes = [graph.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                              time_base=frame.time_base or Fraction(1, 1000))]
    nodes += [graph.add(name, args) for name, args in chain]
    nodes.append(graph.add("buffersink"))
    for a, b in zip(nodes, nodes[1:]):
      a.link_to(b)
    graph.configure()
    return (graph,)

  def batches(self, batch_size=32):
    """(times float64 (B,), frames uint8 (B, size, size, 3)) batches over the clips."""
    times, frames = [], []
    for _, t, img in self.clips():
      times.append(t)
      frames.append(img)
      if len(frames) == batch_size:
        yield np.asarray(times), np.stack(frames)
        times, frames = [], []
    if frames:
      yield np.asarray(times), np.stack(frames)


def _ffmpeg_message(e):
  text = getattr(e, "strerror", None) or str(e)
  return f"FFmpeg: {text}"

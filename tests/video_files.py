"""Tiny test videos written with PyAV: each frame a uniform grey whose level encodes the
frame's index (lossless codecs), so a test can tell which frame the decoder chose."""

import io
from fractions import Fraction

import numpy as np

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

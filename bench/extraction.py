"""Feature extraction against moment_detr's reference pipeline, on the same frames, in one run.

The reference is moment_detr's run_on_video (UniVTG and lighthouse copy it): an `ffmpeg`
subprocess (VideoLoader: `fps=0.5,scale=W:H,crop=224:224:X:Y`, rgb24 on a pipe) and
CLIP ViT-B/32 `encode_image` in PyTorch, batches of 60; here openai/CLIP's
VisionTransformer written out in PyTorch (`torch_clip`) with seeded random weights (no
download; timing only). Ours: PyAV decoding (cimha_tf/video/decode.py) and the KerasHub
tower (cimha_tf/video/extractor.py).

Checked before timing: both decoders give the same bytes, and our tower with the PyTorch
tower's weights copied in gives its vectors (max |difference| and min cosine reported):
one function on both sides. Timed in turns, round after round: decoding (clips/s, video
file -> uint8 crops; common.round_robin) and the backbone (clips/s, crops -> 512-d
vectors, batch 60 for both; the PyTorch tower in a child process of its own, as
bench/peers.py runs its peer, so the two thread pools never share a process). Then
`predict --video` end to end (a subprocess: what a user waits for, start-up and CLIP
build included) on the 30.7 s sample and on a 10-minute video (the sample's packets
repeated, no re-encoding), with a small untrained CI-MHA export whose recipe is
random-weight CLIP.

Needs what cimha-tf does not: `pip install torch==2.13.0` and an ffmpeg binary (on PATH,
or `pip install imageio-ffmpeg`).

  python -m bench.extraction [--quick] [--output=bench/results/extraction.json]
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

from bench import common

VIDEO = flags.DEFINE_string("video", None, "default: ../shared/data/sample_video/charades_sample.mp4")
BATCH = flags.DEFINE_integer("batch_size", 60, "frames per backbone call (moment_detr: 60)")
LONG_MINUTES = flags.DEFINE_float("long_minutes", 10.0, "length of the long end-to-end video")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ffmpeg_binary():
  found = shutil.which("ffmpeg")
  if found:
    return found
  try:
    import imageio_ffmpeg
  except ImportError as e:
    raise SystemExit("bench.extraction needs an ffmpeg binary: on PATH, or pip install "
                     "imageio-ffmpeg") from e
  return imageio_ffmpeg.get_ffmpeg_exe()


def reference_decode(ffmpeg, path, size=224):
  """moment_detr's VideoLoader.read_video_from_file: ffprobe's width/height (read here
  with PyAV, not timed as a subprocess: in the reference's favour), then one ffmpeg."""
  import av
  with av.open(path) as c:
    s = c.streams.video[0]
    h, w = s.codec_context.height, s.codec_context.width
  out_h, out_w = (int(h * size / w), size) if h >= w else (size, int(w * size / h))
  x, y = int((out_w - size) / 2.0), int((out_h - size) / 2.0)
  graph = (f"[0]fps=fps=0.5[s0];[s0]scale={out_w}:{out_h}[s1];"
           f"[s1]crop={size}:{size}:{x}:{y}[s2]")
  out = subprocess.run([ffmpeg, "-i", path, "-filter_complex", graph, "-map", "[s2]",
                        "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
                       capture_output=True, check=True).stdout
  return np.frombuffer(out, np.uint8).reshape(-1, size, size, 3)


def our_decode(path, recipe):
  from cimha_tf.video.decode import ClipReader
  return np.concatenate([f for _, f in ClipReader(path, recipe).batches(256)])


def torch_clip():
  """OpenAI CLIP's ViT-B/32 image tower (openai/CLIP model.py VisionTransformer: conv1
  without bias, class embedding, positional embedding, ln_pre, 12 residual blocks of
  nn.MultiheadAttention and a QuickGELU MLP, ln_post on the class token, proj), in plain
  PyTorch with seeded random weights: what `clip.load("ViT-B/32").encode_image` runs."""
  import torch
  from torch import nn
  torch.manual_seed(0)
  torch.set_num_threads(os.cpu_count())

  class QuickGELU(nn.Module):
    def forward(self, x):
      return x * torch.sigmoid(1.702 * x)

  class Block(nn.Module):
    def __init__(self, d, heads):
      super().__init__()
      self.attn = nn.MultiheadAttention(d, heads)
      self.ln_1 = nn.LayerNorm(d)
      self.mlp = nn.Sequential()
      self.mlp.add_module("c_fc", nn.Linear(d, 4 * d))
      self.mlp.add_module("gelu", QuickGELU())
      self.mlp.add_module("c_proj", nn.Linear(4 * d, d))
      self.ln_2 = nn.LayerNorm(d)

    def forward(self, x):
      h = self.ln_1(x)
      x = x + self.attn(h, h, h, need_weights=False)[0]
      return x + self.mlp(self.ln_2(x))

  class Visual(nn.Module):
    def __init__(self, width=768, layers=12, heads=12, patch=32, size=224, out=512):
      super().__init__()
      scale = width ** -0.5
      self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
      self.class_embedding = nn.Parameter(scale * torch.randn(width))
      self.positional_embedding = nn.Parameter(scale * torch.randn((size // patch) ** 2 + 1, width))
      self.ln_pre = nn.LayerNorm(width)
      self.transformer = nn.Module()
      self.transformer.resblocks = nn.Sequential(*[Block(width, heads) for _ in range(layers)])
      self.ln_post = nn.LayerNorm(width)
      self.proj = nn.Parameter(scale * torch.randn(width, out))

    def forward(self, x):
      x = self.conv1(x).flatten(2).permute(0, 2, 1)  # (B, patches, width)
      cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
      x = torch.cat([cls, x], 1) + self.positional_embedding
      x = self.ln_pre(x).permute(1, 0, 2)  # (tokens, B, width), as CLIP's transformer takes it
      x = self.transformer.resblocks(x).permute(1, 0, 2)
      return self.ln_post(x[:, 0, :]) @ self.proj

  class Model(nn.Module):
    def __init__(self):
      super().__init__()
      self.visual = Visual()

    def encode_image(self, x):
      return self.visual(x)

  model = Model()
  model.eval()
  return model


def port_clip_weights(visual, keras_model):
  """Copies the PyTorch CLIP ViT-B/32 image tower's weights into our Keras tower (KerasHub's
  layout), so that both compute one function."""
  t = lambda p: p.detach().cpu().numpy()
  w = {v.path: v for v in keras_model.weights}
  def put(name, value):
    assert tuple(w[name].shape) == value.shape, (name, w[name].shape, value.shape)
    w[name].assign(value)
  put("embedding/class_embedding", t(visual.class_embedding))
  put("embedding/patch_embedding/kernel", t(visual.conv1.weight).transpose(2, 3, 1, 0))
  put("embedding/position_embedding/embeddings", t(visual.positional_embedding))
  put("pre_layer_norm/gamma", t(visual.ln_pre.weight))
  put("pre_layer_norm/beta", t(visual.ln_pre.bias))
  for i, block in enumerate(visual.transformer.resblocks):
    p = f"encoder_block_{i}/"
    put(p + "layer_norm_1/gamma", t(block.ln_1.weight))
    put(p + "layer_norm_1/beta", t(block.ln_1.bias))
    qkv_w, qkv_b = t(block.attn.in_proj_weight), t(block.attn.in_proj_bias)
    for j, name in enumerate(("query", "key", "value")):
      put(p + f"attention/{name}/kernel", qkv_w[j * 768:(j + 1) * 768].T.reshape(768, 12, 64))
      put(p + f"attention/{name}/bias", qkv_b[j * 768:(j + 1) * 768].reshape(12, 64))
    put(p + "attention/attention_output/kernel", t(block.attn.out_proj.weight).T.reshape(12, 64, 768))
    put(p + "attention/attention_output/bias", t(block.attn.out_proj.bias))
    put(p + "layer_norm_2/gamma", t(block.ln_2.weight))
    put(p + "layer_norm_2/beta", t(block.ln_2.bias))
    put(p + "dense_1/kernel", t(block.mlp.c_fc.weight).T)
    put(p + "dense_1/bias", t(block.mlp.c_fc.bias))
    put(p + "dense_2/kernel", t(block.mlp.c_proj.weight).T)
    put(p + "dense_2/bias", t(block.mlp.c_proj.bias))
  put("layer_norm/gamma", t(visual.ln_post.weight))
  put("layer_norm/beta", t(visual.ln_post.bias))
  put("vision_projection/kernel", t(visual.proj))


def reference_embed(model, frames, batch):
  """moment_detr's Preprocessing (/255, CLIP mean/std) and encode_image in batches."""
  import torch
  from cimha_tf.video.recipe import CLIP_MEAN, CLIP_STD
  mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
  std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
  out = []
  with torch.no_grad():
    x = torch.from_numpy(frames.astype("float32")).permute(0, 3, 1, 2)
    x = (x / 255.0 - mean) / (std + 1e-8)
    for i in range(0, len(x), batch):
      out.append(model.encode_image(x[i:i + batch]))
  return torch.cat(out).numpy()


_CHILD = r"""
import sys, time, numpy as np, torch
sys.path.insert(0, sys.argv[1])
from bench.extraction import reference_embed, torch_clip
model = torch_clip()
model.load_state_dict(torch.load(sys.argv[2]))
frames = np.load(sys.argv[3])
batch = int(sys.argv[4])
np.save(sys.argv[5], reference_embed(model, frames, batch))
print("ready", flush=True)
for line in sys.stdin:
  t = time.perf_counter()
  reference_embed(model, frames, batch)
  print(time.perf_counter() - t, flush=True)
"""


class ReferenceBackbone:
  """The PyTorch tower in its own process (PyTorch's and TensorFlow's thread pools never
  share one, as bench/peers.py runs its peer); each call times one pass over the frames
  there and returns its seconds. `features` are its vectors of the frames."""

  def __init__(self, model, frames, batch, tmp):
    import torch
    weights, frames_path, out = (os.path.join(tmp, n) for n in ("w.pt", "f.npy", "o.npy"))
    torch.save(model.state_dict(), weights)
    np.save(frames_path, frames)
    self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, REPO, weights, frames_path,
                                  str(batch), out], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
    if self.proc.stdout.readline().strip() != "ready":
      raise RuntimeError("the PyTorch reference process failed")
    self.features = np.load(out)

  def __call__(self):
    self.proc.stdin.write("run\n")
    self.proc.stdin.flush()
    return float(self.proc.stdout.readline())

  def close(self):
    self.proc.stdin.close()
    self.proc.wait()


def our_embed(extractor, frames, batch):
  return np.concatenate([extractor(frames[i:i + batch]) for i in range(0, len(frames), batch)])


def repeat_video(src, dst, times):
  """dst: the packets of src `times` over, timestamps shifted (no re-encoding)."""
  import av
  with av.open(src) as inp, av.open(dst, "w", format="mp4") as out:
    s = inp.streams.video[0]
    o = out.add_stream_from_template(s)
    length = s.duration
    for r in range(times):
      inp.seek(0)
      for packet in inp.demux(s):
        if packet.dts is None:
          continue
        packet.pts += r * length
        packet.dts += r * length
        packet.stream = o
        out.mux(packet)
  return dst


def tiny_export(root, recipe):
  """A small CI-MHA SavedModel (untrained: its windows mean nothing, its speed is the
  model's) for 512-d features, recording `recipe`."""
  import keras
  from cimha_tf.deploy import saved_model
  from cimha_tf.model import build_model, default_config
  c = default_config()
  c.update(dict(width=64, num_heads=4, ffn_width=64, query_lstm_units=32, span_lstm_units=32,
                mlp_width=32, embedding_dim=32, max_video_len=128, max_query_len=25))
  tokens = ["<pad>", "<unk>", "a", "person", "opens", "the", "door", "sits", "down"]
  keras.utils.set_random_seed(0)
  model = build_model(c, recipe.output_dim, len(tokens))
  return saved_model.export(model, tokens, root, c, extra_meta={"feature_recipe": recipe.to_dict()})


def predict_video_seconds(model, video, long_video):
  t0 = time.perf_counter()
  r = subprocess.run([sys.executable, "-m", "cimha_tf.predict", f"--model={model}",
                      f"--video={video}", "--query=a person opens the door",
                      "--query=a person sits down", f"--long_video={long_video}"],
                     cwd=REPO, capture_output=True, text=True)
  wall = time.perf_counter() - t0
  if r.returncode != 0:
    raise RuntimeError(f"predict --video failed:\n{r.stderr[-3000:]}")
  out = json.loads(r.stdout)
  return {"wall_s": round(wall, 2), "clips": out["num_clips"], "mode": out["mode"],
          "steps_s": out["seconds"]}


def main(argv):
  del argv
  from cimha_tf.video import extractor as extractor_lib
  from cimha_tf.video.recipe import Recipe
  video = VIDEO.value or os.path.join(REPO, "..", "shared", "data", "sample_video",
                                      "charades_sample.mp4")
  if not os.path.isfile(video):
    raise SystemExit(f"{video} not found (pass --video)")
  quick = common.QUICK.value
  ffmpeg = ffmpeg_binary()
  recipe = Recipe("clip_vit_b32", weights="random", random_weights=True, seed=0)

  ref_frames = reference_decode(ffmpeg, video)
  ours_frames = our_decode(video, recipe)
  identical = ref_frames.shape == ours_frames.shape and bool(np.array_equal(ref_frames, ours_frames))

  ours = extractor_lib.clip_vit_b32("random", seed=0)
  peer = torch_clip()
  port_clip_weights(peer.visual, ours.model)
  frames = ours_frames[:4] if quick else ours_frames
  tmp = tempfile.mkdtemp(prefix="cimha_bench_extraction_")
  reference = ReferenceBackbone(peer, frames, BATCH.value, tmp)
  a, b = our_embed(ours, frames, BATCH.value), reference.features
  cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

  def timed_ours():
    t = time.perf_counter()
    our_embed(ours, frames, BATCH.value)
    return time.perf_counter() - t

  n_rounds = 2 if quick else 5
  decode_t = common.round_robin({"ours": lambda: our_decode(video, recipe),
                                 "reference": lambda: reference_decode(ffmpeg, video)},
                                n_warmup=1, n_rounds=n_rounds)
  embed_t = {"ours": [], "reference": []}  # each side times itself (one in another process)
  timed_ours(), reference()  # warm-up
  for _ in range(n_rounds):
    embed_t["ours"].append(timed_ours())
    embed_t["reference"].append(reference())
  reference.close()
  clips = len(ours_frames)
  results = {"clips": clips, "frames_identical": identical,
             "backbone_max_abs_diff": float(np.abs(a - b).max()),
             "backbone_min_cosine": float(cos.min()), "batch_size": BATCH.value}
  for name, times, n in (("decode", decode_t, clips), ("backbone", embed_t, len(frames))):
    s = {k: common.stats(v) for k, v in times.items()}
    results[name] = {"ours_clips_per_s": round(n / s["ours"]["median_s"], 2),
                     "reference_clips_per_s": round(n / s["reference"]["median_s"], 2),
                     "ratio_median": round(s["reference"]["median_s"] / s["ours"]["median_s"], 3),
                     "ratio_per_round": common.spread([r / o for o, r in zip(times["ours"], times["reference"])]),
                     "timings": s}

  if not quick:
    model = tiny_export(os.path.join(tmp, "export"), recipe)
    long_video = repeat_video(video, os.path.join(tmp, "long.mp4"),
                              max(1, int(round(LONG_MINUTES.value * 60 / 30.697))))
    results["end_to_end"] = {
        "sample_30s": predict_video_seconds(model, video, "pool"),
        "long_pool": predict_video_seconds(model, long_video, "pool"),
        "long_window": predict_video_seconds(model, long_video, "window")}
  shutil.rmtree(tmp, ignore_errors=True)

  import torch
  notes = [f"reference: {os.path.basename(ffmpeg)} subprocess + openai/CLIP's ViT-B/32 in "
           f"PyTorch (random weights) on torch {torch.__version__}, {torch.get_num_threads()} threads; ours: "
           "PyAV + KerasHub CLIPVisionEncoder on TensorFlow; the PyTorch tower in its own process, in turns",
           "ratio = reference seconds / ours (> 1: ours faster)"]
  common.report("extraction", results, notes)


if __name__ == "__main__":
  app.run(main)

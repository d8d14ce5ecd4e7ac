"""Builds colab/quickstart.ipynb and colab/reproduce_paper.ipynb, without outputs.

The notebooks are generated so that they stay clean (no outputs, no execution counts, no
stray metadata) and so the cells both notebooks share are written once. Edit this file,
then run `python colab/make_notebooks.py`; tests/test_notebooks.py checks the stored
notebooks equal what this script builds.
"""

import os
import sys

import nbformat
from nbformat import v4

HERE = os.path.dirname(os.path.abspath(__file__))
COLAB_URL = "https://colab.research.google.com/github/cimha-tf/cimha-tf/blob/main/colab/{}"
REPO_URL = "https://github.com/cimha-tf/cimha-tf"


def badge(name):
  url = COLAB_URL.format(name)
  return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


# Shared by both notebooks: install the package, and run its binaries so that a
# failing command fails the cell (a `!python -m ...` line would not, and CI would miss it).
SETUP = r'''import importlib, importlib.util, os, pathlib, subprocess, sys

# Installs the package the way the README says (pip install from GitHub, or the clone or
# wheel named in PACKAGE), unless this Python has it already (installed before, or Jupyter
# started in a checkout's root); the binaries below then find it as installed.
if importlib.util.find_spec("cimha_tf") is None:
  subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", PACKAGE or f"git+{REPO_URL}"])
  importlib.invalidate_caches()
import cimha_tf
print("cimha_tf", cimha_tf.__version__, "from", pathlib.Path(cimha_tf.__file__).parent)

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"

def run(module, *flags):
  """`python -m module flags...`, output streamed live; raises on failure."""
  cmd = [sys.executable, "-m", module, *map(str, flags)]
  print("$ python -m", module, " ".join(map(str, flags)), flush=True)
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  while chunk := proc.stdout.read1(4096):  # chunks, not lines: progress bars redraw with \r
    sys.stdout.write(chunk.decode("utf-8", "replace"))
    sys.stdout.flush()
  if proc.wait() != 0:
    raise RuntimeError(f"python -m {module} failed with exit code {proc.returncode}")'''

SHOW_METRICS = r'''def metrics_table(rows, keys=("R1@0.3", "R1@0.5", "R1@0.7", "R5@0.3", "R5@0.5", "R5@0.7", "mIoU")):
  """rows: {name: metrics dict in percent} -> a Markdown table."""
  lines = ["| run | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
  for name, m in rows.items():
    cells = [f"{m[k]:.2f}" if isinstance(m.get(k), (int, float)) else "–" for k in keys]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)'''


def md(text):
  return v4.new_markdown_cell(text.strip("\n"))


def code(text, tags=()):
  cell = v4.new_code_cell(text.strip("\n"))
  if tags:
    cell.metadata["tags"] = list(tags)
  return cell


def notebook(cells, gpu=False):
  """gpu: Colab opens the notebook on a GPU runtime (its "accelerator" metadata)."""
  nb = v4.new_notebook(cells=cells)
  nb.metadata = {
      "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
      "language_info": {"name": "python"},
      "colab": {"provenance": [], **({"gpuType": "T4"} if gpu else {})},
  }
  if gpu:
    nb.metadata["accelerator"] = "GPU"
  # Stable ids: regenerating gives byte-identical files (tests compare them).
  for i, cell in enumerate(nb.cells):
    cell["id"] = f"cell-{i:02d}"
  return nb


def quickstart():
  return notebook([
      md(f"""
# CI-MHA quickstart: train, evaluate and deploy on synthetic data

{badge("quickstart.ipynb")}

[CI-MHA](https://doi.org/10.1145/3404835.3463021) (Yu et al., SIGIR 2021) finds the moment
(start, end in seconds) of a video that a sentence describes. This notebook runs the whole
[cimha-tf]({REPO_URL}) pipeline on a small synthetic dataset, so it needs no downloads
and no GPU: **Runtime → Run all** finishes in under 10 minutes on a CPU runtime.

1. install the package from the repository,
2. write a synthetic dataset in Charades-STA's on-disk format (planted moments),
3. prepare it (TFRecords, vocabulary), train CI-MHA, evaluate it,
4. look at the metrics and at what the model predicts for a few queries,
5. export to a TF Serving SavedModel and to TFLite, and run the TFLite model with LiteRT,
6. your own video: CLIP features from video files, a model trained on them, `predict --video`.
"""),
      md("""
## Parameters
`PACKAGE` empty: pip-install the package from `REPO_URL` (if this Python does not have it).
`None` keeps the defaults of the `demo` config (`cimha_tf/configs/demo.py`) and of the
synthetic dataset; smaller
values make a faster (and less accurate) run.
"""),
      code(f'''
REPO_URL = "{REPO_URL}"
PACKAGE = ""              # what pip installs: "" -> git+REPO_URL; or a clone's folder, a wheel
WORK_DIR = ""             # where data, checkpoints and exports go ("" -> ./cimha-quickstart)
NUM_VIDEOS = None         # synthetic videos (None: the dataset's default)
EPOCHS = None             # training epochs (None: the demo config's)
BATCH_SIZE = None         # (None: the demo config's)
NUM_FIGURES = 3           # prediction figures to show
SEED = 0
MY_VIDEO = ""             # section 6: your video file ("" -> a generated one); in Colab, upload it first
CLIP_WEIGHTS = "clip_vit_base_patch32"   # KerasHub preset (Kaggle download) or a preset folder; "random": no download, meaningless features
VIDEO_TRAIN_VIDEOS = 12   # section 6: coloured training videos
''', tags=["parameters"]),
      md("## 1. Install"),
      code(SETUP),
      md("""
## 2. A synthetic dataset in Charades-STA's format
Each video holds several actions at different times; each query names one of them, and the
clip features inside that action's window carry its signal under noise. A model has to
read both the video and the sentence to find the moment. The files are exactly what a
Charades-STA user has on disk: annotation text files, a durations JSON, one `.npy` of clip
features per video, and a small GloVe-format word vector file.
"""),
      code(r'''
import json
from cimha_tf.data import synthetic

WORK = pathlib.Path(WORK_DIR or "cimha-quickstart").resolve()
RAW, PREPARED, RUN = WORK / "synthetic", WORK / "prepared", WORK / "run"
CONFIG = "demo"   # a shipped config's name (--config=demo); a path to your own file works too
demo = importlib.import_module(f"cimha_tf.configs.{CONFIG}").get_config()
# a CPU-sized model; demo.demo holds the dataset's sizes

files = synthetic.write_synthetic_dataset(
    str(RAW), num_videos=NUM_VIDEOS or demo.demo.num_videos, feature_dim=demo.demo.feature_dim,
    glove_dim=demo.demo.glove_dim, seed=SEED)
for p in sorted(RAW.iterdir())[:10]:
  print(p.name)
'''),
      md("""
## 3. Prepare, train, evaluate
The same three commands a user runs on real Charades-STA features
(`docs/design.md` lists every flag). `prepare_data` writes one TFRecord example per video
with all its queries, the vocabulary (training split only) and `metadata.json`, which gives
training the feature dimension.
"""),
      code(r'''
run("cimha_tf.prepare_data", "--dataset=charades_sta", f"--annotations={files['annotations']}",
    f"--features={files['features']}", f"--glove={files['glove']}", f"--output_dir={PREPARED}",
    f"--max_video_len={demo.model.max_video_len}", f"--max_query_len={demo.model.max_query_len}")
print(json.dumps(json.loads((PREPARED / "metadata.json").read_text())["splits"], indent=1)[:1500])
'''),
      code(r'''
# Like Charades-STA, the files have train and test splits only: as the Charades-STA configs
# do, the best epoch is chosen on the test split (`python -m cimha_tf.demo` carves a val split).
overrides = [f"--config.data.dir={PREPARED}", "--config.data.val_split=test", f"--config.seed={SEED}"]
if EPOCHS is not None:
  overrides.append(f"--config.train.epochs={EPOCHS}")
if BATCH_SIZE is not None:
  overrides.append(f"--config.train.batch_size={BATCH_SIZE}")
run("cimha_tf.train", f"--config={CONFIG}", f"--workdir={RUN}", *overrides)
'''),
      code(r'''
# The workdir is self-contained: evaluate reads the resolved config training saved there.
run("cimha_tf.evaluate", f"--workdir={RUN}", "--split=test")
'''),
      md("## 4. Results\nR@k IoU m: percentage of test queries with one of the top-k predicted windows overlapping the ground truth at IoU >= m; mIoU: mean IoU of the top-1 window."),
      code(SHOW_METRICS + r'''

from IPython.display import Image, Markdown, display
# Two baselines that read only the query or nothing at all (fitted on the training split):
# the synthetic data is built so that beating them needs both the video and the sentence.
import ml_collections
from cimha_tf.apps import demo as demo_lib
metrics = json.loads((RUN / "metrics" / "test.json").read_text())
data = ml_collections.ConfigDict({"data": {"dir": str(PREPARED), "train_split": "train", "test_split": "test"}})
display(Markdown(metrics_table({"CI-MHA": metrics, **demo_lib.baseline_metrics(data)})))
'''),
      md("""
What the model sees: for a few test queries (best, worst and random), the start, end and
inside probabilities over the video's time axis, the ground-truth moment shaded and the
top-3 predicted windows drawn above the curves (the top-1's edges dashed down to the axis),
each with its score and IoU. `evaluate` wrote these into `RUN/figures/`.
"""),
      code(r'''
import itertools
figures = [p for p in sorted((RUN / "figures").glob("*.png")) if "recall" not in p.name]
print(len(figures), "query figures in", RUN / "figures")
groups = {"best": [], "worst": [], "random": [], "other": []}  # one of each kind first, in this order
for p in figures:
  groups[next((k for k in groups if f"_{k}_" in p.name), "other")].append(p)
figures = [p for row in itertools.zip_longest(*groups.values()) for p in row if p]
for fig in figures[:NUM_FIGURES]:
  print(fig.name)
  display(Image(filename=str(fig)))
'''),
      code(r'''
# R@1 over IoU thresholds 0.1 ... 0.9 (the reproduce_paper notebook puts ablation rows side by side).
# A prediction file is scored against the ground truth: every query, on its own video.
from cimha_tf.evaluation import visualize
curve_png = visualize.plot_recall_curves({"CI-MHA": RUN / "predictions" / "test.jsonl"},
                                         ground_truth=PREPARED / "annotations" / "test.jsonl",
                                         output=WORK / "recall_curve.png")
display(Image(filename=str(curve_png)))
'''),
      md("""
## 5. Deploy
`export` writes a versioned SavedModel as TF Serving loads it (`EXPORT/cimha/1/`, with raw
query strings tokenised inside the graph) and a TFLite flatbuffer with built-in ops only,
so it runs in the standalone LiteRT runtime (`ai-edge-litert`) without TensorFlow.
"""),
      code(r'''
EXPORT = WORK / "export"
run("cimha_tf.export", f"--workdir={RUN}", "--format=saved_model", f"--output={EXPORT / 'saved_model'}")
run("cimha_tf.export", f"--workdir={RUN}", "--format=tflite", f"--output={EXPORT / 'cimha.tflite'}")
for p in sorted(EXPORT.rglob("*")):
  if p.is_file():
    print(f"{p.stat().st_size / 1e6:8.2f} MB  {p.relative_to(EXPORT)}")
'''),
      md("""
### One query through the TFLite model, with LiteRT
The TFLite model takes 1 to `max_video_len` video steps (run at the video's own length,
a short video is faster) and `max_query_len` words, with masks, and takes token ids: the
Python tokenizer and the vocabulary ship beside it. Here we take a test query, pool its
video's features to at most `max_video_len` steps, tokenise the sentence, run the
interpreter at the video's length (the signature runner resizes its inputs to what it is
given) and decode the best (start, end) pair.
"""),
      code(TFLITE_QUERY),
      md("""
The same through the `predict` command, which takes a SavedModel folder or a `.tflite`
file and a feature file in any layout the data readers accept:
"""),
      code(r'''
run("cimha_tf.predict", f"--model={EXPORT / 'cimha.tflite'}", f"--features={feature_file}",
    f"--query={record['query']}", f"--duration={record['duration']}", "--top_k=3")
'''),
      md("""
## 6. Your own video
The model above reads clip features, not pixels; a video goes through a feature extractor
first. `extract_features` decodes it (one frame per 2 s, chosen as moment_detr, UniVTG and
lighthouse choose it) and embeds each frame with CLIP ViT-B/32 (KerasHub; the weights
download from Kaggle on first use, which needs Kaggle credentials: `CLIP_WEIGHTS = "random"`
runs without them, on meaningless features). A model answers about videos only if it was
trained on the same features, so this section trains a small one on CLIP features of
coloured videos whose moments are known (queries "the screen turns red" / "... blue"),
then asks it about `MY_VIDEO` (a path: in Colab, upload a file with the file browser on
the left; empty: a generated 40 s video). `docs/video.md` has the recipe step by step.
"""),
      code(r'''
from cimha_tf.video import synthetic as coloured
VIDEOS, CLIP_FEATURES, VIDEO_RUN = WORK / "videos", WORK / "clip_features", WORK / "video_run"
plan = coloured.write_coloured_videos(
    str(VIDEOS), counts=(("train", VIDEO_TRAIN_VIDEOS), ("val", 2), ("test", 2)), seed=SEED)
run("cimha_tf.extract_features", f"--videos={VIDEOS}", f"--output={CLIP_FEATURES}",
    f"--weights={CLIP_WEIGHTS}", "--noprogress")
durations = json.loads((CLIP_FEATURES / "durations.json").read_text())
queries = coloured.write_queries(str(WORK / "video_queries"), plan, durations)
run("cimha_tf.prepare_data", "--dataset=jsonl", f"--annotations={queries}",
    f"--features={CLIP_FEATURES}", f"--output_dir={WORK / 'video_prepared'}",
    f"--max_video_len={demo.model.max_video_len}", f"--max_query_len={demo.model.max_query_len}")
run("cimha_tf.train", f"--config={CONFIG}", f"--workdir={VIDEO_RUN}",
    f"--config.data.dir={WORK / 'video_prepared'}", f"--config.train.epochs={EPOCHS or 10}",
    f"--config.seed={SEED}")
run("cimha_tf.export", f"--workdir={VIDEO_RUN}", f"--output={EXPORT / 'video_model'}")
'''),
      code(r'''
# The export records the features' recipe: predict decodes and embeds the video with it
# once, for every query, and reads the duration from the video.
video = MY_VIDEO or coloured.write_coloured_video(
    str(WORK / "my_video.mkv"), 40.0, {coloured.RED: (22.0, 28.0), coloured.BLUE: (6.0, 10.0)})
run("cimha_tf.predict", f"--model={EXPORT / 'video_model'}", f"--video={video}",
    "--query=the screen turns red", "--query=the screen turns blue", "--top_k=3")
'''),
      md(f"""
## Next
- Real benchmarks (Charades-STA I3D, ActivityNet Captions C3D) and the paper's ablation
  rows: {badge("reproduce_paper.ipynb")} `colab/reproduce_paper.ipynb`.
- Serving the SavedModel with TF Serving: `export/` in the repository.
"""),
  ])


TFLITE_QUERY = r'''
import numpy as np
from ai_edge_litert.interpreter import Interpreter
from cimha_tf.data import features as feature_io, pooling, text
from cimha_tf.common import timeline

meta = json.loads((RUN / "data_meta.json").read_text())
vocab = text.Vocabulary.load(str(RUN / "vocab.json"))
record = json.loads((PREPARED / "annotations" / "test.jsonl").read_text().splitlines()[0])
feature_file = pathlib.Path(files["features"]) / f"{record['vid']}.npy"

feats = feature_io.load_feature_file(feature_file)              # (T, Dv) clip features, validated
feats = pooling.pool_to_max_len(feats, meta["max_video_len"])   # mean-pooled bins if longer
n = len(feats)
video = feats[None].astype(np.float32)   # (1, n, Dv): the video's own length, no padding
mask = np.ones((1, n), np.float32)
tokens = vocab.encode(record["query"], meta["max_query_len"])[None]   # (1, L) ids, 0-padded

interpreter = Interpreter(model_path=str(EXPORT / "cimha.tflite"))
interpreter.allocate_tensors()
runner = interpreter.get_signature_runner()
# The fused LSTM ops keep h and c in variable tensors across calls: reset them before each
# query, or the previous query's state leaks into this one (Android: resetVariableTensors()).
interpreter.reset_all_variables()
out = runner(video_features=video, video_mask=mask, query_tokens=tokens)
p_start, p_end = out["start_probs"][0, :n], out["end_probs"][0, :n]

score = np.triu(np.outer(p_start, p_end))                       # P_start(i) * P_end(j), i <= j
i, j = np.unravel_index(np.argmax(score), score.shape)
start_s, end_s = timeline.steps_to_seconds(i, j, record["duration"], n)
print(f"query:        {record['query']!r} ({record['vid']}, {record['duration']:.1f} s)")
print(f"ground truth: {record['relevant_windows'][0]}")
print(f"TFLite top-1: [{start_s:.2f}, {end_s:.2f}] score {score[i, j]:.3f}")
assert abs(p_start.sum() - 1) < 1e-3 and abs(p_end.sum() - 1) < 1e-3  # sanity: softmax over valid steps
assert 0 <= start_s <= end_s <= record["duration"] + 1e-6

from cimha_tf.evaluation import visualize
png = visualize.plot_query(WORK / "tflite_query.png", p_start, p_end, out["inside_probs"][0, :n],
                           record["duration"], record["query"], gt_window=record["relevant_windows"],
                           pred_windows=[[start_s, end_s, score[i, j]]])
display(Image(filename=str(png)))
'''


def reproduce_paper():
  return notebook([
      md(f"""
# Reproducing CI-MHA's published results (Charades-STA I3D, ActivityNet Captions C3D)

{badge("reproduce_paper.ipynb")}

This notebook trains the paper's three ablation rows — `MHA` (query-to-video attention
only), `CI-MHA w/o MS` (both directions, no moment segmentation) and `CI-MHA` — with the
paper's settings (Adam 1e-4, batch 100, at most 128 video steps and 25 words), evaluates
them on the test split and puts our numbers beside the paper's.

**Use a GPU runtime**: the notebook asks Colab for one; if yours opened on a CPU, Runtime →
Change runtime type → GPU. The paper trains in under an
hour on one V100; a Colab session can end before three rows are done: every run writes
to Google Drive and resumes where it stopped when you run the notebook again.

**Smoke mode** (`SMOKE = True`) runs the very same cells on a small synthetic dataset in
Charades-STA's format, with one epoch, to check the setup on a CPU in a few minutes.
"""),
      md("""
## What you need (user-provided: this project does not redistribute any of it)
Put these on your Google Drive under `DRIVE_DIR` (names below are the defaults the
parameter cell expects; any other paths can be given there).

**Charades-STA, I3D features (1024-d)**
- annotations `charades_sta_train.txt`, `charades_sta_test.txt` (TALL's split,
  [jiyanggao/TALL](https://github.com/jiyanggao/TALL)) and `charades.json` (video
  durations), as in VSLNet's `data/dataset/charades/` — into `DRIVE_DIR/charades_sta/`;
- the I3D clip features that VSLNet uses: one `VIDEO_ID.npy` per video, shape (T, 1024).
  VSLNet's README links its extracted features and its `prepare/` folder has the
  extraction code ([IsaacChanghau/VSLNet](https://github.com/IsaacChanghau/VSLNet)) —
  into `DRIVE_DIR/charades_i3d/`.

**ActivityNet Captions, C3D features (500-d)**
- annotations `train.json`, `val_1.json`, `val_2.json`
  ([ActivityNet Captions](https://cs.stanford.edu/people/ranjaykrishna/densevid/)) — into
  `DRIVE_DIR/activitynet_captions/`;
- the official ActivityNet C3D features (PCA to 500-d), one HDF5 file
  `sub_activitynet_v1-3.c3d.hdf5` with `f[VIDEO_ID]['c3d_features']`, from the
  [ActivityNet download page](http://activity-net.org/challenges/2016/download.html); it is
  also the file [2D-TAN](https://github.com/microsoft/2D-TAN) uses — into `DRIVE_DIR/`.
  Which of `val_1`/`val_2` is "test" differs between papers: it is the config value
  `data.test_split`.

**Word vectors (optional)**: `glove.840B.300d.txt` from
[GloVe](https://nlp.stanford.edu/projects/glove/) (5.6 GB unzipped; `prepare_data` streams it
once and keeps only the vocabulary's words). The paper uses it; without it the word
embeddings are trained from scratch, a different setting from the paper's that usually
scores lower.
"""),
      md("## Parameters"),
      code(f'''
DATASET = "charades_sta"          # "charades_sta" (I3D) or "activitynet_captions" (C3D)
DRIVE_DIR = "/content/drive/MyDrive/cimha"   # your features and annotations; runs are saved here too
ANNOTATIONS = ""                  # "" -> DRIVE_DIR/charades_sta or DRIVE_DIR/activitynet_captions
FEATURES = ""                     # "" -> DRIVE_DIR/charades_i3d or DRIVE_DIR/sub_activitynet_v1-3.c3d.hdf5
GLOVE = ""                        # path to glove.840B.300d.txt; "" trains the word embeddings
                                  # from scratch, where the paper uses GloVe 300-d (lower scores)
OUTPUT_DIR = ""                   # prepared data and workdirs, "" -> DRIVE_DIR/runs
VARIANTS = ["mha", "cimha_wo_ms", "cimha"]   # the paper's three ablation rows
OVERRIDES = []                    # extra config flags, e.g. ["--config.train.epochs=30"]
SMOKE = False                     # True: same cells on a small synthetic dataset, CPU is enough
SMOKE_NUM_VIDEOS = None           # synthetic videos in smoke mode (None: the dataset's default)
SMOKE_EPOCHS = 1
REPO_URL = "{REPO_URL}"
PACKAGE = ""                      # what pip installs: "" -> git+REPO_URL; or a clone's folder, a wheel
''', tags=["parameters"]),
      md("## Setup"),
      code(SETUP),
      code(r'''
import json, shutil
import tensorflow as tf

CONFIGS = {"charades_sta": "charades_sta_i3d", "activitynet_captions": "activitynet_captions_c3d"}
DEFAULT_INPUTS = {"charades_sta": ("charades_sta", "charades_i3d"),
                  "activitynet_captions": ("activitynet_captions", "sub_activitynet_v1-3.c3d.hdf5")}
if DATASET not in CONFIGS:
  raise ValueError(f"DATASET={DATASET!r}: expected one of {sorted(CONFIGS)}")

if SMOKE:
  # The synthetic dataset is written in Charades-STA's format, so smoke mode runs the
  # Charades-STA path (prepare flags, paper config) with tiny data and one epoch.
  from cimha_tf.data import synthetic
  DATASET = "charades_sta"
  root = pathlib.Path(OUTPUT_DIR or "cimha-smoke").resolve()
  kwargs = {"seed": 0} if SMOKE_NUM_VIDEOS is None else {"seed": 0, "num_videos": SMOKE_NUM_VIDEOS}
  files = synthetic.write_synthetic_dataset(str(root / "synthetic"), **kwargs)
  ANNOTATIONS, FEATURES, GLOVE = files["annotations"], files["features"], files["glove"]
  OUTPUT = root
  OVERRIDES = [f"--config.train.epochs={SMOKE_EPOCHS}", "--config.train.batch_size=16",
               "--config.eval.batch_size=16", *OVERRIDES]
else:
  if DRIVE_DIR.startswith("/content/drive") and not os.path.isdir("/content/drive/MyDrive"):
    from google.colab import drive
    drive.mount("/content/drive")
  ANNOTATIONS = ANNOTATIONS or os.path.join(DRIVE_DIR, DEFAULT_INPUTS[DATASET][0])
  FEATURES = FEATURES or os.path.join(DRIVE_DIR, DEFAULT_INPUTS[DATASET][1])
  OUTPUT = pathlib.Path(OUTPUT_DIR or os.path.join(DRIVE_DIR, "runs"))
  for what, p in [("ANNOTATIONS", ANNOTATIONS), ("FEATURES", FEATURES)] + ([("GLOVE", GLOVE)] if GLOVE else []):
    if not os.path.exists(p):
      raise FileNotFoundError(f"{what}={p} does not exist: see 'What you need' above")
  if not tf.config.list_physical_devices("GPU"):
    print("WARNING: no GPU: training the paper configs on a CPU takes many hours "
          "(Runtime -> Change runtime type -> GPU)")

CONFIG = CONFIGS[DATASET]   # a shipped config's name: --config=charades_sta_i3d
PREPARED = OUTPUT / f"prepared_{DATASET}"

# The test split is a config value (ActivityNet: val_1 or val_2); an override wins.
TEST_SPLIT = importlib.import_module(f"cimha_tf.configs.{CONFIG}").get_config().data.test_split
for flag in OVERRIDES:
  if flag.startswith("--config.data.test_split="):
    TEST_SPLIT = flag.split("=", 1)[1]
print("dataset:", DATASET, "| config:", CONFIG, "| test split:", TEST_SPLIT, "| outputs:", OUTPUT)
print("GPUs:", tf.config.list_physical_devices("GPU"))
'''),
      md("""
## Prepare the features (once)
Reads the annotations (repairing what the real files need: end times past the video's
duration are clipped, swapped start/end fixed, every drop counted), pools each video to at
most 128 steps, builds the vocabulary from the training split and writes TFRecords. It is
skipped when `metadata.json` already exists. The prepared folder is then copied to the
runtime's local disk, which reads much faster than Drive during training.
"""),
      code(r'''
if not (PREPARED / "metadata.json").exists():
  flags = [f"--dataset={DATASET}", f"--annotations={ANNOTATIONS}", f"--features={FEATURES}",
           f"--output_dir={PREPARED}"]
  if GLOVE:
    flags.append(f"--glove={GLOVE}")
  if DATASET == "charades_sta":  # no validation split: every 6th training video becomes "val"
    flags.append("--val_every=6")
  run("cimha_tf.prepare_data", *flags)
metadata = json.loads((PREPARED / "metadata.json").read_text())
for split, s in metadata["splits"].items():
  print(f"{split:>8}: {s['queries']} queries, {s['videos']} videos "
        f"(read {s['read']}, kept {s['kept']}, dropped {s['dropped']})")

LOCAL = pathlib.Path("/content/prepared") / DATASET
if str(PREPARED).startswith("/content/drive"):
  if not (LOCAL / "metadata.json").exists():
    shutil.copytree(PREPARED, LOCAL, dirs_exist_ok=True)
  DATA_DIR = LOCAL
else:
  DATA_DIR = PREPARED
'''),
      md("""
## Train the three ablation rows
`--config.model.variant` selects the row. Each run has its own workdir on Drive; a run
that was interrupted (Colab timeout) resumes from its last checkpoint when this cell runs
again, and a finished run is skipped.
"""),
      code(r'''
def workdir(variant):
  return OUTPUT / f"{DATASET}_{variant}"

def flags(variant):
  return [f"--config={CONFIG}", f"--workdir={workdir(variant)}", f"--config.data.dir={DATA_DIR}",
          f"--config.model.variant={variant}", *OVERRIDES]

for variant in VARIANTS:
  if (workdir(variant) / "metrics" / f"{TEST_SPLIT}.json").exists():
    print(variant, "already trained and evaluated:", workdir(variant))
    continue
  run("cimha_tf.train", *flags(variant))
'''),
      md("## Evaluate on the test split"),
      code(r'''
results = {}
for variant in VARIANTS:
  metrics_file = workdir(variant) / "metrics" / f"{TEST_SPLIT}.json"
  if not metrics_file.exists():
    run("cimha_tf.evaluate", *flags(variant), f"--split={TEST_SPLIT}")
  results[variant] = json.loads(metrics_file.read_text())
'''),
      md("""
## Our numbers beside the paper's
R@1 at IoU 0.7 / 0.5 / 0.3 in percent; the paper's values are from its results tables
(`docs/paper.md`, "Published results"). In smoke mode the numbers only show that the cells run.
"""),
      code(SHOW_METRICS + r'''

from IPython.display import Image, Markdown, display

PAPER = {  # R1@0.7, R1@0.5, R1@0.3
    "charades_sta": {"mha": (30.49, 51.04, 60.85), "cimha_wo_ms": (31.39, 52.41, 62.78),
                     "cimha": (35.27, 54.68, 69.87)},
    "activitynet_captions": {"mha": (21.76, 40.80, 59.73), "cimha_wo_ms": (23.41, 41.73, 60.49),
                             "cimha": (25.13, 43.97, 61.49)},
}
NAMES = {"mha": "MHA", "cimha_wo_ms": "CI-MHA w/o MS", "cimha": "CI-MHA"}
KEYS = ("R1@0.7", "R1@0.5", "R1@0.3")
lines = ["| row | " + " | ".join(f"{k} ours | {k} paper" for k in KEYS) + " |", "|---" * 7 + "|"]
for variant, m in results.items():
  paper = PAPER[DATASET][variant]
  lines.append(f"| {NAMES[variant]} | " + " | ".join(f"{m[k]:.2f} | {p:.2f}" for k, p in zip(KEYS, paper)) + " |")
display(Markdown(f"**{DATASET}{' (SMOKE: synthetic data)' if SMOKE else ''}**\n\n" + "\n".join(lines)))
display(Markdown("All our metrics:\n\n" + metrics_table({NAMES[v]: m for v, m in results.items()})))
'''),
      code(r'''
# R@1 over IoU 0.1 ... 0.9, the ablation rows side by side.
from cimha_tf.evaluation import visualize
curve_png = visualize.plot_recall_curves(
    {NAMES[v]: workdir(v) / "predictions" / f"{TEST_SPLIT}.jsonl" for v in results},
    ground_truth=DATA_DIR / "annotations" / f"{TEST_SPLIT}.jsonl",
    output=OUTPUT / f"{DATASET}_recall_curves.png")
display(Image(filename=str(curve_png)))
'''),
      code(r'''
# A few test queries as the full model sees them (written by evaluate).
best = VARIANTS[-1]
for fig in [p for p in sorted((workdir(best) / "figures").glob("*.png")) if "recall" not in p.name][:3]:
  print(fig.name)
  display(Image(filename=str(fig)))
'''),
  ], gpu=True)


NOTEBOOKS = {"quickstart.ipynb": quickstart, "reproduce_paper.ipynb": reproduce_paper}


def build(name):
  nb = NOTEBOOKS[name]()
  nbformat.validate(nb)
  return nbformat.writes(nb) + "\n"


def main(argv):
  out_dir = argv[1] if len(argv) > 1 else HERE
  for name in NOTEBOOKS:
    with open(os.path.join(out_dir, name), "w") as f:
      f.write(build(name))
    print("wrote", os.path.join(out_dir, name))


if __name__ == "__main__":
  main(sys.argv)

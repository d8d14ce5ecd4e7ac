"""Figure 4: peak memory (resident set, MiB) of each kind of process, one fresh process
per role so the peaks do not mix: TF+Keras imported only; a training step (batch 100); Keras inference (batch 100); TFLite float32 (batch 1, after
conversion: the conversion's peak is the converting process's, the interpreter alone is
far smaller); the input pipeline alone. Peak RSS = the process's VmHWM (bench.common.peak_rss_mb),
which includes TensorFlow's C++ allocations (tracemalloc would see only Python objects).

  python -m bench.memory [--quick] [--roles=a,b] [--output=bench/results/memory.json]
"""

import json
import os
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

from bench import common

ROLE = flags.DEFINE_string("role", None, "internal: run one role in this process")
ROLES_FLAG = flags.DEFINE_list("roles", None, "subset of the roles to run (default: all)")
ROLES = ("import_only", "train_keras", "inference_keras", "tflite_float32", "input_pipeline")
QUICK_ROLES = ("import_only", "inference_keras")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_role(role, s):
  import tensorflow as tf  # noqa: F401  (the baseline: what importing costs)
  import keras  # noqa: F401
  from bench import models
  out = {}
  if role.startswith("train_"):
    from bench.train_throughput import measure
    out = measure(s, s["batch_size"], role.split("_", 1)[1], False, 1)["samples_per_s"]
  elif role == "inference_keras":
    from bench.inference import keras_engine
    model, _ = models.build(s, "keras")
    out = keras_engine(model, s, False)
  elif role == "tflite_float32":
    from bench.inference import _inputs
    from cimha_tf.deploy import tflite
    model, _ = models.build(s, "keras")
    blob = tflite.convert(model, s["max_video_len"], s["max_query_len"], "none", batch_size=1)
    converted_rss = common.peak_rss_mb()
    # The interpreter in a process of its own, as on a device.
    with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as f:
      f.write(blob)
    # LiteRT alone, as TFLiteModel runs it: cimha_tf.deploy.tflite imports TensorFlow and
    # Keras (~600 MiB), which a device never loads.
    code = ("import sys, numpy as np\n"
            "from ai_edge_litert.interpreter import Interpreter\n"
            f"it = Interpreter(model_path={f.name!r}, num_threads={os.cpu_count()})\n"
            "it.allocate_tensors()\n"
            "run = it.get_signature_runner()\n"
            "feeds = {k: (np.zeros if k == 'video_features' else np.ones)(d['shape'], d['dtype'])\n"
            "         for k, d in run.get_input_details().items()}\n"
            "for _ in range(5):\n"
            "  it.reset_all_variables()\n"
            "  run(**feeds)\n"
            "from bench.common import peak_rss_mb\n"
            "assert 'tensorflow' not in sys.modules\n"
            "print(peak_rss_mb())\n")
    try:
      r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600, check=True, cwd=_REPO)
      out = {"converting_process_peak_rss_mb": converted_rss,
             "interpreter_process_peak_rss_mb": float(r.stdout.strip().splitlines()[-1])}
    finally:
      os.remove(f.name)
  elif role == "input_pipeline":
    from bench.input_pipeline import make_prepared, pipeline_rate
    with tempfile.TemporaryDirectory() as tmp:
      data_dir, _ = make_prepared(tmp, s)
      out = pipeline_rate(data_dir, s["batch_size"], 1 << 40, 5)["examples_per_s"]
  elif role != "import_only":
    raise ValueError(f"--role={role!r}: expected one of {ROLES}")
  return {"role": role, "peak_rss_mb": common.peak_rss_mb(), "detail": out}


def main(argv):
  del argv
  s = common.shapes()
  if ROLE.value:
    print("ROLE_RESULT " + json.dumps(run_role(ROLE.value, s)))
    return
  results, notes = {}, []
  for role in ROLES_FLAG.value or (QUICK_ROLES if common.QUICK.value else ROLES):
    cmd = [sys.executable, "-m", "bench.memory", f"--role={role}"]
    if common.QUICK.value:
      cmd.append("--quick")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3000,
                       cwd=_REPO)
    lines = [l for l in r.stdout.splitlines() if l.startswith("ROLE_RESULT ")]
    if r.returncode != 0 or not lines:
      notes.append(f"{role}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
      continue
    results[role] = json.loads(lines[-1][len("ROLE_RESULT "):])
    print(f"{role}: {results[role]['peak_rss_mb']:.0f} MiB", flush=True)
  notes.append("peak RSS (VmHWM) of a fresh process per role")
  common.report("memory", results, notes, extra={"shapes": s})


if __name__ == "__main__":
  app.run(main)

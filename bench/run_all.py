"""Runs every figure in one process (saves a TensorFlow start per figure) and writes
OUTPUT_DIR/NAME.json for each; `--quick` is what tests/test_bench_quick.py runs.

  python -m bench.run_all [--quick] [--output_dir=bench/results] [--figures=a,b]
"""

import importlib
import importlib.util
import os
import time

from absl import app
from absl import flags

from bench import common

FIGURES = ("train_throughput", "inference", "input_pipeline", "memory", "flops",
           "profile_step", "profile_inference", "profile_tflite", "peers")
# Figures that are another figure's module run with some flags set.
_VARIANTS = {"profile_inference": ("profile_step", {"mode": "inference", "steps": 5})}
OUTPUT_DIR = flags.DEFINE_string("output_dir", "bench/results", "folder for NAME.json")
ONLY = flags.DEFINE_list("figures", None, f"subset of {FIGURES}")


def main(argv):
  names = ONLY.value or FIGURES
  unknown = sorted(set(names) - set(FIGURES))
  if unknown:
    raise app.UsageError(f"--figures: unknown {unknown}; expected some of {FIGURES}")
  os.makedirs(OUTPUT_DIR.value, exist_ok=True)
  for name in names:
    if name == "peers" and importlib.util.find_spec("torch") is None:
      # The peer is PyTorch, which cimha-tf does not depend on (bench/peers.py).
      print("[run_all] peers: skipped, PyTorch is not installed "
            "(pip install torch==2.13.0)", flush=True)
      continue
    module_name, settings = _VARIANTS.get(name, (name, {}))
    module = importlib.import_module(f"bench.{module_name}")
    flags.FLAGS.output = os.path.join(OUTPUT_DIR.value, f"{name}.json")
    saved = {k: flags.FLAGS[k].value for k in settings}
    for k, v in settings.items():
      flags.FLAGS[k].value = v
    t0, c0 = time.perf_counter(), time.process_time()
    try:
      module.main(argv)
    finally:
      for k, v in saved.items():
        flags.FLAGS[k].value = v
    # CPU seconds too: on the shared machine wall time mostly measures the neighbours
    print(f"[run_all] {name}: {time.perf_counter() - t0:.1f} s wall, "
          f"{time.process_time() - c0:.1f} s CPU", flush=True)


if __name__ == "__main__":
  app.run(main)

"""Markdown tables from the figures' JSON (bench/results/*.json) for docs/benchmarks.md.

  python -m bench.report [--results=bench/results]
"""

import json
import os

from absl import app
from absl import flags

RESULTS = flags.DEFINE_string("results", "bench/results", "folder of NAME.json files")


def _load(results_dir, name):
  p = os.path.join(results_dir, f"{name}.json")
  if not os.path.exists(p):
    return None
  with open(p) as f:
    return json.load(f)


def _rate(r):
  return f"{r['median']:.1f} ({r['low']:.1f}-{r['high']:.1f})"


def render(results_dir):
  """Markdown for every figure found in results_dir."""
  out = []
  d = _load(results_dir, "train_throughput")
  if d:
    m = d["machine"]
    out += [f"### 1. Training throughput ({m['time_utc']}, load {m['load_avg_1_5_15']})", "",
            "| variant | batch | samples/s median (min-max) | x keras | first execution s "
            "| warm-up s |", "|---|---|---|---|---|---|"]
    # Older files have only warmup_s: the whole warm-up fit, trace included.
    secs = lambda r, k: f"{r[k]:.0f}" if k in r else "-"
    for k, r in d["results"].items():
      sp = r.get("speedup_vs_keras_same_batch")
      out.append(f"| {k.split('@')[0]} | {r['batch_size']} | {_rate(r['samples_per_s'])} | "
                 f"{sp:.2f} |" if sp else f"| {k.split('@')[0]} | {r['batch_size']} | "
                 f"{_rate(r['samples_per_s'])} | - |")
      out[-1] += f" {secs(r, 'first_execution_s')} | {secs(r, 'warmup_s')} |"
    out += [""] + [f"- {n}" for n in d["notes"]] + [""]
  d = _load(results_dir, "inference")
  if d:
    m = d["machine"]
    out += [f"### 2. Inference ({m['time_utc']}, load {m['load_avg_1_5_15']})", "",
            "| engine | batch-1 latency ms (min-max) | batch-100 samples/s (min-max) |",
            "|---|---|---|"]
    free_axis = []
    for k, r in d["results"].items():
      b1 = r.get("batch1")
      bn = [v for kk, v in r.items() if kk.startswith("batch") and kk != "batch1"]
      if "latency_128_valid" in r:
        free_axis.append(f"- {k}, batch 1: {b1['latency_ms']:.2f} ms at the example's "
                         f"{b1['valid_steps'][0]} valid steps, "
                         f"{r['latency_128_valid']['latency_ms']:.2f} ms at 128, "
                         f"{r['latency_mixed_lengths']['latency_ms']:.2f} ms per query over "
                         f"mixed lengths (mean {r['latency_mixed_lengths']['mean_valid_steps']:.0f})")
      lat = (f"{b1['latency_ms']:.2f} ({1e3 * b1['timing']['min_s']:.2f}-"
             f"{1e3 * b1['timing']['max_s']:.2f})") if b1 else "-"
      thr = _rate(bn[0]["samples_per_s"]) if bn else "-"
      if len(bn) > 1:  # keras_buckets: plain batches first, then each bucketing of them
        thr = "; ".join(f"{kk.split('_', 1)[1]} {_rate(v['samples_per_s'])}"
                        + (f", {v['speedup_vs_plain_same_examples']:.2f}x"
                           if v.get("speedup_vs_plain_same_examples", 1) != 1 else "")
                        for kk, v in r.items() if kk.startswith("batch") and kk != "batch1")
      out.append(f"| {k} | {lat} | {thr} |")
    out += [""] + free_axis + [f"- {n}" for n in d["notes"]] + [""]
  d = _load(results_dir, "input_pipeline")
  if d:
    r = d["results"]
    out += ["### 3. Input pipeline", "", "| regime | examples/s (min-max) | ratio to training |",
            "|---|---|---|"]
    for k, v in r.items():
      if k.startswith("pipeline_"):
        out.append(f"| {k} | {_rate(v['examples_per_s'])} | {v['ratio_to_training']:.1f} |")
    out.append(f"| training step (model default) | {_rate(r['train_step']['samples_per_s'])} | 1 |")
    out += ["", f"- dataset: {r['dataset']}"] + [f"- {n}" for n in d["notes"]] + [""]
  d = _load(results_dir, "memory")
  if d:
    out += ["### 4. Peak memory (RSS, MiB, one process per role)", "", "| role | peak RSS MiB |",
            "|---|---|"]
    for k, r in d["results"].items():
      extra = ""
      if isinstance(r.get("detail"), dict) and "interpreter_process_peak_rss_mb" in r["detail"]:
        extra = f" (interpreter process: {r['detail']['interpreter_process_peak_rss_mb']:.0f})"
      out.append(f"| {k} | {r['peak_rss_mb']:.0f}{extra} |")
    out += [""]
  d = _load(results_dir, "flops")
  if d:
    r = d["results"]
    out += ["### 5. FLOPs and achieved rate", "",
            f"- forward: {r['forward_flops_per_sample'] / 1e6:.1f} MFLOP/sample; training step: "
            f"{r['train_flops_per_sample'] / 1e6:.1f} MFLOP/sample",
            f"- fp32 matmul rate measured in the same process: "
            f"{r['matmul_rate']['flops_per_s'] / 1e9:.1f} GFLOP/s before, "
            f"{r['matmul_rate_after']['flops_per_s'] / 1e9:.1f} after", "",
            "| block | forward MFLOP/sample | share |", "|---|---|---|"]
    tot = r["forward_flops_per_sample"]
    for k, v in r["forward_flops_by_block"].items():
      out.append(f"| {k} | {v / 1e6:.1f} | {100 * v / tot:.0f}% |")
    out += ["", "| run | samples/s | achieved GFLOP/s | fraction of matmul rate |",
            "|---|---|---|---|"]
    for k, a in r["achieved"].items():
      out.append(f"| {k} | {a['samples_per_s']:.1f} | {a['flops_per_s'] / 1e9:.2f} | "
                 f"{a['fraction_of_matmul_rate']:.2f} |")
    out += [""]
  d = _load(results_dir, "profile_tflite")
  if d:
    out += ["### TFLite batch-1 latency by parts", "", "| part | ms |", "|---|---|"]
    for k, r in d["results"].items():
      if not k.startswith("summary"):
        out.append(f"| {k} | {r['latency_ms']:.2f} |")
    for form in ("float32", "int8"):
      r = d["results"][f"summary {form}"]
      out.append(f"| **{form}: LSTM ops alone / whole model** | {r['lstm_ops_alone_ms']:.2f} / "
                 f"{r['model_ms']:.2f} ({100 * r['lstm_share']:.0f}%) |")
    g = d["runtime_weights_speedup"]
    out.append(f"| float32: constant / per-query LSTM weights, round by round | "
               f"{g['median']:.2f}x ({g['low']:.2f}-{g['high']:.2f}) |")
    out += [""]
  d = _load(results_dir, "peers")
  if d:
    m, r = d["machine"], d["results"]
    out += [f"### The peer in the same run ({m['time_utc']}, torch {d['torch']})", "",
            "| task | ExCL-style peer | cimha-tf | ours / peer (target) | round by round |",
            "|---|---|---|---|---|"]
    by_round = d["ratio_ours_over_peer_by_round"]
    for task, ratio in d["ratio_ours_over_peer"].items():
      cells = [f"{r[s][task]['latency_ms']:.2f} ms" if "latency_ms" in r[s][task]
               else f"{_rate(r[s][task]['samples_per_s'])} samples/s" for s in ("ExCL", "cimha-tf")]
      target = d["target_ratio"].get(task)
      b = by_round[task]
      out.append(f"| {task} | {cells[0]} | {cells[1]} | {ratio:.2f}x"
                 + (f" ({target}x)" if target else "")
                 + f" | {b['median']:.2f}x ({b['low']:.2f}-{b['high']:.2f}) |")
    out += [""]
  return "\n".join(out)


def main(argv):
  del argv
  print(render(RESULTS.value))


if __name__ == "__main__":
  app.run(main)

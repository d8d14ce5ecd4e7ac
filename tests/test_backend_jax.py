"""The model layers under KERAS_BACKEND=jax give TensorFlow's numbers.

This (TF) process builds every variant in each LSTM form and saves its weights
(.weights.h5), inputs with real masks (random lengths, NaN in the padding) and outputs.
A subprocess under KERAS_BACKEND=jax, with TensorFlow made unimportable, builds the same
configs, loads the weights, and returns the largest |TF - JAX| of every output, of the
losses.py losses on them and of a .keras file loaded as is. Slow tests (~20 s of XLA
compilation per model on a loaded 2-core CPU): one jit-compiled model.fit step per
variant under JAX, and `bench.jax_speed --quick` without TensorFlow. Skipped when jax is
not installed: it is no requirement, only the GPU speed check (bench/jax_speed.py) uses it.

  KERAS_BACKEND=jax python -m tests.test_backend_jax DIR [compare|fit]  # JAX side only
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

if __name__ != "__main__" and importlib.util.find_spec("jax") is None:
  # find_spec, not importorskip: importing jax into the TF test process is not needed.
  pytest.skip("jax is not installed (pip install 'jax[cpu]' to check the JAX backend)",
              allow_module_level=True)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (variant, cross_fusion, cross_skip, lstm_implementation, private_fast_path[,
# sentence_product]): the paper's three rows, the full model in the other LSTM forms (JAX:
# Keras's LSTM and ops.scan are lax.scan loops, "unrolled" plain ops), the other eq-9
# fusion, the literal (no-skip) eqs 7-8, the private fast path's attention (its dropout is
# Keras's off TensorFlow), and model.sentence_product.
CASES = [("mha", "backprojection", True, "keras", False),
         ("cimha_wo_ms", "backprojection", True, "keras", False),
         ("cimha", "backprojection", True, "keras", False),
         ("cimha", "backprojection", True, "scan", False),
         ("cimha", "backprojection", True, "unrolled", False),
         ("cimha", "pool_tile", True, "keras", False),
         ("cimha", "backprojection", False, "keras", False),
         ("cimha", "backprojection", True, "keras", True),
         ("cimha", "backprojection", True, "keras", False, True)]
DV, VOCAB, N, L = 12, 40, 11, 6
VIDEO_LENGTHS, QUERY_LENGTHS = [11, 1, 7, 4, 9], [6, 1, 3, 5, 2]
TOL = 1e-5  # float32: measured max |TF - JAX| is ~1e-7


def config(variant, fusion, skip, impl, fast=False, product=False):
  from cimha_tf import model as M
  c = M.default_config()
  c.update(dict(variant=variant, cross_fusion=fusion, cross_skip=skip, width=16,
                num_heads=2, ffn_width=16, query_lstm_units=8, span_lstm_units=8, mlp_width=8,
                embedding_dim=6, max_video_len=16, max_query_len=8, dropout=0.1,
                lstm_implementation=impl, private_fast_path=fast, sentence_product=product))
  return c


def cases():
  """(name, config) of every compared model."""
  return [(f"{v}-{f}-{'skip' if skip else 'noskip'}-{impl}{'-private' if fast else ''}"
           f"{'-product' if product else ''}", config(v, f, skip, impl, fast, product))
          for v, f, skip, impl, fast, *rest in CASES for product in [bool(rest and rest[0])]]


def inputs_and_labels():
  rng = np.random.default_rng(0)
  nv, nq = np.array(VIDEO_LENGTHS), np.array(QUERY_LENGTHS)
  mask = (np.arange(N)[None] < nv[:, None]).astype(np.float32)
  feats = rng.normal(size=(len(nv), N, DV)).astype(np.float32)
  feats[mask == 0] = np.nan  # the model must never read its padding
  tokens = rng.integers(2, VOCAB, (len(nv), L)).astype(np.int32)
  tokens[np.arange(L)[None] >= nq[:, None]] = 0
  start = (nv // 3).astype(np.int32)
  end = np.maximum(start, nv - 2).astype(np.int32)
  steps = np.arange(N)[None]
  inside = np.where(mask > 0, (steps >= start[:, None]) & (steps <= end[:, None]), -1.0)
  return ({"video_features": feats, "video_mask": mask, "query_tokens": tokens},
          {"start_probs": start, "end_probs": end, "inside_probs": inside.astype(np.float32)})


def predict(model, x):
  return {k: np.asarray(v) for k, v in model.predict(x, batch_size=len(x["video_mask"]),
                                                     verbose=0).items()}


def losses(c, outputs, labels):
  """{output: per-sample loss} of losses.py's functions on numpy outputs."""
  from cimha_tf.model import losses as losses_lib
  fns, _ = losses_lib.losses_and_weights(c)
  return {k: np.asarray(fn(labels[k], outputs[k])) for k, fn in fns.items()}


def tf_side(d):
  """Builds, saves and runs every case under TensorFlow (the calling process's backend)."""
  import keras
  from cimha_tf import model as M
  assert keras.backend.backend() == "tensorflow"
  x, y = inputs_and_labels()
  expected = {}
  for name, c in cases():
    keras.utils.set_random_seed(0)
    model = M.build_model(c, DV, VOCAB)
    model.save_weights(os.path.join(d, f"{name}.weights.h5"))
    out = predict(model, x)
    expected.update({f"{name}/{k}": v for k, v in out.items()})
    expected.update({f"{name}/loss/{k}": v for k, v in losses(c, out, y).items()})
    if name == "cimha-backprojection-skip-keras":
      model.save(os.path.join(d, "cimha.keras"))
  np.savez(os.path.join(d, "tf.npz"), **expected)


def max_diffs(got, expected):
  return {k: float(np.max(np.abs(got[k] - expected[k]))) for k in got}


def fit_step(c, x, y):
  """One model.fit step with losses.py's compile_model (dropout on): its loss and the
  trainable weights that it left unchanged (none should be)."""
  from cimha_tf import model as M
  model = M.build_model(c, DV, VOCAB)
  before = [np.array(w) for w in model.trainable_weights]
  M.compile_model(model, c, learning_rate=1e-2)  # jit_compile: Keras's default (on JAX)
  hist = model.fit(x, y, batch_size=len(y["start_probs"]), epochs=1, verbose=0).history
  unchanged = [w.path for w, b in zip(model.trainable_weights, before)
               if np.array_equal(np.asarray(w), b)]
  return {"loss": float(hist["loss"][0]), "unchanged": unchanged}


def jax_side(d, part="compare"):
  """-> JSON-able results; run under KERAS_BACKEND=jax without TensorFlow.
  part "compare": every case's outputs and losses, and the .keras file's outputs, as the
  largest |TF - JAX|; "fit": one fit step per variant."""
  import keras
  from cimha_tf import model as M
  assert keras.backend.backend() == "jax", keras.backend.backend()
  x, y = inputs_and_labels()
  if part == "fit":
    return {"fit": {v: fit_step(config(v, "backprojection", True, "keras"), x, y)
                    for v in ("mha", "cimha_wo_ms", "cimha")}}
  expected = dict(np.load(os.path.join(d, "tf.npz")))
  results = {"outputs": {}, "losses": {}}
  for name, c in cases():
    model = M.build_model(c, DV, VOCAB)
    model.load_weights(os.path.join(d, f"{name}.weights.h5"))
    out = predict(model, x)
    results["outputs"][name] = max_diffs({f"{name}/{k}": v for k, v in out.items()}, expected)
    results["losses"][name] = max_diffs(
        {f"{name}/loss/{k}": v for k, v in losses(c, out, y).items()}, expected)
  loaded = keras.models.load_model(os.path.join(d, "cimha.keras"))
  name = "cimha-backprojection-skip-keras"
  results["outputs"]["cimha.keras"] = max_diffs(
      {f"{name}/{k}": v for k, v in predict(loaded, x).items()}, expected)
  return results


def run_jax_side(d, part):
  env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
  r = subprocess.run([sys.executable, "-m", "tests.test_backend_jax", d, part], cwd=REPO,
                     env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-4000:]
  return json.loads(r.stdout.split("RESULT ", 1)[1])


@pytest.fixture(scope="module")
def jax_results(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("jax"))
  tf_side(d)
  return run_jax_side(d, "compare")


def test_jax_outputs_equal_tensorflows(jax_results):
  names = [name for name, _ in cases()] + ["cimha.keras"]
  assert sorted(jax_results["outputs"]) == sorted(names)
  for name, diffs in jax_results["outputs"].items():
    assert len(diffs) == 3, (name, diffs)
    for k, diff in diffs.items():
      assert diff <= TOL, f"{k}: max |TF - JAX| = {diff:.3g}"


def test_jax_losses_equal_tensorflows(jax_results):
  for name, diffs in jax_results["losses"].items():
    assert len(diffs) == (3 if name.startswith("cimha-") else 2), (name, diffs)
    for k, diff in diffs.items():
      assert diff <= 1e-4, f"{k}: max |TF - JAX| = {diff:.3g}"


@pytest.mark.slow
def test_jax_fit_step_trains_every_weight(tmp_path):
  fit = run_jax_side(str(tmp_path), "fit")["fit"]
  assert sorted(fit) == ["cimha", "cimha_wo_ms", "mha"]
  for variant, r in fit.items():
    assert np.isfinite(r["loss"]), (variant, r)
    assert not r["unchanged"], f"{variant}: weights unchanged by the step: {r['unchanged']}"


# bench/jax_speed.py is for a machine with JAX and no TensorFlow: run with TF unimportable.
NO_TF = "import runpy, sys; sys.modules['tensorflow'] = None; "


def test_jax_speed_imports_without_tensorflow():
  r = subprocess.run([sys.executable, "-c", NO_TF + "import bench.jax_speed"], cwd=REPO,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr[-4000:]


@pytest.mark.slow
def test_jax_speed_quick_runs_without_tensorflow(tmp_path):
  out = tmp_path / "jax_speed.json"
  code = NO_TF + (f"sys.argv = ['jax_speed', '--quick', '--output={out}']; "
                  "runpy.run_module('bench.jax_speed', run_name='__main__', alter_sys=True)")
  r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                     env=dict(os.environ, JAX_PLATFORMS="cpu"), timeout=600)
  assert r.returncode == 0, r.stderr[-4000:]
  payload = json.loads(out.read_text())
  assert payload["machine"]["keras_backend"] == "jax"
  for kind in ("train", "inference"):
    r = payload["results"][kind]["scan"]
    assert r["samples_per_s"]["median"] > 0 and r["timing"]["reps"] >= 1, (kind, r)
  assert np.isfinite(payload["results"]["train"]["scan"]["last_loss"])


if __name__ == "__main__":
  sys.modules["tensorflow"] = None  # any TF import in the model's JAX path fails loudly
  print("RESULT " + json.dumps(jax_side(*sys.argv[1:])))

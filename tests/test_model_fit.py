"""model.fit through compile_model: overfitting a planted-moment batch, and tf.distribute."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import keras

from cimha_tf import model as M
from cimha_tf.common.timeline import inside_mask
from tests.helpers import tiny_model_config


def planted_batch(seed=0, b=8, n=12, dv=6):
  """Query word w (2..5) marks the moment by feature dim w-2 switched on inside it."""
  rng = np.random.default_rng(seed)
  feats = rng.normal(scale=0.1, size=(b, n, dv)).astype(np.float32)
  lengths = rng.integers(6, n + 1, b)
  mask = (np.arange(n)[None] < lengths[:, None]).astype(np.float32)
  tokens = np.zeros((b, 3), np.int32)
  start, end = np.zeros(b, np.int32), np.zeros(b, np.int32)
  inside = np.zeros((b, n), np.float32)
  for i in range(b):
    w = 2 + i % 4
    tokens[i, :2] = [w, 6 + i % 3]  # second word is noise
    s = rng.integers(0, lengths[i] - 2)
    e = rng.integers(s, min(s + 4, lengths[i]))
    feats[i, s:e + 1, w - 2] += 1.0
    start[i], end[i] = s, e
    inside[i] = inside_mask(s, e, lengths[i], n)
  x = {"video_features": feats, "video_mask": mask, "query_tokens": tokens}
  y = {"start_probs": start, "end_probs": end, "inside_probs": inside}
  return x, y


def test_fit_overfits_planted_moments_and_decodes_them():
  keras.utils.set_random_seed(1)
  c = tiny_model_config(dropout=0.0)
  model = M.build_model(c, 6, 10)
  M.compile_model(model, c, learning_rate=1e-2, jit_compile=False)
  x, y = planted_batch()
  ds = tf.data.Dataset.from_tensors((x, y)).repeat()
  first = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
  model.fit(ds, steps_per_epoch=250, epochs=1, verbose=0, shuffle=False)
  last = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
  assert last < 0.1 * first, (first, last)
  out = model.predict(x, verbose=0)
  start, end, _ = M.decode_spans(out["start_probs"], out["end_probs"], x["video_mask"], 1)
  np.testing.assert_array_equal(start.numpy()[:, 0], y["start_probs"])
  np.testing.assert_array_equal(end.numpy()[:, 0], y["end_probs"])
  inside = out["inside_probs"] > 0.5
  np.testing.assert_array_equal(inside, y["inside_probs"] == 1)


@pytest.mark.parametrize("variant", ["cimha", "cimha_wo_ms", "mha"])
def test_compiled_model_traces_its_train_step_once(variant):
  # Loss trackers and Adam's slots exist before fit, so the first step is traced once
  # (created inside it, they make tf.function trace the whole step again). The ablation
  # rows, without a segment loss, take the pipeline's three labels all the same.
  c = tiny_model_config(variant)
  model = M.build_model(c, 6, 10)
  M.compile_model(model, c)
  assert model.optimizer.built and len(model.optimizer.variables) > 2
  assert model._compile_loss.built
  traces = []
  step = model.train_step
  model.train_step = lambda data: traces.append(1) or step(data)
  x, y = planted_batch()
  model.fit(tf.data.Dataset.from_tensors((x, y)).repeat(), steps_per_epoch=3, verbose=0, shuffle=False)
  assert len(traces) == 1


def test_cut_time_axis_changes_no_loss_or_update():
  """Length buckets (pipeline.cut_time_axis) drop padded steps: the loss and the SGD update
  of a padded batch and of its cut form agree."""
  from cimha_tf.data.pipeline import cut_time_axis
  c = tiny_model_config(dropout=0.0)
  x, y = planted_batch(n=12)
  pad = 9  # 12 -> 21 steps, garbage features on the new padded steps
  xp = {**x, "video_features": np.concatenate(
            [x["video_features"], np.full((8, pad, 6), 7.0, np.float32)], 1),
        "video_mask": np.pad(x["video_mask"], [(0, 0), (0, pad)])}
  yp = {**y, "inside_probs": np.pad(y["inside_probs"], [(0, 0), (0, pad)], constant_values=-1.0)}
  xc, yc = cut_time_axis(xp, yp, 4)
  assert xc["video_features"].shape[1] == 12 and yc["inside_probs"].shape[1] == 12
  results = []
  for batch in ((xp, yp), (xc, yc)):
    keras.utils.set_random_seed(3)
    model = M.build_model(c, 6, 10)
    M.compile_model(model, c, optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    loss = model.train_on_batch(*batch, return_dict=True)["loss"]
    results.append((loss, model.get_weights()))
  (l1, w1), (l2, w2) = results
  np.testing.assert_allclose(l1, l2, rtol=1e-5)
  for a, b in zip(w1, w2):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_varying_time_axis_traces_the_train_step_once():
  """A length-bucketed pipeline's batches differ in N; its free time axis means one trace."""
  c = tiny_model_config()
  model = M.build_model(c, 6, 10)
  M.compile_model(model, c)
  traces = []
  step = model.train_step
  model.train_step = lambda data: traces.append(1) or step(data)
  batches = [planted_batch(seed=i, n=n) for i, n in enumerate([12, 8, 16, 8])]
  spec = tf.nest.map_structure(
      lambda a: tf.TensorSpec((None,) * a.ndim if a.dtype == np.float32 else (None,) + a.shape[1:],
                              a.dtype), batches[0])
  ds = tf.data.Dataset.from_generator(lambda: iter(batches), output_signature=spec)
  ds = ds.apply(tf.data.experimental.assert_cardinality(len(batches)))  # a known epoch end
  h = model.fit(ds, epochs=1, verbose=0, shuffle=False)
  assert len(traces) == 1 and np.isfinite(h.history["loss"][0])


_DISTRIBUTED = textwrap.dedent("""
  import os, sys
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
  sys.path.insert(0, {repo!r})
  import numpy as np, tensorflow as tf, keras
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from cimha_tf import model as M
  c = tiny_model_config(dropout=0.0)
  x, y = planted_batch(b=8)
  weights = []
  for strategy in (tf.distribute.get_strategy(),
                   tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])):
    with strategy.scope():
      keras.utils.set_random_seed(3)
      model = M.build_model(c, 6, 10)
      M.compile_model(model, c, optimizer=keras.optimizers.SGD(0.1), jit_compile=False)
    ds = tf.data.Dataset.from_tensors((x, y))
    h = model.fit(ds, epochs=1, verbose=0, shuffle=False)
    weights.append((h.history["loss"][0], model.get_weights()))
  (l1, w1), (l2, w2) = weights
  assert abs(l1 - l2) < 1e-5 * max(1, abs(l1)), (l1, l2)
  for a, b in zip(w1, w2):
    np.testing.assert_allclose(a, b, atol=1e-5)
  print("OK", l1, l2)
""")


@pytest.mark.slow
def test_mirrored_strategy_matches_single_device(tmp_path):
  """One SGD step on 2 replicas (4 samples each) == one step on 8 samples: the loss is
  the global-batch mean, so gradients are not doubled or halved."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  script = tmp_path / "dist.py"
  script.write_text(_DISTRIBUTED.format(repo=repo))
  r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                     timeout=900, env={**os.environ, "KERAS_BACKEND": "tensorflow"})
  assert r.returncode == 0 and "OK" in r.stdout, r.stdout[-2000:] + r.stderr[-4000:]

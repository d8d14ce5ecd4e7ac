"""The compositional set (bench/learning/compositional.py, issue 22's held-out kind): its
oracle finds what was planted, its noise keywords do what they say, and the shipped demo
recipe learns a small one well above what a predictor blind to the video gets. The last
test is the guard issue 22 asks for: a recipe change that stops the model from combining
the verb and the object with the video fails it. Measured on this set (seed 0): the demo
recipe 75.9, the same with the paper's eq 9 alone (model.sentence_product=False) 49.6,
the fixed prior 18.8, the oracle 93.2."""

import os

import numpy as np
import pytest

from bench.learning import compositional
from cimha_tf.data.annotations import read_dataset

# The guard's run: a small set whose oracle is ~96, trained with configs/demo.py as shipped.
GUARD_SET = dict(num_train=200, num_test=60, dim=64, noise=0.35, ar=0.0, offset_std=0.0)
GUARD_EPOCHS = 12
GUARD_R1_AT_05 = 60.0   # stated threshold (module docstring: the numbers it separates)


def _prepare(raw, out, **kwargs):
  from cimha_tf.data import prepare
  from cimha_tf.data.prepare import carve_val
  paths = compositional.generate(raw, seed=0, **kwargs)
  splits = carve_val(read_dataset("charades_sta", paths["annotations"]), 6)
  prepare.prepare_splits(splits, paths["features"], out, max_video_len=64, max_query_len=16,
                         progress=False)
  return out


def test_oracle_finds_what_was_planted_without_noise(tmp_path):
  for name, kwargs in (("smooth", {}), ("iid", dict(ar=0.0, offset_std=0.0))):
    raw = str(tmp_path / name)
    compositional.generate(raw, seed=1, num_train=4, num_test=30, noise=0.0, **kwargs)
    m = compositional.oracle_metrics(raw)
    assert m["R1@0.7"] == 100.0, name


def test_noise_keywords_shape_the_features(tmp_path):
  def video(**kwargs):
    raw = str(tmp_path / str(sorted(kwargs.items())))
    compositional.generate(raw, seed=2, num_train=1, num_test=1, dim=512, noise=0.5, **kwargs)
    planted = np.load(os.path.join(raw, compositional.PLANTED))
    x = np.load(os.path.join(raw, "features", "CMP00000.npy")).astype(np.float64)
    return x, planted["offset_CMP00000"]

  def lag1(x):
    x = x - x.mean(0)
    return float((x[1:] * x[:-1]).sum() / (x * x).sum())

  iid, offset = video(ar=0.0, offset_std=0.0)
  assert np.all(offset == 0.0) and abs(lag1(iid)) < 0.1
  smooth, offset = video()
  assert lag1(smooth - offset) > 0.5                       # AR(1) = 0.7, less the signal
  assert np.std(offset) == pytest.approx(0.5, rel=0.15)    # offset_std defaults to noise
  a = video(ar=0.0, offset_std=0.0)[0]
  np.testing.assert_array_equal(a, iid)                    # seeded


def test_demo_recipe_learns_a_compositional_set(tmp_path):
  from cimha_tf.configs import demo
  from cimha_tf.evaluation import baselines, runner, scorer
  from cimha_tf.training import trainer
  data = _prepare(str(tmp_path / "raw"), str(tmp_path / "prepared"), **GUARD_SET)
  c = demo.get_config()
  c.data.dir = data
  c.train.epochs = GUARD_EPOCHS
  model, _ = trainer.train(c, str(tmp_path / "w"), verbose=0)
  metrics, _ = runner.evaluate_split(model, data, "test", 64, 5, progress=False,
                                     max_span_fraction=runner.resolve_max_span(c))
  test = runner.read_ground_truth(data, "test")
  window = baselines.fit_fixed_prior(runner.read_ground_truth(data, "train"))
  prior = scorer.score_predictions(baselines.predict_fixed_prior(window, test), test)["R1@0.5"]
  oracle = compositional.oracle_metrics(str(tmp_path / "raw"))["R1@0.5"]
  assert prior < 35.0 < GUARD_R1_AT_05 < oracle
  assert metrics["R1@0.5"] >= GUARD_R1_AT_05, (metrics, prior, oracle)

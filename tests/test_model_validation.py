"""validate_inputs: each kind of bad input gives a ValueError naming the input."""

import numpy as np
import pytest

from cimha_tf import model as M
from tests.helpers import DV, VOCAB, random_inputs, tiny_model_config


def good():
  return random_inputs(np.random.default_rng(0), [5, 3], 6, [3, 1], 4)


def test_good_inputs_pass():
  M.validate_inputs(good(), tiny_model_config(), DV, VOCAB)


def _bad(**changes):
  x = good()
  for k, fn in changes.items():
    x[k] = fn(x[k])
  return x


@pytest.mark.parametrize("x,pattern", [
    (_bad(video_features=lambda v: v[0]), r"video_features: rank 2.*\(B, N, 7\)"),
    (_bad(video_features=lambda v: v[..., :5]), r"video_features: feature dim 5.*\(B, N, 7\)"),
    (random_inputs(np.random.default_rng(1), [25], 25, [2], 3),
     r"video_features: 25 steps.*max_video_len=24"),
    (_bad(video_mask=lambda m: m[:, :4]), r"video_mask: shape \(2, 4\).*\(2, 6\)"),
    (_bad(video_mask=lambda m: m * 0), r"video_mask: all-padding video in rows \[0, 1\]"),
    (_bad(video_mask=lambda m: m[:, ::-1].copy()), r"video_mask: a valid step after"),
    (_bad(video_mask=lambda m: m * 2), r"video_mask: values other than 0/1"),
    (_bad(video_features=lambda v: np.where(np.arange(6)[None, :, None] == 1, np.nan, v)),
     r"video_features: NaN/inf at valid steps in rows \[0, 1\]"),
    (_bad(query_tokens=lambda t: t * 0), r"query_tokens: empty \(all-padding\) query"),
    (_bad(query_tokens=lambda t: np.concatenate([t] * 3, 1)),
     r"query_tokens: 12 tokens.*max_query_len=8"),
    (_bad(query_tokens=lambda t: t.astype(np.float32)), r"query_tokens: dtype float32"),
    (_bad(query_tokens=lambda t: t + VOCAB), r"query_tokens: ids in .*vocab_size=30"),
    (_bad(query_tokens=lambda t: t[:, ::-1].copy()), r"query_tokens: a word after padding"),
    (_bad(query_tokens=lambda t: t[:1]), r"query_tokens: shape \(1, 4\)"),
])
def test_bad_inputs(x, pattern):
  with pytest.raises(ValueError, match=pattern):
    M.validate_inputs(x, tiny_model_config(), DV, VOCAB)


def test_missing_key_and_padding_nan_is_fine():
  x = good()
  del x["video_mask"]
  with pytest.raises(ValueError, match="video_mask: missing"):
    M.validate_inputs(x, tiny_model_config(), DV)
  x = good()
  x["video_features"][1, 4] = np.nan  # padded step of row 1: zeroed by the model
  M.validate_inputs(x, tiny_model_config(), DV)

"""The in-graph tokenizer gives exactly the Python tokenizer's tokens and ids."""

import json

import numpy as np
import pytest
import tensorflow as tf

from cimha_tf.data import text
from cimha_tf.deploy import graph_tokenizer


def _charades_queries(root):
  queries = []
  for name in ("charades_sta_train.txt", "charades_sta_test.txt"):
    with open(root / "charades_sta" / name, encoding="utf-8") as f:
      for line in f:
        if line.strip():
          queries.append(line.split("##", 1)[1].strip())
  return queries


def _activitynet_queries(root):
  queries = []
  for name in ("train.json", "val_1.json", "val_2.json"):
    with open(root / "activitynet_captions" / name, encoding="utf-8") as f:
      for video in json.load(f).values():
        queries.extend(s.strip() for s in video["sentences"])
  return queries


def _assert_same_tokens(queries):
  got = graph_tokenizer.tokenize(tf.constant(queries)).to_list()
  mismatches = [(q, [t.decode() for t in g], text.tokenize(q))
                for q, g in zip(queries, got)
                if [t.decode() for t in g] != text.tokenize(q)]
  assert not mismatches, f"{len(mismatches)} queries differ, e.g. {mismatches[:3]}"


TRICKY = [
    "A person's hand opens the door.", "DON’T stop", "“Quoted” • £5 piñata CAFÉ",
    "a\tb\nc  d", "x÷y×z", "  ", "", "---", "it's'", "'tis", "naïve über straße",
    "ÀÉÎ ŒŸ ǅ", "emoji 😀 here", "a-b_c#d", "1,000.5",
]


def test_tricky_strings_match_python_tokenizer():
  _assert_same_tokens(TRICKY)


# Every kind of whitespace and control character, NUL first (tf.strings.lower stops there).
CONTROL = [chr(c) for c in list(range(0x20)) + list(range(0x7F, 0xA0))] + [
    "\u00a0", "\u1680", "\u2000", "\u2007", "\u200b", "\u2028", "\u2029", "\u202f",
    "\u205f", "\u3000", "\ufeff", "\u00ad"]


def _around(chars):
  """Each character between, before and after tokens, and doubled: separators must separate."""
  return [s for c in chars for s in (f"walk{c}Away", f"{c}Door's", f"it{c}", f"x{c}{c}y'z{c}Ü")]


def test_control_characters_and_nul_match_python_tokenizer():
  queries = _around(CONTROL) + ["a\x00b\x00c", "\x00", "Hi\x00 THERE\x00\x00", "don'\x00t"]
  _assert_same_tokens(queries)
  tok = graph_tokenizer.GraphTokenizer(["<pad>", "<unk>", "a", "b"], max_len=4)
  # Independent expectation: NUL separates, and nothing after it is lost.
  np.testing.assert_array_equal(tok(tf.constant(["A\x00b\x00zz\x00a"])).numpy(), [[2, 3, 1, 2]])


def test_first_code_points_and_random_mixtures_match_python_tokenizer():
  rng = np.random.default_rng(7)
  first = [chr(c) for c in range(0x3000) if not 0xD800 <= c <= 0xDFFF]
  pool = first + CONTROL + ["\u2019", "'", "İ", "\u212a", "Σ", "😀", " ", "A", "z"] * 20
  mixtures = ["".join(rng.choice(pool, size=rng.integers(1, 30))) for _ in range(3000)]
  _assert_same_tokens(_around(first) + mixtures)


@pytest.mark.slow
def test_every_code_point_matches_python_tokenizer():
  everything = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
  for start in range(0, len(everything), 200_000):
    _assert_same_tokens(_around(everything[start:start + 200_000]))


def test_charades_sta_every_query(shared_data):
  queries = _charades_queries(shared_data)
  assert len(queries) == 12408 + 3720
  _assert_same_tokens(queries)


def test_activitynet_captions_every_query(shared_data):
  queries = _activitynet_queries(shared_data)
  assert len(queries) == 37421 + 17505 + 17031
  _assert_same_tokens(queries)


def test_ids_match_vocabulary_encode(shared_data):
  queries = _charades_queries(shared_data)[:3000]
  vocab = text.Vocabulary.build(queries[:1500], min_count=2)  # leaves unknown words in the rest
  tok = graph_tokenizer.GraphTokenizer(vocab.tokens, max_len=7)  # short: truncation exercised
  got = tok(tf.constant(queries)).numpy()
  want = np.stack([vocab.encode(q, 7) for q in queries])
  np.testing.assert_array_equal(got, want)
  assert (want == text.UNK_ID).any() and (want == text.PAD_ID).any()


def test_empty_query_is_invalid_argument():
  tok = graph_tokenizer.GraphTokenizer(["<pad>", "<unk>", "a"], max_len=4)
  np.testing.assert_array_equal(tok(tf.constant(["a b a"])).numpy(), [[2, 1, 2, 0]])
  with pytest.raises(tf.errors.InvalidArgumentError, match="no tokens"):
    tok(tf.constant(["a", " “” "]))


def test_bad_vocabulary_rejected():
  with pytest.raises(ValueError, match="<pad>"):
    graph_tokenizer.GraphTokenizer(["a", "b"], max_len=3)

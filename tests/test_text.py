"""Tokenizer rules, vocabulary build/encode/round trip, RE2 equivalence on real queries."""

import json

import numpy as np
import pytest

from cimha_tf.data import text
from cimha_tf.data.text import PAD_ID, UNK_ID, Vocabulary, tokenize


@pytest.mark.parametrize("sentence, expected", [
    ("A person is putting a book on a shelf.",
     ["a", "person", "is", "putting", "a", "book", "on", "a", "shelf", "."]),
    ("The man's hat, then he DOESN'T stop!", ["the", "man's", "hat", ",", "then", "he", "doesn't", "stop", "!"]),
    ("  leading\tand\ntrailing  ", ["leading", "and", "trailing"]),
    ("3.5 x_y a-b #1 (c)", ["3", ".", "5", "x", "_", "y", "a", "-", "b", "#", "1", "(", "c", ")"]),
    ("'quoted' end'", ["'", "quoted", "'", "end", "'"]),
    ("Piñata CAFÉ", ["piñata", "café"]),
    ("don\u2019t \u201cbig\u201d \u2022 \u00a35", ["don\u2019t", "big", "5"]),
    ("", []),
    ("\u2022 \u201c", []),
])
def test_tokenize_rules(sentence, expected):
  assert tokenize(sentence) == expected


def test_tokenize_rejects_non_string():
  with pytest.raises(TypeError):
    tokenize(None)


def test_pattern_is_re2_friendly():
  # No lookarounds / backreferences / \w \s classes whose meaning differs from RE2.
  for bad in ("(?=", "(?!", "(?<", "\\1", "\\w", "\\s", "\\b"):
    assert bad not in text.TOKEN_PATTERN


def test_build_order_and_min_count():
  vocab = Vocabulary.build(["b a c a", "c a b d", "e"], min_count=1)
  # counts: a3, b2, c2, d1, e1 -> by count desc then alphabetical
  assert vocab.tokens == ["<pad>", "<unk>", "a", "b", "c", "d", "e"]
  vocab2 = Vocabulary.build(["b a c a", "c a b d", "e"], min_count=2)
  assert vocab2.tokens == ["<pad>", "<unk>", "a", "b", "c"]
  assert vocab2.ids(["a", "d", "zzz", "c"]) == [2, UNK_ID, UNK_ID, 4]
  with pytest.raises(ValueError):
    Vocabulary.build(["a"], min_count=0)


def test_long_query_vocabulary_only_from_the_tokens_the_model_sees():
  # A 6-million-word query once gave a 6,000,007-word vocabulary; only its first max_len count.
  huge = "The dog runs. " + " ".join(f"w{i}" for i in range(300_000))
  vocab = text.Vocabulary.build(["a cat sits", huge], max_len=5)
  assert vocab.tokens == ["<pad>", "<unk>", ".", "a", "cat", "dog", "runs", "sits", "the", "w0"]
  assert text.tokenize(huge, 5) == text.tokenize(huge)[:5] == ["the", "dog", "runs", ".", "w0"]
  np.testing.assert_array_equal(vocab.encode(huge, 6), vocab.ids(["the", "dog", "runs", ".", "w0", "w1"]))
  assert text.tokenize("a b", 0) == [] and text.tokenize("a b", 9) == ["a", "b"]
  assert len(text.Vocabulary.build([huge])) == 300_000 + 6  # without max_len: every word


def test_encode_pads_and_truncates():
  vocab = Vocabulary.build(["one two three four five"])
  got = vocab.encode("One two, six", max_len=6)
  assert got.dtype == np.int32 and got.shape == (6,)
  expected = [vocab.tokens.index("one"), vocab.tokens.index("two"), UNK_ID, UNK_ID, PAD_ID, PAD_ID]
  np.testing.assert_array_equal(got, expected)
  np.testing.assert_array_equal(vocab.encode("five four three two one", 3),
                                [vocab.tokens.index(w) for w in ["five", "four", "three"]])
  with pytest.raises(ValueError, match="no tokens"):
    vocab.encode("   ", 5)
  with pytest.raises(ValueError, match="max_len"):
    vocab.encode("one", 0)


def test_save_load_round_trip(tmp_path):
  vocab = Vocabulary.build(["le café", "a piñata, a café"])
  path = tmp_path / "vocab.json"
  vocab.save(str(path))
  assert json.loads(path.read_text(encoding="utf-8")) == {"tokens": vocab.tokens}
  loaded = Vocabulary.load(str(path))
  assert loaded.tokens == vocab.tokens and len(loaded) == len(vocab)
  np.testing.assert_array_equal(loaded.encode("piñata café x", 4), vocab.encode("piñata café x", 4))


def test_load_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.json"):
    Vocabulary.load(str(tmp_path / "nope.json"))
  bad = tmp_path / "bad.json"
  bad.write_text("{\"tokens\": [", encoding="utf-8")
  with pytest.raises(ValueError, match="bad.json"):
    Vocabulary.load(str(bad))
  bad.write_text("[1, 2]", encoding="utf-8")
  with pytest.raises(ValueError, match="tokens"):
    Vocabulary.load(str(bad))
  bad.write_text(json.dumps({"tokens": ["a", "b"]}), encoding="utf-8")
  with pytest.raises(ValueError, match="<pad>"):
    Vocabulary.load(str(bad))
  bad.write_text(json.dumps({"tokens": ["<pad>", "<unk>", "x", "x"]}), encoding="utf-8")
  with pytest.raises(ValueError, match="twice"):
    Vocabulary.load(str(bad))


def test_real_queries_tokenize(shared_data):
  """Every real Charades-STA query yields tokens; the RE2 equivalence on every real query is
  tested against the serving graph in test_graph_tokenizer.py."""
  with open(shared_data / "charades_sta" / "charades_sta_test.txt", encoding="utf-8") as f:
    queries = [line.split("##", 1)[1] for line in f if line.strip()]
  assert len(queries) == 3720 and all(tokenize(q) for q in queries)
  assert tokenize(queries[0]) == [t for t in tokenize(queries[0].upper())]

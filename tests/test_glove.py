"""GloVe loader on small files with glove.840B's quirks, bad lines and clear errors."""

import numpy as np
import pytest

from cimha_tf.data import synthetic
from cimha_tf.data.annotations import read_dataset
from cimha_tf.data.glove import MISSING_STD, infer_dim, load_glove
from cimha_tf.data.text import PAD_ID, UNK_ID, Vocabulary

DIM = 4


def _vec(i):
  return np.arange(DIM, dtype=np.float32) + 10.0 * i


def _line(token, values):
  return token + " " + " ".join(str(v) for v in values) + "\n"


@pytest.fixture
def vocab():
  return Vocabulary(["<pad>", "<unk>", "door", ".", "window", "café", "opens", "unseen", "at"])


def _write(path, lines):
  path.write_bytes(b"".join(l.encode("utf-8") if isinstance(l, str) else l for l in lines))
  return str(path)


def test_840b_quirks(tmp_path, vocab):
  path = _write(tmp_path / "g.txt", [
      _line("Door", _vec(1)),                    # cased variant before the exact word: exact must win
      _line(". . .", _vec(2)),                   # token with spaces, must not be read as "."
      _line("at name@domain.com", _vec(3)),      # token with spaces whose first part is a vocab word
      _line("door", _vec(4)),
      _line(".", _vec(5)),
      _line("Window", _vec(6)),                  # only cased: case fallback
      _line("WINDOW", _vec(7)),                  # second cased variant: the first wins
      _line("café", _vec(8)),                    # non-ASCII token
      _line("door", _vec(9)),                    # repeated: the first wins
      _line("opens", _vec(10)).replace("\n", " \r\n"),   # trailing space and CRLF
      _line("short", _vec(11)[:2]),              # too few values -> bad line
      _line("window", ["x"] * DIM),              # non-numeric -> bad (the cased vector stays)
      _line("unseen", [0.1, float("nan"), 0.2, 0.3]),   # non-finite -> bad, "unseen" stays missing
      b"\xff\xfe " + " ".join(["1"] * DIM).encode() + b"\n",   # token not UTF-8 -> bad
      _line("1", _vec(12)[:3]) .replace("\n", " 9 9\n"),  # 5 numbers after "1": a longer vector
  ])
  matrix, report = load_glove(path, vocab, dim=DIM, seed=0, progress=False)
  assert matrix.dtype == np.float32 and matrix.shape == (len(vocab), DIM)
  idx = {t: i for i, t in enumerate(vocab.tokens)}
  np.testing.assert_array_equal(matrix[idx["door"]], _vec(4))
  np.testing.assert_array_equal(matrix[idx["."]], _vec(5))
  np.testing.assert_array_equal(matrix[idx["window"]], _vec(6))
  np.testing.assert_array_equal(matrix[idx["café"]], _vec(8))
  np.testing.assert_array_equal(matrix[idx["opens"]], _vec(10))
  np.testing.assert_array_equal(matrix[PAD_ID], np.zeros(DIM))
  assert report["lines"] == 15
  assert report["bad_lines"] == 5 and len(report["bad_line_examples"]) == 5
  assert report["duplicates"] == 1
  assert report["case_fallback"] == 1
  assert (report["words"], report["found"], report["missing"]) == (7, 5, 2)
  assert report["missing_examples"] == ["unseen", "at"]


def test_missing_words_initialisation(tmp_path):
  vocab = Vocabulary(["<pad>", "<unk>", "known"] + [f"w{i}" for i in range(200)])
  path = _write(tmp_path / "g.txt", [_line("known", _vec(1))])
  m1, report = load_glove(path, vocab, dim=DIM, seed=5, progress=False)
  m2, _ = load_glove(path, vocab, dim=DIM, seed=5, progress=False)
  m3, _ = load_glove(path, vocab, dim=DIM, seed=6, progress=False)
  np.testing.assert_array_equal(m1, m2)
  assert not np.array_equal(m1[3:], m3[3:])
  assert report["missing"] == 200
  random_rows = m1[3:]
  assert abs(random_rows.std() - MISSING_STD) < 0.02 and abs(random_rows.mean()) < 0.02
  assert np.abs(m1[UNK_ID]).sum() > 0 and not np.any(m1[PAD_ID])
  np.testing.assert_array_equal(m1[2], _vec(1))


def test_word2vec_header_and_errors(tmp_path, vocab):
  path = _write(tmp_path / "h.txt", ["2 4\n", _line("door", _vec(1)), _line("opens", _vec(2))])
  matrix, report = load_glove(path, vocab, dim=DIM, progress=False)
  assert report["found"] == 2 and report["bad_lines"] == 0
  np.testing.assert_array_equal(matrix[2], _vec(1))
  with pytest.raises(ValueError, match="h.txt:1: header says dimension 4, expected dim=3"):
    load_glove(path, vocab, dim=3, progress=False)

  wrong = _write(tmp_path / "w.txt", [_line("door", _vec(1))])
  with pytest.raises(ValueError, match=r"w.txt:1: expected a token and 6 values.*dimension 4"):
    load_glove(wrong, vocab, dim=6, progress=False)
  with pytest.raises(ValueError, match=r"w.txt:1: expected a token and 2 values.*dimension 4"):
    load_glove(wrong, vocab, dim=2, progress=False)
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    load_glove(str(tmp_path / "nope.txt"), vocab, dim=DIM, progress=False)


def test_synthetic_glove_covers_synthetic_vocabulary(tmp_path):
  paths = synthetic.write_synthetic_dataset(str(tmp_path), num_train_videos=8, num_test_videos=2,
                                            feature_dim=4, glove_dim=6, progress=False)
  records = read_dataset("charades_sta", paths["annotations"])["train"][0]
  vocab = Vocabulary.build(r.query for r in records)
  matrix, report = load_glove(paths["glove"], vocab, dim=6, progress=False)
  assert report["missing"] == 0 and report["bad_lines"] == 0
  assert report["duplicates"] == 1   # the synthetic file's planted 840B quirks
  assert matrix.shape == (len(vocab), 6) and np.all(np.any(matrix[1:] != 0, axis=1))


def test_infer_dim(tmp_path, vocab):
  path = _write(tmp_path / "g.txt", [_line(". . .", _vec(1)), _line("door", _vec(2))])
  assert infer_dim(path) == DIM
  matrix, report = load_glove(path, vocab, dim=None, progress=False)
  assert report["dim"] == DIM and matrix.shape == (len(vocab), DIM)
  np.testing.assert_array_equal(matrix[2], _vec(2))
  header = _write(tmp_path / "h.txt", ["3 7\n"])
  assert infer_dim(header) == 7
  empty = _write(tmp_path / "e.txt", ["lonely\n"])
  with pytest.raises(ValueError, match="e.txt:1: expected `TOKEN"):
    load_glove(empty, vocab, dim=None, progress=False)

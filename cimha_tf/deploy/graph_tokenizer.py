"""The query tokenizer and vocabulary lookup as TensorFlow ops, for serving graphs.

`cimha_tf.data.text.tokenize` is `TOKEN_PATTERN.findall(text.lower())`. The pattern is
RE2-compatible by design, so one `tf.strings.regex_replace` reproduces `findall`: the
pattern `(TOKEN_PATTERN)|.` consumes, at each position, a token when one starts there
(RE2 alternation is leftmost-first, like Python's `re`) and otherwise one code point;
tokens are rewritten as `token ` and everything else as a space, and a whitespace split
gives the tokens (tokens never contain whitespace). Lower-casing is
`tf.strings.lower(encoding="utf-8")`, which agrees with `str.lower` on every code point
but NUL: it treats the string as NUL-terminated and drops the rest. NUL is never part of
a token, so it is first replaced by a space (same tokens, nothing dropped); the two
tokenizers are compared on every code point in tests/test_graph_tokenizer.py.

Ids come from a `tf.lookup.StaticHashTable` built from the vocabulary list (id = index,
unknown -> UNK_ID); the table is a tracked resource, so it is saved inside a SavedModel.
"""

import tensorflow as tf

from cimha_tf.data import text

# Every non-token code point becomes a space; "(?s)" lets "." match newlines too.
_FINDALL_PATTERN = f"(?s)({text.TOKEN_PATTERN})|."


def tokenize(queries):
  """(B,) tf.string -> tf.RaggedTensor (B, None) of tokens, exactly `text.tokenize`."""
  queries = tf.convert_to_tensor(queries, tf.string)
  # tf.strings.lower stops at a NUL; NUL is a separator for text.tokenize, so a space is.
  no_nul = tf.strings.regex_replace(queries, "\\x00", " ")
  lowered = tf.strings.lower(no_nul, encoding="utf-8")
  spaced = tf.strings.regex_replace(lowered, _FINDALL_PATTERN, r"\1 ")
  return tf.strings.split(spaced)


class GraphTokenizer(tf.Module):
  """Raw query strings -> (B, max_len) int32 ids, as `Vocabulary.encode` does row by row.

  Queries with no token fail with INVALID_ARGUMENT naming the batch row (Vocabulary.encode
  raises ValueError for them too).
  """

  def __init__(self, tokens, max_len, name=None):
    super().__init__(name=name)
    tokens = list(tokens)
    if tokens[:2] != [text.PAD_TOKEN, text.UNK_TOKEN]:
      raise ValueError(f"vocabulary must start with {text.PAD_TOKEN!r}, {text.UNK_TOKEN!r}; got {tokens[:2]}")
    if max_len < 1:
      raise ValueError(f"max_len must be >= 1, got {max_len}")
    self.max_len = int(max_len)
    self.vocab_size = len(tokens)
    self.table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(tokens, tf.string), tf.range(len(tokens), dtype=tf.int32)),
        default_value=text.UNK_ID)

  def __call__(self, queries):
    tokens = tokenize(queries)
    counts = tokens.row_lengths()
    check = tf.debugging.assert_positive(
        counts, message="query has no tokens (empty, or only ignored characters); "
        "every `query` string must hold at least one word or punctuation mark")
    with tf.control_dependencies([check]):
      ids = tf.ragged.map_flat_values(self.table.lookup, tokens)
    ids = ids[:, :self.max_len]
    return ids.to_tensor(default_value=text.PAD_ID, shape=[None, self.max_len])

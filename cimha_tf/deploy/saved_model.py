"""SavedModel for TF Serving: raw text or token ids in, top-k windows in seconds out.

Layout: EXPORT/cimha/VERSION/ (what TF Serving's --model_base_path=EXPORT/cimha loads),
with `assets.extra/vocab.json` (for clients that tokenise themselves) and
`assets.extra/cimha_export.json` (max_video_len, max_query_len, video_dim, top_k, ...).

Signatures (B = batch, N <= max_video_len steps, any N per request):
  serving_default (SIGNATURE_TEXT):
    query string (B,), video_features float32 (B, N, Dv), video_length int32 (B,),
    duration float32 (B,)
  serving_tokens (SIGNATURE_TOKENS): the same with query_tokens int32 (B, L),
    1 <= L <= max_query_len, ids of vocab.json, words first then 0 padding.
Outputs: start_seconds, end_seconds, scores (B, k) best first; start_steps, end_steps
(B, k) int32 (-1 and score 0 where a video has fewer than k windows); start_probs,
end_probs, inside_probs (B, N); serving_default also returns query_tokens (B,
max_query_len), the ids it computed.

Tokenisation is in the graph (deploy/graph_tokenizer.py). Every input is checked with
tf.debugging asserts that run before the model (control dependencies), so bad requests
fail with INVALID_ARGUMENT and a message naming the input, never deeper in the graph.
Steps of video_features past video_length are ignored (zeroed), like padding.
"""

import json
import os

import tensorflow as tf

from cimha_tf.common import atomic
from cimha_tf.common import lock
from cimha_tf.deploy.graph_tokenizer import GraphTokenizer

MODEL_NAME = "cimha"
SIGNATURE_TEXT = "serving_default"
SIGNATURE_TOKENS = "serving_tokens"
EXTRA_DIR = "assets.extra"
META_FILE = "cimha_export.json"
VOCAB_FILE = "vocab.json"
CURVES = ("start_probs", "end_probs", "inside_probs")


def _checked(tensor, checks):
  with tf.control_dependencies(checks):
    return tf.identity(tensor)


class ServingModule(tf.Module):
  """The Keras model, the vocabulary table and both serving functions."""

  def __init__(self, model, vocab_tokens, max_video_len, max_query_len, top_k=5,
               max_span_fraction=None):
    super().__init__(name="cimha_serving")
    from cimha_tf.model import decode_spans, spans_to_seconds, video_dim_of
    self._decode_spans, self._spans_to_seconds = decode_spans, spans_to_seconds
    self._model = model  # not tracked as a Keras object (see tflite.keras_free_module)
    self.model_variables = [v.value for v in model.variables]
    self.tokenizer = GraphTokenizer(vocab_tokens, max_query_len)
    self.video_dim = video_dim_of(model)
    self.vocab_size = len(vocab_tokens)
    self.max_video_len = int(max_video_len)
    self.max_query_len = int(max_query_len)
    self.top_k = int(top_k)
    self.max_span_fraction = max_span_fraction  # decode_spans's bound (None: every pair)
    if self.top_k < 1:
      raise ValueError(f"top_k={top_k}: expected >= 1")
    video = [tf.TensorSpec([None, None, None], tf.float32, "video_features"),
             tf.TensorSpec([None], tf.int32, "video_length"),
             tf.TensorSpec([None], tf.float32, "duration")]
    self.serve_text = tf.function(
        self._serve_text, input_signature=[tf.TensorSpec([None], tf.string, "query")] + video)
    self.serve_tokens = tf.function(
        self._serve_tokens,
        input_signature=[tf.TensorSpec([None, None], tf.int32, "query_tokens")] + video)

  def signatures(self):
    return {SIGNATURE_TEXT: self.serve_text.get_concrete_function(),
            SIGNATURE_TOKENS: self.serve_tokens.get_concrete_function()}

  def _video_inputs(self, batch, video_features, video_length, duration):
    shape = tf.shape(video_features)
    n = shape[1]
    checks = [
        tf.debugging.assert_equal(
            shape[2], self.video_dim,
            message=f"video_features: last dimension must be the model's feature dimension "
            f"{self.video_dim}; shape (B, N, Dv) expected"),
        tf.debugging.assert_positive(n, message="video_features: N must be >= 1 step"),
        tf.debugging.assert_less_equal(
            n, self.max_video_len,
            message=f"video_features: N must be <= max_video_len={self.max_video_len} steps "
            "(mean-pool longer videos, cimha_tf.data.pooling.pool_to_max_len)"),
        tf.debugging.assert_equal(
            shape[0], batch, message="video_features: batch size differs from the query's"),
        tf.debugging.assert_equal(
            tf.shape(video_length)[0], batch,
            message="video_length: one entry per video (B,) expected"),
        tf.debugging.assert_equal(
            tf.shape(duration)[0], batch, message="duration: one entry per video (B,) expected"),
    ]
    with tf.control_dependencies(checks):
      checks = [
          tf.debugging.assert_positive(
              video_length, message="video_length: every video needs >= 1 valid step"),
          tf.debugging.assert_less_equal(
              video_length, n, message="video_length: must be <= N, the steps sent in video_features"),
          tf.debugging.assert_positive(duration, message="duration: must be > 0 seconds"),
          tf.debugging.assert_less(
              duration, float("inf"), message="duration: must be finite"),
      ]
    mask = tf.sequence_mask(video_length, n)
    features = tf.where(mask[:, :, None], video_features, 0.0)
    checks.append(tf.debugging.assert_all_finite(
        features, message="video_features: NaN or inf at a valid step"))
    features = tf.ensure_shape(_checked(features, checks), [None, None, self.video_dim])
    return features, tf.cast(mask, tf.float32)

  def _token_checks(self, tokens):
    length = tf.shape(tokens)[1]
    checks = [
        tf.debugging.assert_positive(length, message="query_tokens: L must be >= 1"),
        tf.debugging.assert_less_equal(
            length, self.max_query_len,
            message=f"query_tokens: L must be <= max_query_len={self.max_query_len}"),
    ]
    with tf.control_dependencies(checks):
      words = tokens != 0
      checks = [
          tf.debugging.assert_non_negative(tokens, message="query_tokens: ids must be >= 0"),
          tf.debugging.assert_less(
              tokens, self.vocab_size,
              message=f"query_tokens: ids must be < vocab_size={self.vocab_size} (vocab.json)"),
          tf.debugging.assert_equal(
              tf.reduce_all(words[:, :1], axis=1), True,
              message="query_tokens: every query needs >= 1 word, words first then 0 padding"),
          tf.debugging.assert_equal(
              tf.reduce_any(words[:, 1:] & ~words[:, :-1]), False,
              message="query_tokens: a word after 0 padding; words first, then padding"),
      ]
    tokens = _checked(tokens, checks)
    return tf.pad(tokens, [[0, 0], [0, self.max_query_len - length]])

  def _run(self, tokens, video_features, video_length, duration):
    features, mask = self._video_inputs(tf.shape(tokens)[0], video_features, video_length,
                                        duration)
    out = self._model({"video_features": features, "video_mask": mask,
                       "query_tokens": tokens}, training=False)
    # Finite but huge features (|x| ~ 1e20) overflow inside the model; its NaN curves would
    # decode to no window at all, which reads as "fewer than k windows".
    out = {name: tf.debugging.assert_all_finite(
        value, f"{name}: not finite; video_features too large in magnitude for float32 "
        "(clip features are usually within +-100)") for name, value in out.items()}
    start, end, scores = self._decode_spans(out["start_probs"], out["end_probs"], mask,
                                            self.top_k, max_span_fraction=self.max_span_fraction)
    start_s, end_s = self._spans_to_seconds(start, end, duration, video_length)
    found = start >= 0
    result = {"start_seconds": tf.where(found, start_s, 0.0),
              "end_seconds": tf.where(found, end_s, 0.0),
              "scores": scores, "start_steps": start, "end_steps": end}
    result.update({name: out[name] for name in CURVES})
    return result

  def _serve_text(self, query, video_features, video_length, duration):
    tokens = self.tokenizer(query)
    result = self._run(tokens, video_features, video_length, duration)
    result["query_tokens"] = tokens
    return result

  def _serve_tokens(self, query_tokens, video_features, video_length, duration):
    return self._run(self._token_checks(query_tokens), video_features, video_length, duration)


def export(model, vocab_tokens, output, model_config, top_k=5, version=1, overwrite=False,
           extra_meta=None, max_span_fraction=None):
  """Writes OUTPUT/cimha/VERSION/ and returns that path."""
  for folder in (os.fspath(output), os.path.join(os.fspath(output), MODEL_NAME)):
    if os.path.exists(folder) and not os.path.isdir(folder):
      raise ValueError(f"{folder} is a file: the SavedModel export needs a folder there "
                       "(--output=BASE writes BASE/cimha/VERSION/)")
  path = os.path.join(os.fspath(output), MODEL_NAME, str(int(version)))
  # Built in a temporary folder beside (a name TF Serving's version watcher ignores) and
  # renamed into the version number when complete: a killed export leaves no half-written
  # version for TF Serving to load. One export per version folder at a time.
  with lock.hold(path, "exporting"):
    atomic.remove_temporaries(os.path.dirname(path), os.path.basename(path))
    if os.path.exists(path) and not overwrite:
      raise FileExistsError(f"{path} exists; TF Serving may be serving it: pass another "
                            "version (--version) or --overwrite")
    module = ServingModule(model, vocab_tokens, model_config.max_video_len,
                           model_config.max_query_len, top_k, max_span_fraction)
    with atomic.folder(path) as build:
      tf.saved_model.save(module, build, signatures=module.signatures())
      extra = os.path.join(build, EXTRA_DIR)
      os.makedirs(extra, exist_ok=True)
      with open(os.path.join(extra, VOCAB_FILE), "w", encoding="utf-8") as f:
        json.dump({"tokens": list(vocab_tokens)}, f, ensure_ascii=False)
      meta = {"max_video_len": module.max_video_len, "max_query_len": module.max_query_len,
              "video_dim": module.video_dim, "vocab_size": module.vocab_size,
              "top_k": module.top_k,
              "max_span_fraction": module.max_span_fraction, "signatures": [SIGNATURE_TEXT, SIGNATURE_TOKENS],
              **(extra_meta or {})}
      with open(os.path.join(extra, META_FILE), "w") as f:
        json.dump(meta, f, indent=1)
  return path


def resolve_version_dir(path):
  """EXPORT, EXPORT/cimha or EXPORT/cimha/VERSION -> the newest version folder."""
  path = os.fspath(path)
  if os.path.isfile(os.path.join(path, "saved_model.pb")):
    return path
  for base in (os.path.join(path, MODEL_NAME), path):
    if os.path.isdir(base):
      versions = [d for d in os.listdir(base) if d.isdigit()
                  and os.path.isfile(os.path.join(base, d, "saved_model.pb"))]
      if versions:
        return os.path.join(base, max(versions, key=int))
  raise FileNotFoundError(f"{path}: no SavedModel (expected saved_model.pb in it, or in "
                          f"{MODEL_NAME}/VERSION/ below it)")


def load(path):
  """(loaded SavedModel object, export meta dict) for any path resolve_version_dir takes."""
  path = resolve_version_dir(path)
  try:
    loaded = tf.saved_model.load(path)
  except Exception as e:  # corrupt protobufs / missing variables give long TF errors
    raise ValueError(f"cannot load SavedModel {path}: {type(e).__name__}: {e}") from e
  meta_path = os.path.join(path, EXTRA_DIR, META_FILE)
  meta = {}
  if os.path.isfile(meta_path):
    from cimha_tf.common.jsonfile import read_json_object
    meta = read_json_object(meta_path, "export metadata", "a JSON object (max_video_len, ...)")
  missing = [s for s in (SIGNATURE_TEXT, SIGNATURE_TOKENS) if s not in loaded.signatures]
  if missing:
    raise ValueError(f"{path}: signatures {sorted(loaded.signatures)} lack {missing}; "
                     "not a cimha_tf export")
  return loaded, meta

"""One query against one video with an exported model (SavedModel folder or .tflite).

`load_predictor(path)` picks the format; `predictor.predict(features, query, duration,
top_k, source)` (source names the features in errors) takes a video's raw (T, Dv) features, mean-pools them to max_video_len steps when
longer (as data preparation does), and returns the top-k windows in seconds;
`predictor.answer(...)` returns them with the inside probability of each (pooled) step,
the saliency curve predict prints (cimha_tf.deploy.output).
"""

import os

import numpy as np

from cimha_tf.common.timeline import DURATION_RANGE, is_valid_duration


def _windows(start_s, end_s, scores, top_k):
  out = [[float(s), float(e), float(p)] for s, e, p in zip(start_s, end_s, scores) if p > 0]
  return out[:top_k]


def _assertion(message):
  """The readable part of a graph check's error: a tf.debugging assertion's first bracketed
  message, or the line a CheckNumerics names, without TensorFlow's node and stack lines."""
  head = message.split("assertion failed: [", 1)
  if len(head) == 2:
    return head[1].split("]", 1)[0].strip()
  skip = ("Graph execution error", "Detected at node", "<stack traces", "[[")
  lines = [l.strip() for l in message.splitlines()]
  lines = [l for l in lines if l and not l.startswith(skip)]
  return lines[0] if lines else message.strip()


def _check_query_duration(query, duration):
  if not isinstance(query, str) or not query.strip():
    raise ValueError(f"query {query!r}: expected a non-empty sentence")
  if not is_valid_duration(duration):
    raise ValueError(f"duration={duration}: expected the video's length in seconds, {DURATION_RANGE}")


class _Base:
  max_video_len: int
  video_dim: int
  vocab = None

  def unknown_words(self, query):
    """The query's words that are not in the model's vocabulary (the model sees <unk>)."""
    from cimha_tf.data.text import tokenize
    if self.vocab is None:
      return []
    return [w for w in tokenize(query, self.max_query_len) if w not in self.vocab]

  def predict(self, features, query, duration, top_k=5, source="features"):
    """[[start_s, end_s, score], ...], best first."""
    return self.answer(features, query, duration, top_k, source)[0]

  def check_features(self, features, source):
    from cimha_tf.data.features import validate_features
    return validate_features(features, source, self.video_dim,
                             dim_from="the model's video_features input, fixed at training: "
                             "features of the extractor its training data used")

  def _pool(self, features, source):
    from cimha_tf.data.pooling import pool_to_max_len
    return pool_to_max_len(self.check_features(features, source), self.max_video_len)


class SavedModelPredictor(_Base):
  def __init__(self, path):
    from cimha_tf.deploy import saved_model
    self.loaded, meta = saved_model.load(path)
    self.signature = self.loaded.signatures[saved_model.SIGNATURE_TEXT]
    extra = os.path.join(saved_model.resolve_version_dir(path), saved_model.EXTRA_DIR)
    missing = [k for k in ("max_video_len", "max_query_len", "video_dim", "top_k") if k not in meta]
    if missing:  # the graph does not expose them; the export writes them beside it
      raise ValueError(f"{os.path.join(extra, saved_model.META_FILE)}: missing, or without "
                       f"{missing}; the export writes it into the version folder (copy the whole "
                       "folder, assets.extra included, or export again)")
    vocab_path = os.path.join(extra, saved_model.VOCAB_FILE)
    if os.path.isfile(vocab_path):  # the graph holds its own copy; this one names unknown words
      from cimha_tf.data.text import Vocabulary
      self.vocab = Vocabulary.load(vocab_path)
    self.max_video_len = int(meta["max_video_len"])
    self.max_query_len = int(meta["max_query_len"])
    self.video_dim = int(meta["video_dim"])
    self.exported_top_k = int(meta["top_k"])
    self.max_span_fraction = meta.get("max_span_fraction")  # the graph's decoding bound
    self.feature_recipe = meta.get("feature_recipe")

  def curves(self, features, queries, duration):
    """start/end/inside probabilities (Q, n) of each query on (n, D) features (n <=
    max_video_len), the queries in one batch."""
    import tensorflow as tf
    for q in queries:
      _check_query_duration(q, duration)
    n, q = features.shape[0], len(queries)
    try:
      out = self.signature(query=tf.constant(list(queries)),
                           video_features=tf.constant(np.broadcast_to(features[None], (q,) + features.shape)),
                           video_length=tf.constant([n] * q, tf.int32),
                           duration=tf.constant([duration] * q, tf.float32))
    except tf.errors.InvalidArgumentError as e:
      raise ValueError(f"the SavedModel refused the request: {_assertion(e.message)}") from e
    return {name: out[name].numpy() for name in ("start_probs", "end_probs", "inside_probs")}

  def answer(self, features, query, duration, top_k=5, source="features"):
    """(windows as predict's, inside_probs over the video's (pooled) steps)."""
    import tensorflow as tf
    from cimha_tf.model import decode_spans, spans_to_seconds
    _check_query_duration(query, duration)
    feats = self._pool(features, source)
    n = feats.shape[0]
    try:
      out = self.signature(query=tf.constant([query]), video_features=tf.constant(feats[None]),
                           video_length=tf.constant([n], tf.int32),
                           duration=tf.constant([duration], tf.float32))
    except tf.errors.InvalidArgumentError as e:  # the signature's own input checks
      raise ValueError(f"the SavedModel refused the request (query {query!r}): "
                       f"{_assertion(e.message)}") from e
    if top_k > self.exported_top_k:  # the graph's k is fixed at export: decode the curves
      start, end, scores = decode_spans(out["start_probs"], out["end_probs"],
                                        np.ones((1, n), np.float32), top_k,
                                        max_span_fraction=self.max_span_fraction)
      s, e = spans_to_seconds(start, end, [duration], [n])
      windows = _windows(s[0].numpy(), e[0].numpy(), scores[0].numpy(), top_k)
    else:
      windows = _windows(out["start_seconds"][0].numpy(), out["end_seconds"][0].numpy(),
                         out["scores"][0].numpy(), top_k)
    return windows, out["inside_probs"][0, :n].numpy()


class TFLitePredictor(_Base):
  def __init__(self, path, vocab_path=None):
    from cimha_tf.data.text import Vocabulary
    from cimha_tf.deploy.tflite import TFLiteModel
    self.model = TFLiteModel(path)
    vocab_path = vocab_path or os.path.join(os.path.dirname(os.path.abspath(path)), "vocab.json")
    self.vocab = Vocabulary.load(vocab_path)
    if self.model.vocab_size is not None and self.model.vocab_size != len(self.vocab):
      raise ValueError(f"{vocab_path} has {len(self.vocab)} tokens but {path}'s word embedding "
                       f"has {self.model.vocab_size} rows: not the vocabulary it was exported "
                       "with (the export writes it beside the .tflite file)")
    self.max_video_len = self.model.max_video_len
    self.max_query_len = self.model.max_query_len
    self.video_dim = self.model.video_dim
    recipe_path = recipe_path_for_tflite(path)
    self.feature_recipe = None
    if os.path.isfile(recipe_path):
      from cimha_tf.common.jsonfile import read_json_object
      self.feature_recipe = read_json_object(recipe_path, "feature recipe",
                                             "a feature recipe object")

  def curves(self, features, queries, duration):
    """start/end/inside probabilities (Q, n), one query after another (batch 1)."""
    rows = []
    for q in queries:
      _check_query_duration(q, duration)
      ids = self.vocab.encode(q, self.model.max_query_len)
      ids = ids[:max(1, int(np.count_nonzero(ids)))]
      out = self.model(features, ids)
      if not all(np.all(np.isfinite(c)) for c in out.values()):
        raise ValueError("the model's outputs are not finite; video_features too large in "
                         "magnitude for float32")
      rows.append(out)
    return {name: np.stack([r[name] for r in rows]) for name in ("start_probs", "end_probs", "inside_probs")}

  def answer(self, features, query, duration, top_k=5, source="features"):
    """(windows as predict's, inside_probs over the video's (pooled) steps)."""
    from cimha_tf.model import decode_spans, spans_to_seconds
    _check_query_duration(query, duration)
    feats = self._pool(features, source)
    n = feats.shape[0]
    ids = self.vocab.encode(query, self.model.max_query_len)
    ids = ids[:max(1, int(np.count_nonzero(ids)))]
    curves = self.model(feats, ids)
    if not all(np.all(np.isfinite(c)) for c in curves.values()):  # as the SavedModel checks
      raise ValueError(f"{source}: the model's outputs are not finite; video_features too "
                       "large in magnitude for float32 (clip features are usually within +-100)")
    start, end, scores = decode_spans(curves["start_probs"][None], curves["end_probs"][None],
                                      np.ones((1, n), np.float32), top_k)
    s, e = spans_to_seconds(start, end, [duration], [n])
    windows = _windows(s[0].numpy(), e[0].numpy(), scores[0].numpy(), top_k)
    return windows, np.asarray(curves["inside_probs"])[:n]


def recipe_path_for_tflite(path):
  """FILE.tflite -> FILE.recipe.json, the training features' recipe the export writes."""
  return os.path.splitext(os.fspath(path))[0] + ".recipe.json"


def check_duration_flags(duration, clip_seconds):
  """ValueError unless exactly one of --duration / --clip_seconds is given, finite and > 0
  (checkable before any file is read: predict makes it a command-line error)."""
  if duration is not None and clip_seconds is not None:
    raise ValueError("pass --duration or --clip_seconds, not both")
  if duration is None and clip_seconds is None:
    raise ValueError("the video's duration is unknown: pass --duration=SECONDS (or "
                     "--clip_seconds=C if each feature row covers C seconds)")
  name, value = ("duration", duration) if duration is not None else ("clip_seconds", clip_seconds)
  if not is_valid_duration(value):
    raise ValueError(f"--{name}={value}: expected {DURATION_RANGE}")


def resolve_duration(duration, clip_seconds, num_rows):
  check_duration_flags(duration, clip_seconds)
  if duration is not None:
    return float(duration)
  total = float(clip_seconds) * num_rows
  if not is_valid_duration(total):
    raise ValueError(f"--clip_seconds={clip_seconds} x {num_rows} feature rows = {total} s: "
                     f"the duration must be {DURATION_RANGE}")
  return total


def load_predictor(path, vocab_path=None):
  """A .tflite file -> TFLitePredictor; a folder -> SavedModelPredictor."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"model {path} not found (a SavedModel folder or a .tflite file)")
  _refuse_training_output(path)
  if os.path.isfile(path):
    if not path.endswith(".tflite"):
      raise ValueError(f"{path}: expected a .tflite file or a SavedModel folder")
    return TFLitePredictor(path, vocab_path)
  return SavedModelPredictor(path)


def _refuse_training_output(path):
  """A training workdir or a .keras checkpoint is not an export: say which command makes one
  (the Keras model takes token ids and gives curves; the export adds the tokenizer and the
  decoding to seconds that predict relies on)."""
  workdir = None
  if os.path.isfile(path) and path.endswith(".keras"):
    workdir = os.path.dirname(os.path.abspath(path))
    which = os.path.basename(path)[:-len(".keras")]
    if not os.path.isfile(os.path.join(workdir, "config.json")):  # copied out of its workdir
      workdir, which = "WORKDIR", path  # export reads config.json and vocab.json there
    checkpoint = f" --checkpoint={which if which in ('best', 'last') else path}"
  elif os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")) and any(
      f.endswith(".keras") for f in os.listdir(path)):
    workdir, checkpoint = path, ""
  if workdir is not None:
    export = os.path.join(workdir, "export") if workdir != "WORKDIR" else "EXPORT"
    raise ValueError(f"{path} is training output (a Keras checkpoint), not an exported model; "
                     f"export it first: python -m cimha_tf.export --workdir={workdir}{checkpoint} "
                     f"--output={export}, then --model={export} (or --format=tflite "
                     "--output=FILE.tflite, then --model=FILE.tflite)")

"""TFLite export with built-in ops only (no Flex / SELECT_TF_OPS), and a runner for it.

Why a copy of the model is converted, not the model: keras.layers.LSTM is a
tf.while_loop over TensorLists, which the converter keeps only as Flex ops (absent from
the standalone LiteRT runtime). The copy has the model's exact weights, a fixed batch and
L = max_query_len, N = max_video_len at most, and one of two LSTM forms:

* "fused" (default): each direction is one UNIDIRECTIONAL_SEQUENCE_LSTM op, which is what
  makes batch-1 latency small. The unrolled LSTM's loop is replaced by a tf.function
  carrying TF's composite "Keras LSTM" attributes, which the converter fuses (static
  shapes, no mask: BiLSTM already feeds valid steps first); the cell_clip=10 the pass
  sets is reset to 0 so the op is Keras's cell. The op keeps h and c in variable tensors
  across invocations: reset them before each query (`reset_all_variables()`; TFLiteModel
  does). At batch 1 the float32 and float16 files feed the query and start LSTMs input
  weights computed per query, so the op reads fewer columns (runtime_kernels.py).
* "unrolled": N copies of the cell in plain ops; a fallback if a converter stops fusing.

Free time axis (default with "fused"): the video inputs take 1..max_video_len steps and
padded steps never change a valid output, so a query run at its own length gives the
padded query's curves at its length's cost (TFLiteModel cuts each batch after its last
valid step). No op reads a shape at invoke (`_dense_on_sequences`,
`_position_embedding_by_gather`), so a resize plans the graph once. The masked softmax is
ADD and MUL instead of SELECT_V2, which XNNPACK does not take.

The conversion goes through a SavedModel (the composite fusion runs only on that path)
and freezes every variable. Quantization: "float16" is the converter's; "dynamic_int8"
makes only the LSTM weights int8 (the hybrid LSTM kernel: the batch-1 gain) and the rest
float16 (`quantization.lstm_int8_rest_float16`), because the converter's dynamic-range
mode also makes FULLY_CONNECTED weights int8, which moves top-1 windows on a model with
nearly flat curves (export/README.md has the measurements; docs/benchmarks.md the speed).
With lstm="unrolled" there is no LSTM op and "dynamic_int8" is the converter's mode.
"""

import os
import re
import tempfile
import uuid

import keras
import numpy as np
import tensorflow as tf

from cimha_tf.deploy import runtime_kernels as runtime_kernels_lib
from cimha_tf.model import masking

LSTM_FORMS = ("fused", "unrolled")
QUANTIZATIONS = ("none", "float16", "dynamic_int8")
INPUTS = ("video_features", "video_mask", "query_tokens")
OUTPUTS = ("start_probs", "end_probs", "inside_probs")
_WORD_TABLE = re.compile(r"query_encoder[^/]*/embedding[^/]*/GatherV2/ReadVariableOp")


def _lstm_sequence(x, h0, c0, kernel, recurrent_kernel, bias):
  """Keras LSTM over (B, T, D) batch-major input; results as the composite interface
  wants them: (last output, all outputs, last h, last c, a placeholder)."""
  xw = tf.einsum("btd,dk->tbk", x, kernel) + bias

  def step(carry, xw_t):
    h, c = carry
    i, f, g, o = tf.split(xw_t + tf.matmul(h, recurrent_kernel), 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    return tf.sigmoid(o) * tf.tanh(c), c

  hs, cs = tf.scan(step, xw, initializer=(h0, c0))
  outputs = tf.transpose(hs, [1, 0, 2])
  return outputs[:, -1], outputs, hs[-1], cs[-1], tf.zeros([])


def _composite_lstm():
  # One function per LSTM layer, each with its own api_implements name (as Keras 2 did):
  # functions sharing a name are interchangeable to Grappler's implementation selector,
  # which then may run one layer's body (other shapes) at another layer's call site.
  return tf.function(
      _lstm_sequence, autograph=False,
      experimental_attributes={"api_implements": f"lstm_{uuid.uuid4().hex}",
                               "time_major": False, "go_backwards": False})


def _fused_call(layer, x, kernel=None, hoist=False):
  """One LSTM direction as the composite function; `kernel` replaces the layer's input
  weights (runtime_kernels.py); hoist: try the identity-input form there."""
  weights = [tf.convert_to_tensor(w) for w in (layer.kernel, layer.recurrent_kernel, layer.bias)]
  if kernel is not None:
    weights[0] = kernel
  if x.shape[0] is None:
    # Only the fixed-batch endpoint is converted; writing the SavedModel also traces
    # Keras's own dynamic-shape signature, which gets the same math as a plain scan.
    zeros = tf.zeros([tf.shape(x)[0], layer.units], x.dtype)
    return _lstm_sequence(x, zeros, zeros, *weights)[1]
  if hoist and kernel is None:
    x, weights[0] = runtime_kernels_lib.hoisted_input(x, weights[0]) or (x, weights[0])
  zeros = tf.zeros([x.shape[0], layer.units], x.dtype)
  if not hasattr(layer, "_cimha_composite_lstm"):
    layer._cimha_composite_lstm = _composite_lstm()
  return layer._cimha_composite_lstm(x, zeros, zeros, *weights)[1]


def _additive_masked_softmax(layer):
  """Keras's masked softmax (B, heads, T, S) with the mask added and multiplied instead of
  selected: TFLite's SELECT_V2 is not delegated to XNNPACK, ADD and MUL are. The same
  values: + 0 leaves a valid score as it is, a masked one's exp underflows to exactly 0
  either way, and the product zeroes masked entries as Keras's second select does (also
  in a row with no valid key)."""
  keras_masked_softmax = layer._masked_softmax

  def masked_softmax(scores, attention_mask=None):
    if attention_mask is None or len(scores.shape) != 4 or len(attention_mask.shape) != 3:
      return keras_masked_softmax(scores, attention_mask)
    m = tf.cast(attention_mask, scores.dtype)[:, None]  # (B, 1, T, S): every head
    return tf.nn.softmax(scores + (1.0 - m) * masking.NEG) * m
  return masked_softmax


def _dense_on_sequences(layer):
  """keras.layers.Dense.call with a (B, T, D) input as one broadcasting matmul (the
  converter's FULLY_CONNECTED) instead of Keras's tensordot, whose reshapes need the
  input's shape at run time when T is free (SHAPE, GATHER, REDUCE_PROD, PACK ops outside
  XNNPACK, ~100 of them in this model). The same products and sums."""
  keras_call = layer.call

  def call(inputs, training=None):
    if len(inputs.shape) != 3:
      return keras_call(inputs, training=training)
    y = tf.linalg.matmul(inputs, layer.kernel)
    return layer.activation(y + layer.bias if layer.use_bias else y)
  return call


def _position_embedding_by_gather(layer):
  """TemporalPositionEmbedding.call as a GATHER of the table at positions 0..T-1 counted
  along x, instead of slicing the table to x's length: a slice bound read from x's shape
  makes every later tensor's shape known only at invoke, which TFLite then re-plans on
  every call (as the tensordot of Dense and the masks' zeros_like did; the cost is in
  docs/benchmarks.md). The same table rows."""

  def call(x):
    c = x[0, :, 0]
    ones = tf.cast(tf.logical_or(tf.equal(c, c), tf.not_equal(c, c)), tf.int32)  # NaN too
    return x + tf.gather(layer.table, tf.cumsum(ones) - 1)[None]
  return call


def tflite_graph_model(model, lstm="fused", runtime_kernels=False):
  """A copy of `model` whose LSTMs convert to built-in ops (see the module docstring);
  runtime_kernels: also the batch-1 rewrites of runtime_kernels.py (fused LSTMs only)."""
  from cimha_tf.model import UnrolledLSTM, with_lstm_implementation
  from cimha_tf.model.video_input import TemporalPositionEmbedding
  if lstm not in LSTM_FORMS:
    raise ValueError(f"lstm={lstm!r}: expected one of {LSTM_FORMS}")
  # The attention in the fast path's form (cimha_tf/model/attention.py): batched matmuls,
  # and always through _masked_softmax, which the additive form below replaces (Keras's
  # own layer takes ops.dot_product_attention instead when its dropout is 0).
  copy = with_lstm_implementation(model, "unrolled", private_fast_path=True)
  if lstm == "fused":
    layers = [l for l in copy._flatten_layers(include_self=False, recursive=True)
              if isinstance(l, UnrolledLSTM)]
    if not layers:
      raise ValueError("model has no LSTM layers to fuse")
    for layer in layers:
      # Instance-level override: same weights, loop replaced by the composite function.
      layer.call = (lambda l: lambda x, *a, **k: _fused_call(l, x, hoist=runtime_kernels))(layer)
    if runtime_kernels:
      runtime_kernels_lib.install_factored_start_lstm(copy, _fused_call)
  for layer in copy._flatten_layers(include_self=False, recursive=True):
    if isinstance(layer, keras.layers.MultiHeadAttention):
      layer._masked_softmax = _additive_masked_softmax(layer)
    elif (type(layer) is keras.layers.Dense and layer.lora_rank is None
          and layer.quantization_mode is None):
      layer.call = _dense_on_sequences(layer)
    elif isinstance(layer, TemporalPositionEmbedding):
      layer.call = _position_embedding_by_gather(layer)
  return copy


def keras_free_module(model, *functions, **resources):
  """A tf.Module tracking the model's variables (not the Keras model object, whose
  SavedModel hooks would trace an extra dynamic-shape signature) plus `resources`."""
  module = tf.Module()
  module.variables_ = [v.value for v in model.variables]
  module.functions_ = list(functions)
  for name, resource in resources.items():
    setattr(module, name, resource)
  return module


def _unclip_fused_lstms(flatbuffer):
  """Sets cell_clip = 0 on every UNIDIRECTIONAL_SEQUENCE_LSTM (Keras never clips)."""
  from tensorflow.lite.python import schema_py_generated as schema
  from cimha_tf.deploy import quantization
  model = quantization.load(flatbuffer)
  codes = quantization.builtin_codes(model)
  lstm_code = schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM
  count = 0
  for subgraph in model.subgraphs:
    for op in subgraph.operators:
      if codes[op.opcodeIndex] == lstm_code:
        op.builtinOptions.cellClip = 0.0
        count += 1
  return quantization.save(model), count


def convert(model, max_video_len, max_query_len, quantize="none", lstm="fused", batch_size=1,
            runtime_kernels=True, free_length=None):
  """Keras model -> .tflite bytes: video_features float32 (batch, N, Dv), video_mask
  float32 (batch, N), query_tokens int32 (batch, max_query_len) -> the three (batch, N)
  curves. N is max_video_len, or with free_length (default: with fused LSTMs) any length up
  to it, max_video_len until a runner resizes (module docstring). Raises ValueError when the result would need anything
  but TFLite built-in ops."""
  return convert_many(model, max_video_len, max_query_len, (quantize,), lstm, batch_size,
                      runtime_kernels, free_length)[quantize]


def convert_many(model, max_video_len, max_query_len, quantizations=QUANTIZATIONS,
                 lstm="fused", batch_size=1, runtime_kernels=True, free_length=None):
  """{quantize: .tflite bytes} for several quantizations, traced once per graph form.

  runtime_kernels: at batch 1 with fused LSTMs, "none" and "float16" take the per-query
  LSTM weights of runtime_kernels.py (the same function, faster); "dynamic_int8" does not
  (its hybrid LSTM kernel reads constant int8 weights), so it comes from a second graph
  without them. False: constant weights everywhere. free_length: see convert."""
  for q in quantizations:
    if q not in QUANTIZATIONS:
      raise ValueError(f"quantize={q!r}: expected one of {QUANTIZATIONS}")
  free_length = resolve_free_length(lstm, free_length)
  if free_length and lstm != "fused":
    raise ValueError("free_length needs lstm='fused': the unrolled form has one cell per "
                     "step, so its time axis is fixed")
  runtime = runtime_kernels and lstm == "fused" and batch_size == 1
  forms = {}
  for q in quantizations:
    forms.setdefault(runtime and q != "dynamic_int8", []).append(q)
  results = {}
  for runtime_form, group in forms.items():
    graph_model = tflite_graph_model(model, lstm, runtime_form)
    results.update(_convert_graph(graph_model, max_video_len, max_query_len, group, lstm,
                                  batch_size, free_length))
  return {q: results[q] for q in quantizations}


def resolve_free_length(lstm, free_length=None):
  """free_length as convert uses it: None means a free time axis with fused LSTMs."""
  return lstm == "fused" if free_length is None else bool(free_length)


def _convert_graph(graph_model, max_video_len, max_query_len, quantizations, lstm,
                   batch_size, free_length):
  from cimha_tf.model import video_dim_of
  n = None if free_length else max_video_len
  specs = [tf.TensorSpec([batch_size, n, video_dim_of(graph_model)], tf.float32,
                         "video_features"),
           tf.TensorSpec([batch_size, n], tf.float32, "video_mask"),
           tf.TensorSpec([batch_size, max_query_len], tf.int32, "query_tokens")]

  @tf.function(input_signature=specs, autograph=False)
  def serve(video_features, video_mask, query_tokens):
    out = graph_model({"video_features": video_features, "video_mask": video_mask,
                       "query_tokens": query_tokens}, training=False)
    return {name: out[name] for name in OUTPUTS}

  results = {}
  with tempfile.TemporaryDirectory() as tmp:
    tf.saved_model.save(keras_free_module(graph_model, serve), tmp,
                        signatures={"serving_default": serve.get_concrete_function()})
    for quantize in quantizations:
      if quantize == "dynamic_int8" and lstm == "fused":
        continue  # from the float32 conversion, below
      results[quantize] = _convert_saved_model(tmp, quantize, lstm)
    if "dynamic_int8" in quantizations and lstm == "fused":
      float32 = results.get("none") or _convert_saved_model(tmp, "none", lstm)
      results["dynamic_int8"] = _dynamic_int8(float32)
  if free_length:
    results = {q: _default_video_length(b, max_video_len) for q, b in results.items()}
  return results


def _default_video_length(flatbuffer, max_video_len):
  """The video inputs' default shape (what an interpreter allocates before any resize)
  set to max_video_len steps; their shape_signature keeps the free axis (-1). So a runner
  that never resizes gets the fixed-shape contract, and TFLiteModel reads the maximum from
  it."""
  from cimha_tf.deploy import quantization
  model = quantization.load(flatbuffer)
  for subgraph in model.subgraphs:
    for index in subgraph.inputs:
      tensor = subgraph.tensors[index]
      signature = list(tensor.shapeSignature) if tensor.shapeSignature is not None else []
      if len(signature) >= 2 and signature[1] == -1:
        shape = list(tensor.shape)
        shape[1] = max_video_len
        tensor.shape = shape
  return quantization.save(model)


def _convert_saved_model(path, quantize, lstm):
  converter = tf.lite.TFLiteConverter.from_saved_model(path)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if quantize == "float16":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
  elif quantize == "dynamic_int8":  # lstm="unrolled" only, see the module docstring
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  try:
    flatbuffer = converter.convert()
  except Exception as e:  # the converter's error names the op that is not built in
    raise ValueError(f"TFLite conversion with built-in ops only failed (lstm={lstm!r}, "
                     f"quantize={quantize!r}): {e}") from e
  flatbuffer, fused = _unclip_fused_lstms(flatbuffer)
  if lstm == "fused" and fused == 0:
    raise ValueError("the converter did not fuse the LSTMs (no UNIDIRECTIONAL_SEQUENCE_LSTM "
                     "op); convert with lstm='unrolled' instead")
  bad = sorted(o for o in op_names(flatbuffer) if o.startswith("FLEX") or o == "CUSTOM")
  if bad:
    raise ValueError(f"converted model needs non-built-in ops {bad}")
  return flatbuffer


def _dynamic_int8(float32):
  from cimha_tf.deploy import quantization
  flatbuffer, _ = quantization.lstm_int8_rest_float16(float32)
  op_names(flatbuffer)  # the interpreter loads it
  return flatbuffer


def lstm_shapes(flatbuffer):
  """[(steps or None when free, input columns, units)] of every UNIDIRECTIONAL_SEQUENCE_LSTM,
  in graph order."""
  from ai_edge_litert.interpreter import Interpreter
  it = Interpreter(model_content=flatbuffer)
  tensors = {t["index"]: t for t in it.get_tensor_details()}
  out = []
  for op in it._get_ops_details():
    if op["op_name"] == "UNIDIRECTIONAL_SEQUENCE_LSTM":
      # input, input-to-input weights; a free time axis reads as None
      x, w = (tensors[i]["shape_signature"] for i in op["inputs"][:2])
      out.append((None if x[1] < 0 else int(x[1]), int(x[2]), int(w[0])))
  return out


def op_names(flatbuffer):
  """Set of op names (e.g. 'FULLY_CONNECTED', 'UNIDIRECTIONAL_SEQUENCE_LSTM') in a model."""
  from ai_edge_litert.interpreter import Interpreter
  interpreter = Interpreter(model_content=flatbuffer)
  return {d["op_name"] for d in interpreter._get_ops_details()}


class TFLiteModel:
  """Runs a converted model in the standalone LiteRT interpreter.

  `model(video_features (T, Dv), query_tokens (l,))` pads/masks one query to the fixed
  shapes and returns the three curves cut to T steps; `run_batch` takes already padded
  (batch, N, Dv) / (batch, N) / (batch, L) arrays of the model's batch size. With a free
  time axis (`free_length`, the default export) N may be 1..max_video_len, and both run
  only up to the longest valid step of the batch (padded steps cannot change valid
  outputs, and come back as zeros), so latency follows the video's length.
  """

  def __init__(self, model_path_or_bytes, num_threads=None):
    from ai_edge_litert.interpreter import Interpreter
    if isinstance(model_path_or_bytes, (bytes, bytearray)):
      self.source = "<bytes>"
      kwargs = {"model_content": bytes(model_path_or_bytes)}
    else:
      self.source = os.fspath(model_path_or_bytes)
      if not os.path.isfile(self.source):
        raise FileNotFoundError(f"TFLite model {self.source} not found")
      kwargs = {"model_path": self.source}
    try:
      self.interpreter = Interpreter(num_threads=num_threads, **kwargs)
    except (ValueError, RuntimeError) as e:
      raise ValueError(f"{self.source}: not a loadable TFLite model ({e})") from e
    self.interpreter.allocate_tensors()  # reset_all_variables needs allocated tensors
    self.runner = self.interpreter.get_signature_runner()
    details = self.runner.get_input_details()
    missing = [k for k in INPUTS if k not in details]
    if missing:
      raise ValueError(f"{self.source}: inputs {sorted(details)} lack {missing}; "
                       "not a cimha_tf TFLite export")
    shape = details["video_features"]["shape"]
    self.batch_size, self.max_video_len, self.video_dim = (int(s) for s in shape)
    self.max_query_len = int(details["query_tokens"]["shape"][1])
    self.free_length = int(details["video_features"]["shape_signature"][1]) == -1
    tables = [t["shape"] for t in self.interpreter.get_tensor_details()
              if _WORD_TABLE.search(t["name"]) and len(t["shape"]) == 2]
    # Rows of the word-embedding table (None if the converter renamed it): a vocab.json of
    # another size would index past it (GATHER fails) or mean other words.
    self.vocab_size = int(tables[0][0]) if tables else None

  def run_batch(self, video_features, video_mask, query_tokens):
    feeds = {"video_features": np.asarray(video_features, np.float32),
             "video_mask": np.asarray(video_mask, np.float32),
             "query_tokens": np.asarray(query_tokens, np.int32)}
    n = feeds["video_features"].shape[1] if feeds["video_features"].ndim == 3 else -1
    if not (self.free_length and 1 <= n <= self.max_video_len):
      n = self.max_video_len
    expected = {"video_features": (self.batch_size, n, self.video_dim),
                "video_mask": (self.batch_size, n),
                "query_tokens": (self.batch_size, self.max_query_len)}
    for name, want in expected.items():
      if feeds[name].shape != want:
        steps = f"1..{self.max_video_len}" if self.free_length else str(self.max_video_len)
        raise ValueError(f"{name}: shape {feeds[name].shape}, expected {want} ({steps} "
                         f"video steps; shapes of {self.source})")
    ids = feeds["query_tokens"]
    if ids.min() < 0 or (self.vocab_size is not None and ids.max() >= self.vocab_size):
      raise ValueError(f"query_tokens: ids must be in [0, {self.vocab_size}) (the vocabulary "
                       f"of {self.source}), got {int(ids.min())}..{int(ids.max())}")
    if self.free_length:  # run only up to the batch's last valid step
      valid = np.nonzero((feeds["video_mask"] > 0.5).any(axis=0))[0]
      cut = int(valid[-1]) + 1 if len(valid) else 1
      feeds["video_features"] = feeds["video_features"][:, :cut]
      feeds["video_mask"] = feeds["video_mask"][:, :cut]
    # The fused LSTM keeps its state in variable tensors that persist across invocations;
    # every query starts from zero state, as in Keras.
    self.interpreter.reset_all_variables()
    out = self.runner(**feeds)
    # Copies: the runner's arrays may alias interpreter buffers reused by the next call.
    curves = {name: np.zeros((self.batch_size, n), np.float32) for name in OUTPUTS}
    for name in OUTPUTS:
      curves[name][:, :out[name].shape[1]] = out[name]
    return curves

  def __call__(self, video_features, query_tokens):
    feats = np.asarray(video_features, np.float32)
    tokens = np.asarray(query_tokens)
    if feats.ndim != 2 or feats.shape[1] != self.video_dim:
      raise ValueError(f"video_features: shape {feats.shape}, expected (T, {self.video_dim})")
    t = feats.shape[0]
    if not 1 <= t <= self.max_video_len:
      raise ValueError(f"video_features: {t} steps, expected 1..{self.max_video_len} "
                       "(pool longer videos with cimha_tf.data.pooling.pool_to_max_len)")
    if tokens.ndim != 1 or not 1 <= tokens.shape[0] <= self.max_query_len:
      raise ValueError(f"query_tokens: shape {tokens.shape}, expected (l,) with "
                       f"1 <= l <= {self.max_query_len}")
    if not np.isfinite(feats).all():
      raise ValueError("video_features: NaN/inf values")
    n = t if self.free_length else self.max_video_len
    f = np.zeros((self.batch_size, n, self.video_dim), np.float32)
    m = np.zeros((self.batch_size, n), np.float32)
    q = np.zeros((self.batch_size, self.max_query_len), np.int32)
    f[0, :t], m[0, :t], q[0, :tokens.shape[0]] = feats, 1.0, tokens
    out = self.run_batch(f, m, q)
    return {name: v[0, :t] for name, v in out.items()}

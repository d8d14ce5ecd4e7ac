"""Weight quantization of a float32 TFLite flatbuffer, tensor by tensor.

The converter's own dynamic-range mode (`Optimize.DEFAULT` without data) cannot choose:
it turns every float weight of >= 1024 elements into int8 and leaves the rest float32.
On this model the op type decides whether int8 costs the top-1 window: int8
FULLY_CONNECTED weights (hybrid kernel: each input row quantized on the fly) move it,
int8 LSTM weights do not (export/README.md has the measurements). So `dynamic_int8` is
built here from the float32 conversion of the same graph:

* the weight matrices of every UNIDIRECTIONAL_SEQUENCE_LSTM -> int8, symmetric, one scale
  per matrix (the layout the converter writes and the hybrid LSTM kernel reads), inputs
  quantized asymmetrically per row as the converter sets it;
* every other float32 constant -> float16 followed by a DEQUANTIZE op, as the
  converter's float16 mode does: stored in half the bytes, computed in float32
  (DEQUANTIZE of a constant runs once; XNNPACK unpacks it at delegate init). Except
  scalars and values beyond float16's range, which stay float32 exactly.

All ops stay built-in. The quantization starts from the float32 weights themselves (not
from float16 or the converter's int8), so nothing is rounded twice.
"""

import numpy as np

# Inputs 1-8 of UNIDIRECTIONAL_SEQUENCE_LSTM: input-to-{i,f,c,o} and recurrent-to-{i,f,c,o}
# weights. 0 is the sequence; 9-11 peepholes, 12-15 biases, 16-17 projection, 18-19 the
# h/c state variables (absent or float here).
LSTM_WEIGHT_INPUTS = range(1, 9)
# Op versions the converter writes for these forms (TF 2.21): hybrid LSTM with
# asymmetric inputs, DEQUANTIZE of float16.
_HYBRID_LSTM_VERSION = 3
_DEQUANTIZE_FLOAT16_VERSION = 3


def load(flatbuffer):
  """.tflite bytes -> the schema's object tree (tensors, buffers, operators, editable)."""
  from tensorflow.lite.tools import flatbuffer_utils
  if bytes(flatbuffer[4:8]) != b"TFL3":
    raise ValueError(f"flatbuffer: {len(flatbuffer)} bytes without the TFL3 file "
                     "identifier, expected a .tflite model")
  return flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))


def save(model):
  from tensorflow.lite.tools import flatbuffer_utils
  return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def builtin_codes(model):
  """Builtin operator code of each entry of model.operatorCodes."""
  return [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]


def _constant(model, tensor):
  """The float32 constant's values, or None when `tensor` is not a float32 constant."""
  from tensorflow.lite.python import schema_py_generated as schema
  data = model.buffers[tensor.buffer].data
  if tensor.type != schema.TensorType.FLOAT32 or data is None or not len(data):
    return None
  return np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float32).reshape(tensor.shape)


def _new_buffer(model, array):
  from tensorflow.lite.python import schema_py_generated as schema
  buffer = schema.BufferT()
  buffer.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
  model.buffers.append(buffer)
  return len(model.buffers) - 1


def _opcode_index(model, code, version):
  """Index of the (code, version) entry of model.operatorCodes, added if missing."""
  from tensorflow.lite.python import schema_py_generated as schema
  for i, (c, entry) in enumerate(zip(builtin_codes(model), model.operatorCodes)):
    if c == code and entry.version == version:
      return i
  entry = schema.OperatorCodeT()
  entry.builtinCode, entry.deprecatedBuiltinCode, entry.version = code, min(code, 127), version
  model.operatorCodes.append(entry)
  return len(model.operatorCodes) - 1


def symmetric_int8(values):
  """(int8 values, scale): round(values / scale) with scale = max|values| / 127 (1 for
  all zeros), the symmetric per-tensor form of TFLite's int8 weights."""
  values = np.asarray(values, np.float32)
  absmax = float(np.abs(values).max())
  scale = float(np.float32(absmax / 127.0)) if absmax > 0 else 1.0
  return np.clip(np.round(values / np.float32(scale)), -127, 127).astype(np.int8), scale


def _store(model, tensor, values, kind, cache):
  """Rewrites constant `tensor` in place as kind "int8" or "float16"; tensors sharing a
  buffer share the rewritten one."""
  from tensorflow.lite.python import schema_py_generated as schema
  key = (tensor.buffer, kind)
  if key not in cache:
    if kind == "float16":
      cache[key] = (_new_buffer(model, values.astype(np.float16)), None)
    else:
      q, scale = symmetric_int8(values)
      cache[key] = (_new_buffer(model, q), scale)
  tensor.buffer, scale = cache[key]
  if kind == "float16":
    tensor.type = schema.TensorType.FLOAT16
    return
  tensor.type = schema.TensorType.INT8
  tensor.quantization = schema.QuantizationParametersT()
  tensor.quantization.scale, tensor.quantization.zeroPoint = [scale], [0]
  tensor.quantization.quantizedDimension = 0


def _dequantize_op(subgraph, index, opcode_index):
  """A DEQUANTIZE op from constant `index` to a new float32 tensor (its outputs[0])."""
  from tensorflow.lite.python import schema_py_generated as schema
  tensor = subgraph.tensors[index]
  output = schema.TensorT()
  output.name = tensor.name + b";dequantize"
  output.shape, output.shapeSignature = tensor.shape, tensor.shapeSignature
  output.type, output.buffer = schema.TensorType.FLOAT32, 0
  subgraph.tensors.append(output)
  op = schema.OperatorT()
  op.opcodeIndex, op.inputs, op.outputs = opcode_index, [index], [len(subgraph.tensors) - 1]
  op.builtinOptionsType = schema.BuiltinOptions.NONE
  return op


def _float16_worthwhile(values):
  # A scalar saves nothing and costs an op; beyond float16's range (mask values like
  # -1e9) the value would change (the converter's float16 mode clips it to -65504).
  return values.size > 1 and bool(np.all(np.abs(values) <= np.finfo(np.float16).max))


def _drop_unused_buffers(model):
  used = {t.buffer for sg in model.subgraphs for t in sg.tensors}
  used.update(m.buffer for m in (model.metadata or []))
  for i, buffer in enumerate(model.buffers):
    if i not in used:
      buffer.data = None


def lstm_int8_rest_float16(flatbuffer):
  """float32 .tflite bytes -> (bytes, counts): LSTM weights int8, other constants float16
  (see the module docstring). counts: tensors per storage kind."""
  from tensorflow.lite.python import schema_py_generated as schema
  ops = schema.BuiltinOperator
  model = load(flatbuffer)
  if model.buffers[0].data is not None and len(model.buffers[0].data):
    raise ValueError("buffer 0 is not the empty buffer; not a converter-written model")
  codes = builtin_codes(model)
  cache, counts = {}, {"int8": 0, "float16": 0}
  for subgraph in model.subgraphs:
    lstm_weights, keep = set(), set()
    for op in subgraph.operators:
      if codes[op.opcodeIndex] == ops.UNIDIRECTIONAL_SEQUENCE_LSTM:
        weights = [op.inputs[i] for i in LSTM_WEIGHT_INPUTS if op.inputs[i] >= 0]
        if any(_constant(model, subgraph.tensors[t]) is None for t in weights):
          raise ValueError("an LSTM's weights are computed at run time (the batch-1 "
                           "per-query weights of runtime_kernels.py); the int8 hybrid "
                           "kernel needs constant weights: convert without them")
        lstm_weights.update(weights)
        # The hybrid kernel reads its biases etc. as float32 constants: left as they are.
        keep.update(t for t in op.inputs if t >= 0 and t not in weights)
        op.builtinOptions.asymmetricQuantizeInputs = True
    if any(codes[op.opcodeIndex] != ops.UNIDIRECTIONAL_SEQUENCE_LSTM and
           lstm_weights.intersection(op.inputs) for op in subgraph.operators):
      raise ValueError("an LSTM weight is also a non-LSTM op's input; it cannot be int8")
    replaced, dequantize_ops = {}, []
    for index, tensor in enumerate(list(subgraph.tensors)):
      values = _constant(model, tensor)
      if values is None or index in keep:
        continue
      if index in lstm_weights:  # the hybrid LSTM reads int8 weights itself
        _store(model, tensor, values, "int8", cache)
        counts["int8"] += 1
      elif _float16_worthwhile(values):
        _store(model, tensor, values, "float16", cache)
        counts["float16"] += 1
        opcode = _opcode_index(model, ops.DEQUANTIZE, _DEQUANTIZE_FLOAT16_VERSION)
        dequantize_ops.append(_dequantize_op(subgraph, index, opcode))
        replaced[index] = dequantize_ops[-1].outputs[0]
    for op in subgraph.operators:
      op.inputs = [replaced.get(t, t) for t in op.inputs]
    # DEQUANTIZE ops first: the operator list is the execution order.
    subgraph.operators = dequantize_ops + list(subgraph.operators)
  if counts["int8"]:
    for entry, code in zip(model.operatorCodes, codes):
      if code == ops.UNIDIRECTIONAL_SEQUENCE_LSTM:
        entry.version = max(entry.version, _HYBRID_LSTM_VERSION)
  _drop_unused_buffers(model)
  return save(model), counts

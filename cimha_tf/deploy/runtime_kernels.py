"""Batch-1 TFLite: LSTM input weights computed per query, so the LSTM kernel reads fewer
input columns.

TFLite's LSTM kernel multiplies each step's input by the input weights inside its
sequential loop, so its cost grows with the input width D (`docs/benchmarks.md`, figure
7). The op also accepts input weights computed at run time, so with batch 1 (one query
per invoke) two exact rewrites give it fewer columns:

* The start Bi-LSTM (eq 10) reads s_t = [A_t v^q, q^v_t] (eq 9, "backprojection"), width
  2D. Its input projection s_t W = A_t (v^q W_top) + q^v_t W_bottom, so each direction
  reads [A_t, q^v_t] (L + D columns; paper shapes 153 instead of 256) with the per-query
  weights [v^q W_top; W_bottom]; v^q W_top is one small matmul (L x D x 4u) per query.
* An LSTM over T steps of D >= 2T inputs (the query Bi-LSTM: 25 words of 300-d GloVe)
  reads the identity (T columns, step t sees e_t) with the per-query weights x W (T x 4u),
  computed as one matmul outside the loop; below D = 2T that matmul costs about what it
  saves.

Both are the same function up to float32 rounding (the sums are grouped differently).
With batch > 1 each query would need its own weights, which the op cannot take: the
rewrites apply to batch-1 models only. The int8 form's hybrid kernel needs constant
weights; `tflite.convert_many` builds it without them.
"""

import tensorflow as tf

from cimha_tf.model.bilstm import bidirectional

HOIST_MIN_COLUMNS_PER_STEP = 2  # D >= 2T: see the module docstring


def hoisted_input(x, kernel):
  """(identity input (1, T, T), per-query weights (T, 4u)) for x (1, T, D), or None when
  the plain form reads fewer columns or the shape is not static batch 1."""
  b, t, d = x.shape
  if b != 1 or t is None or d is None or d < HOIST_MIN_COLUMNS_PER_STEP * t:
    return None
  return tf.eye(t, batch_shape=[1], dtype=x.dtype), tf.matmul(x[0], kernel)


def install_factored_start_lstm(model, fused_call):
  """Rewires `model` (a copy being exported at batch 1) so that its start Bi-LSTM reads
  [A_vq, q^v] with per-query weights (module docstring). fused_call(layer, x, kernel)
  runs one LSTM direction. Returns whether the model has that structure (two-way cross
  interaction with "backprojection", no sentence_product); otherwise nothing changes.
  The rewrite also needs static batch 1 and L < D where it is traced, else the start
  Bi-LSTM runs as before.

  The cross-interaction layer records its factors while the export traces the model; the
  start Bi-LSTM uses them only when its input is the very tensor the cross layer returned,
  and otherwise runs as before."""
  try:
    cross, span = model.get_layer("cross"), model.get_layer("span_head")
  except ValueError:
    return False
  if (not cross.two_way or cross.cross_fusion != "backprojection"
      or cross.sentence_product):
    return False
  factors = {}

  def cross_call(v_hat, q_hat, video_mask, query_mask, training=None):
    qv, a_vq, vq = cross.interact(v_hat, q_hat, video_mask, query_mask, training)
    s = cross.fuse(qv, a_vq, vq, query_mask)
    factors.clear()
    factors.update(s=s, a_vq=a_vq, vq=vq, qv=qv)
    return s

  bilstm = span.start_lstm
  plain_call = bilstm.call

  def start_call(x, valid):
    vq = factors.get("vq")
    if factors.get("s") is not x or vq.shape[0] != 1 or vq.shape[1] >= vq.shape[2]:
      return plain_call(x, valid)
    d = vq.shape[2]

    def direction(lstm):
      kernel = tf.concat([tf.matmul(vq[0], lstm.kernel[:d]), lstm.kernel[d:]], axis=0)
      return lambda inputs: fused_call(lstm, inputs, kernel)

    return bidirectional(tf.concat([factors["a_vq"], factors["qv"]], axis=-1), valid,
                         direction(bilstm.forward_lstm), direction(bilstm.backward_lstm))

  cross.call = cross_call
  bilstm.call = start_call
  return True

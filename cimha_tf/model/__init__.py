"""The CI-MHA model (docs/paper.md eqs 1-16), its losses and span decoding.

Importing this package registers every custom layer for keras.models.load_model.
It does not import TensorFlow: the layers also run under KERAS_BACKEND=jax (on a machine
with JAX only); decode_spans / spans_to_seconds are TensorFlow ops, loaded on first use.
"""

from cimha_tf.model.bilstm import BiLSTM
from cimha_tf.model.cimha import OUTPUTS, build_model, video_dim_of, with_lstm_implementation
from cimha_tf.model.config import check_config, default_config, has_segment_head
from cimha_tf.model.cross_interaction import CrossInteraction
from cimha_tf.model.feed_forward import FeedForward
from cimha_tf.model.losses import compile_model, masked_bce, span_nll
from cimha_tf.model.lstm import UnrolledLSTM
from cimha_tf.model.masking import TokenMask
from cimha_tf.model.query_encoder import QueryEncoder
from cimha_tf.model.segment_head import NoSegmentHead, SegmentHead
from cimha_tf.model.self_interaction import SelfInteraction
from cimha_tf.model.span_head import SpanHead
from cimha_tf.model.validation import validate_inputs
from cimha_tf.model.video_input import TemporalPositionEmbedding, VideoProjection


def __getattr__(name):  # PEP 562: the TF-only decoding module only when asked for
  if name in ("decode_spans", "spans_to_seconds"):
    from cimha_tf.model import decoding
    return getattr(decoding, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The model section of every experiment config (`config.model`), with why each default."""

import ml_collections

VARIANTS = ("mha", "cimha_wo_ms", "cimha")
CROSS_FUSIONS = ("backprojection", "pool_tile")
LSTM_IMPLEMENTATIONS = ("keras", "unrolled", "scan")


def default_config():
  """Returns the model ConfigDict; cimha_tf/configs/*.py start from it and override fields."""
  c = ml_collections.ConfigDict()
  # The paper's full model; "cimha_wo_ms" and "mha" are its two ablation rows.
  c.variant = "cimha"
  # docs/paper.md's default reading of eqs 7/9: eq 7's word-length output mapped back onto
  # the frames through eq 8's attention weights; "pool_tile" is ExCL's sentence-vector
  # reading, kept so the choice can be measured.
  c.cross_fusion = "backprojection"
  # Model width D. 128 is the benchmark width (issue 7), VSLNet/ExCL-sized; the paper
  # configs use the paper's 512 (PAPER_WIDTH, paper_width below), the demo its own 64.
  c.width = 128
  # 4 heads of 32 dims: enough heads to attend to several phrases, each head still wide.
  c.num_heads = 4
  # Standard transformer dropout; the datasets are small (12k Charades queries).
  c.dropout = 0.1
  # Feed-forward hidden width (eqs 5-6): the usual 2-4x of D, the lower end for speed.
  c.ffn_width = 256
  # Query Bi-LSTM units per direction (eq 2): 2 x 64 = D, so eq 3's skip needs no projection.
  c.query_lstm_units = 64
  # Start/end Bi-LSTM units per direction (eqs 10-11): 2 x 64 = D, as ExCL's sizes.
  c.span_lstm_units = 64
  # Hidden width of the start/end/segment MLPs (eqs 12, 13, 15).
  c.mlp_width = 128
  # docs/paper.md: at most 128 video steps (longer videos are mean-pooled into 128 bins) and
  # 25 query words; the learned position table has max_video_len rows.
  c.max_video_len = 128
  c.max_query_len = 25
  # GloVe 300-d word vectors (docs/paper.md, eq 2).
  c.embedding_dim = 300
  # Frozen GloVe by default (ExCL/VSLNet practice; 12k queries cannot retrain 300-d
  # vectors for a 10k+ vocabulary). Without a given matrix the embedding always trains.
  c.train_embeddings = False
  # lambda of the total loss (eq 16's BCE). Not in the paper; 1.0 weighs the per-step
  # mean BCE (~0.7 at start) below the two NLL terms (~log N each), so boundaries lead.
  # Ignored (no head, no loss) for the "mha" and "cimha_wo_ms" variants.
  c.segment_loss_weight = 1.0
  # Eqs 7-8 are written without a skip, unlike eqs 3-4. Literally read, a frame's s_t is
  # then a mix of word vectors that differs from its neighbours only through attention
  # weights, which starves the boundary LSTMs of the frame's own content; the skip
  # (query-side input added back, as in transformer cross-attention) is on by default
  # and False gives the literal reading.
  c.cross_skip = True
  # Not in the paper. True appends v_hat_t * q_sent to eq 9's s_t, q_sent = q_hat averaged
  # over the valid words: each frame's match with the whole sentence as a Hadamard product
  # (2D-TAN fuses its sentence and moment features so; VSLNet's C * A is the per-word
  # form). Eq 9 alone concatenates, so whether a frame agrees with the query reaches the
  # heads only through attention weights; on queries that need two words at once the
  # paper's form learns slowly and memorises (docs/learning.md, "Recipe").
  # False: the paper's eq 9.
  c.sentence_product = False
  # "keras" = keras.layers.LSTM (tf.while_loop); "unrolled" = plain ops over a static
  # time axis with the same weights (TFLite built-in ops, no Flex). Swappable with
  # cimha_tf.model.with_lstm_implementation. "scan" = the unrolled cell's math in a
  # loop (input projection hoisted out of it), same weights.
  c.lstm_implementation = "keras"
  # False: every attention and dropout layer is Keras's public one. True: the subclasses
  # in attention.py and dropout.py, same weights and inference outputs, a few percent
  # faster to train on TensorFlow (docs/benchmarks.md) but built on private Keras methods
  # that a Keras release may change (the layer then refuses to build, naming them).
  c.private_fast_path = False
  return c


# The paper's one model size: "GloVe embedding 512" on its query-encoder line. GloVe has no
# 512-d vectors (50/100/200/300), so it is read as the query Bi-LSTM's output, 2 x 256,
# and eq 3's skip makes that the model width D (docs/paper.md, "Training details").
PAPER_WIDTH = 512


def paper_width(c, width=PAPER_WIDTH):
  """Sets the widths of model config `c` for D = width, in the defaults' proportions: heads
  of 64, FFN 2D, query and start/end Bi-LSTMs 2 x D/2 (= D, so the skips need no
  projection), MLPs D/2. Used by configs/charades_sta_i3d.py and activitynet_captions_c3d.py."""
  c.width = width
  c.num_heads = max(1, width // 64)
  c.ffn_width = 2 * width
  c.query_lstm_units = width // 2
  c.span_lstm_units = width // 2
  c.mlp_width = width // 2
  return c


def check_config(c):
  """Raises ValueError naming the field when a model config value is out of range.

  Args:
    c: a model ConfigDict (default_config() with overrides).
  """
  def need(ok, field, expected):
    if not ok:
      raise ValueError(f"model.{field} = {c.get(field)!r}: expected {expected}")

  need(c.variant in VARIANTS, "variant", f"one of {VARIANTS}")
  need(c.cross_fusion in CROSS_FUSIONS, "cross_fusion", f"one of {CROSS_FUSIONS}")
  need(c.lstm_implementation in LSTM_IMPLEMENTATIONS, "lstm_implementation",
       f"one of {LSTM_IMPLEMENTATIONS}")
  for field in ("width", "num_heads", "ffn_width", "query_lstm_units", "span_lstm_units",
                "mlp_width", "max_video_len", "max_query_len", "embedding_dim"):
    need(int(c[field]) >= 1, field, "a positive integer")
  need(c.width % c.num_heads == 0, "width", f"a multiple of num_heads={c.num_heads}")
  need(0.0 <= c.dropout < 1.0, "dropout", "in [0, 1)")
  need(c.segment_loss_weight >= 0.0, "segment_loss_weight", ">= 0")


def has_segment_head(c):
  """Whether the model has eq 15's segment head (only the full "cimha" variant has).

  Args:
    c: a model ConfigDict.
  """
  return c.variant == "cimha"

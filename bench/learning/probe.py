"""The suite's simple learned baseline: a linear per-step probe (issue 22's).

The query vector is the mean of learned word embeddings over the query's words; each video
step's score is (W x_t + b) . q + c, trained with per-step BCE on the inside labels (no
boundary heads, no context between steps). It answers the window with the largest sum of
(p_t - max_t p_t / 2), the oracle's decoder (planted.best_window) at a threshold relative
to the video's peak: trained with BCE on moments of 10-30% of a video, the probabilities
stay below 0.5 where the evidence is weak, and a fixed 0.5 then answers single steps. What a model gains over it is
what reading steps in context and combining words buys.
"""

import keras
from keras import ops
import numpy as np

from bench.learning import planted
from cimha_tf.model import masking


def build(video_dim, vocab_size, dim=64):
  """Keras model with the project's input contract; outputs inside_probs (B, N) (and the
  contract's start/end_probs as uniform distributions, which no loss reads)."""
  video = keras.Input((None, video_dim), name="video_features")
  mask = keras.Input((None,), name="video_mask")
  tokens = keras.Input((None,), dtype="int32", name="query_tokens")
  q = masking.masked_mean(keras.layers.Embedding(vocab_size, dim)(tokens),
                         masking.TokenMask()(tokens))
  v = keras.layers.Dense(dim)(video)
  logits = ops.sum(v * q[:, None, :], axis=-1)
  logits = keras.layers.Dense(1)(logits[..., None])[..., 0]
  inside = ops.sigmoid(logits) * mask
  uniform = mask / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1.0)
  outputs = {"start_probs": keras.layers.Identity(name="start_probs")(uniform),
             "end_probs": keras.layers.Identity(name="end_probs")(uniform),
             "inside_probs": keras.layers.Identity(name="inside_probs")(inside)}
  return keras.Model({"video_features": video, "video_mask": mask, "query_tokens": tokens},
                     outputs, name="linear_probe")


def compile_probe(model, learning_rate):
  from cimha_tf.model.losses import masked_bce, span_nll
  model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                loss={"start_probs": span_nll, "end_probs": span_nll, "inside_probs": masked_bce},
                loss_weights={"start_probs": 0.0, "end_probs": 0.0, "inside_probs": 1.0})
  return model


def predict_rows(model, data_dir, split, batch_size=64):
  """Prediction rows of the probe on a prepared split (best run of p - max p / 2 per query)."""
  from cimha_tf.data import pipeline
  from cimha_tf.evaluation import runner
  text = {r["qid"]: r["query"] for r in runner.read_ground_truth(data_dir, split)}
  rows = []
  for inputs, meta in pipeline.eval_dataset(data_dir, split, batch_size):
    inside = model(inputs, training=False)["inside_probs"].numpy()
    for b, qid in enumerate(meta["qid"].numpy().tolist()):
      n = int(meta["num_steps"][b])
      p = inside[b, :n].astype(np.float64)
      i, j = planted.best_window(p - 0.5 * p.max())
      rows.append(planted.window_row(qid, text[qid], meta["vid"][b].numpy().decode(), i, j,
                                     meta["duration"][b], n))
  return rows


def evaluate(model, data_dir, split, batch_size=64):
  """The project's metrics of the probe on a prepared split."""
  return planted.score(predict_rows(model, data_dir, split, batch_size), data_dir, split)

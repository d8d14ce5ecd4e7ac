"""Eq 2: q0 = f_encoder(W), word embeddings (GloVe 300-d or learned) into a Bi-LSTM."""

import keras

from cimha_tf.model import masking
from cimha_tf.model.bilstm import BiLSTM
from cimha_tf.model.dropout import dropout_layer


@keras.saving.register_keras_serializable(package="cimha_tf")
class QueryEncoder(keras.layers.Layer):
  """query_tokens (B, L), query_mask (B, L) -> q0 (B, L, 2*lstm_units), 0 on padding.

  The embedding matrix is set after building (build_model), not through an initializer,
  so the config stays small; `train_embeddings=False` freezes it (frozen GloVe).

  Args:
    vocab_size: rows of the embedding (token ids 0..vocab_size-1, 0 = padding).
    embedding_dim: word vector width.
    lstm_units: units per direction of the Bi-LSTM.
    train_embeddings: whether the embedding trains.
    dropout: dropout rate on the word vectors.
    lstm_implementation: "keras", "unrolled" or "scan" (lstm.py).
    private_fast_path: use cimha_tf.model.dropout's Dropout (config.py).

  Call arguments:
    tokens: (B, L) int token ids.
    query_mask: (B, L), 1 on words, 0 on padding.
    training: whether dropout is on.

  Returns:
    q0: (B, L, 2 * lstm_units), 0 on padding.
  """

  def __init__(self, vocab_size, embedding_dim, lstm_units, train_embeddings=True,
               dropout=0.0, lstm_implementation="keras", private_fast_path=False, **kwargs):
    super().__init__(**kwargs)
    self.vocab_size = vocab_size
    self.embedding_dim = embedding_dim
    self.lstm_units = lstm_units
    self.train_embeddings = train_embeddings
    self.dropout = dropout
    self.lstm_implementation = lstm_implementation
    self.private_fast_path = private_fast_path
    self.embedding = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding",
                                            trainable=train_embeddings)
    self.drop = dropout_layer(dropout, private_fast_path)
    self.bilstm = BiLSTM(lstm_units, lstm_implementation, name="bilstm")

  def build(self, tokens_shape, query_mask_shape=None):
    self.embedding.build(tokens_shape)
    self.bilstm.build(tuple(tokens_shape) + (self.embedding_dim,))

  def call(self, tokens, query_mask, training=None):
    x = self.drop(self.embedding(tokens), training=training)
    return self.bilstm(masking.zero_padded(x, query_mask), query_mask)

  def compute_output_shape(self, tokens_shape, query_mask_shape=None):
    return tuple(tokens_shape) + (2 * self.lstm_units,)

  def get_config(self):
    return {**super().get_config(), "vocab_size": self.vocab_size,
            "embedding_dim": self.embedding_dim, "lstm_units": self.lstm_units,
            "train_embeddings": self.train_embeddings, "dropout": self.dropout,
            "lstm_implementation": self.lstm_implementation,
            "private_fast_path": self.private_fast_path}

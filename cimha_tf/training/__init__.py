"""cimha_tf.training."""

"""cimha_tf.evaluation."""

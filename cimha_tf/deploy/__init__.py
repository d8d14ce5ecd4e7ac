"""cimha_tf.deploy."""

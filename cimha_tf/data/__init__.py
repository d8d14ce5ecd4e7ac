"""Data: annotation readers, feature stores, text, TFRecords and the tf.data pipeline."""

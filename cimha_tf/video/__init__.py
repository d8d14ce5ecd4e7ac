"""From a video file to clip features: decoding (decode.py), the feature recipe (recipe.py)
and the extractors (extractor.py). A data-level package: it imports cimha_tf.data at most."""

"""cimha_tf.deploy: a trained model outside training code.

graph_tokenizer  the query tokenizer + vocabulary lookup as TF ops (serving graphs)
saved_model      EXPORT/cimha/VERSION for TF Serving: text and token-id signatures
tflite           fixed-shape TFLite with built-in ops only (fused LSTMs), and its runner
source           what an export reads from a training workdir
exporter         the library behind `python -m cimha_tf.export`
predictor        one query against one video with either exported format
"""

"""The library behind `python -m cimha_tf.export`: a loaded workdir model -> files."""

import os

from cimha_tf.common import atomic
from cimha_tf.common import lock
from cimha_tf.common.jsonfile import read_json_object


def export_saved_model(trained, output, version=1, overwrite=False, top_k=None):
  from cimha_tf.deploy import saved_model
  path = saved_model.export(trained.model, trained.vocab_tokens, output, trained.model_config,
                            top_k=top_k or trained.top_k, version=version, overwrite=overwrite,
                            extra_meta={"checkpoint": os.path.abspath(trained.checkpoint),
                                        "feature_recipe": trained.feature_recipe},
                            max_span_fraction=trained.max_span_fraction)
  size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
  return {"format": "saved_model", "path": path, "bytes": size}


def export_tflite(trained, output, quantize="none", overwrite=False, lstm="fused", batch_size=1,
                  free_length=None):
  from cimha_tf.deploy import tflite
  if not output.endswith(".tflite"):
    raise ValueError(f"--output={output}: a TFLite export must be a .tflite file path")
  vocab_path = os.path.join(os.path.dirname(os.path.abspath(output)), "vocab.json")
  # Every .tflite of a folder reads its vocab.json: one export per folder at a time.
  with lock.hold(vocab_path, "exporting TFLite"):
    if os.path.exists(output) and not overwrite:
      raise FileExistsError(f"{output} exists; pass --overwrite to replace it")
    # Replacing vocab.json with another vocabulary would silently give the models already
    # there other words for their ids.
    if os.path.exists(vocab_path) and not overwrite and _tokens_in(vocab_path) != trained.vocab_tokens:
      raise FileExistsError(f"{vocab_path} holds another vocabulary (of a .tflite exported there "
                            "before, which reads it); export to another folder, or pass "
                            "--overwrite to replace it")
    if trained.max_span_fraction is not None:
      from absl import logging
      logging.warning("%s: the workdir decodes windows of at most %g of the video "
                      "(config.eval.max_span_fraction); a .tflite file holds the curves only, and "
                      "the TFLite predictor decodes every (start, end) pair", output,
                      trained.max_span_fraction)
    c = trained.model_config
    flatbuffer = tflite.convert(trained.model, c.max_video_len, c.max_query_len, quantize,
                                lstm, batch_size, free_length=free_length)
    # Each file appears complete or not at all (a phone app or a copy never reads half).
    atomic.write_bytes(output, flatbuffer)
    atomic.write_json(vocab_path, {"tokens": trained.vocab_tokens}, ensure_ascii=False,
                      indent=None, sort_keys=False)
    from cimha_tf.deploy.predictor import recipe_path_for_tflite
    recipe_path = recipe_path_for_tflite(output)
    if trained.feature_recipe:  # predict --video extracts with it
      atomic.write_json(recipe_path, trained.feature_recipe)
    elif os.path.exists(recipe_path):
      os.remove(recipe_path)  # a stale one would claim a recipe this model was not trained on
  return {"format": "tflite", "path": output, "vocab": vocab_path, "quantize": quantize,
          "lstm": lstm, "free_length": tflite.resolve_free_length(lstm, free_length),
          "bytes": len(flatbuffer), "ops": sorted(tflite.op_names(flatbuffer))}


def _tokens_in(vocab_path):
  """The token list of a vocab.json; None when unreadable (so not this vocabulary either)."""
  try:
    return read_json_object(vocab_path, "vocabulary")["tokens"]
  except (OSError, ValueError, KeyError, TypeError):
    return None

"""Exports a trained workdir for serving (TF Serving SavedModel) or phones (TFLite).

  python -m cimha_tf.export --workdir=DIR --format=saved_model --output=EXPORT
      -> EXPORT/cimha/1/ with signatures serving_default (text) and serving_tokens
  python -m cimha_tf.export --workdir=DIR --format=tflite --output=FILE.tflite \
      [--quantize={none,float16,dynamic_int8}]
      -> FILE.tflite (built-in ops only) and vocab.json beside it

See cimha_tf/deploy/saved_model.py, cimha_tf/deploy/tflite.py and export/README.md.
Prints a JSON summary (paths, size in bytes, ops) on stdout.
"""

import json

from absl import flags, logging

from cimha_tf.common import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training workdir (config.json, vocab.json, best.keras).")
flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite"], "Export format.")
flags.DEFINE_string("output", None, "SavedModel base folder, or the .tflite file to write.")
flags.DEFINE_enum("quantize", "none", ["none", "float16", "dynamic_int8"], "TFLite weights.")
flags.DEFINE_string("checkpoint", "best", "'best', 'last' or a .keras path.")
flags.DEFINE_integer("version", 1, "SavedModel version folder (TF Serving serves the highest).",
                     lower_bound=0)
flags.DEFINE_bool("overwrite", False, "Replace an existing version folder / .tflite file.")
flags.DEFINE_integer("top_k", None, "Windows per query in the SavedModel (default config.eval.top_k).",
                     lower_bound=1)
flags.DEFINE_enum("tflite_lstm", "fused", ["fused", "unrolled"],
                  "LSTM form in TFLite: one fused op per direction, or unrolled cells.")
flags.DEFINE_integer("tflite_batch_size", 1, "Fixed batch size of the TFLite model.",
                     lower_bound=1)
flags.DEFINE_bool("tflite_free_length", True,
                  "TFLite video inputs take 1..max_video_len steps (latency follows the "
                  "video's length); --notflite_free_length fixes them at max_video_len. "
                  "Needs --tflite_lstm=fused.")
flags.mark_flags_as_required(["workdir", "output"])


_TFLITE_ONLY = ("quantize", "tflite_lstm", "tflite_batch_size", "tflite_free_length")
_SAVED_MODEL_ONLY = ("version", "top_k")


def main(argv):
  # A flag of the other format would be ignored silently (a --top_k for a .tflite file, a
  # --quantize for a SavedModel): refuse it, as the output path of the other format.
  other = _TFLITE_ONLY if FLAGS.format == "saved_model" else _SAVED_MODEL_ONLY
  given = [f"--{name}" for name in other if FLAGS[name].present]
  if given:
    raise cli.usage_error(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to "
                          f"--format={'tflite' if FLAGS.format == 'saved_model' else 'saved_model'} "
                          "only")
  if FLAGS.format == "saved_model" and FLAGS.output.endswith(".tflite"):
    raise cli.usage_error(f"--output={FLAGS.output} names a .tflite file but --format is "
                          "saved_model (the default), which writes a folder: pass --format=tflite")
  asked_free_length = FLAGS["tflite_free_length"].present and FLAGS.tflite_free_length
  if FLAGS.tflite_lstm == "unrolled" and asked_free_length:
    raise cli.usage_error("--tflite_free_length needs --tflite_lstm=fused (unrolled LSTMs have "
                          "one op chain per step, so their time axis is fixed)")
  from cimha_tf.deploy.exporter import export_saved_model, export_tflite
  from cimha_tf.deploy.source import load_workdir
  with cli.clear_errors():
    logging.info("loading %s (checkpoint %s)", FLAGS.workdir, FLAGS.checkpoint)
    trained = load_workdir(FLAGS.workdir, FLAGS.checkpoint)
    logging.info("exporting %s to %s", FLAGS.format, FLAGS.output)
    if FLAGS.format == "saved_model":
      summary = export_saved_model(trained, FLAGS.output, FLAGS.version, FLAGS.overwrite,
                                   FLAGS.top_k)
    else:
      summary = export_tflite(trained, FLAGS.output, FLAGS.quantize, FLAGS.overwrite,
                              FLAGS.tflite_lstm, FLAGS.tflite_batch_size,
                              FLAGS.tflite_free_length and FLAGS.tflite_lstm == "fused")
  print(json.dumps(summary, indent=1))


if __name__ == "__main__":
  cli.run(main)

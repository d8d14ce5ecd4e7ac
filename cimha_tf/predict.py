"""Top-k moments for one query in one video, with an exported model.

  python -m cimha_tf.predict --model=EXPORT/cimha/1 (or FILE.tflite) --features=FILE \
      --query="a person opens a door" --duration=30.5 [--top_k=5] [--feature_key=KEY]

--features: .npy (T, D), .npz (key `features`, or --feature_key), or an HDF5 file (entry
--feature_key, optional when it holds one) -- the layouts cimha_tf.data.features reads.
Longer videos are mean-pooled to the model's max_video_len steps.
Duration: features carry no timestamps, so the video's length in seconds must be given:
--duration=S, or --clip_seconds=C when each feature row covers C seconds (duration =
rows * C; e.g. 2 for moment_detr / UniVTG CLIP features). Neither -> an error.
A .tflite model reads vocab.json beside it (or --vocab). Prints JSON on stdout:
{"query", "features", "duration", "num_steps", "unknown_words": [...],
 "windows": [[start_s, end_s, score], ...]}; query words outside the model's vocabulary
(the model sees <unk> for them) are also warned about on stderr.
"""

import json

from absl import flags, logging

from cimha_tf.common import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "SavedModel folder (EXPORT, EXPORT/cimha or a version) or .tflite.")
flags.DEFINE_string("features", None, "Feature file: .npy, .npz or HDF5.")
flags.DEFINE_string("feature_key", None, "Key in the .npz / entry in the HDF5 file.")
flags.DEFINE_string("query", None, "The sentence to localise.")
flags.DEFINE_float("duration", None, "Video length in seconds.")
flags.DEFINE_float("clip_seconds", None, "Seconds per feature row; duration = rows * this.")
flags.DEFINE_integer("top_k", 5, "Number of windows.", lower_bound=1)
flags.DEFINE_string("vocab", None, "vocab.json for a .tflite model (default: beside it).")
flags.mark_flags_as_required(["model", "features", "query"])


def main(argv):
  from cimha_tf.data.features import load_feature_file
  from cimha_tf.data.text import tokenize
  from cimha_tf.deploy.predictor import check_duration_flags, load_predictor, resolve_duration
  try:
    check_duration_flags(FLAGS.duration, FLAGS.clip_seconds)
  except ValueError as e:
    raise cli.usage_error(str(e)) from e
  with cli.clear_errors():
    features = load_feature_file(FLAGS.features, FLAGS.feature_key)
    duration = resolve_duration(FLAGS.duration, FLAGS.clip_seconds, features.shape[0])
    predictor = load_predictor(FLAGS.model, FLAGS.vocab)
    windows = predictor.predict(features, FLAGS.query, duration, FLAGS.top_k,
                                source=FLAGS.features)
  seen = tokenize(FLAGS.query)[:predictor.max_query_len]
  if not any(ch.isalnum() for token in seen for ch in token):
    # Punctuation tokens are in GloVe's vocabulary, so the <unk> warning below stays silent.
    logging.warning("the query has no word, only punctuation %s: its windows say nothing "
                    "about a moment", seen)
  unknown = predictor.unknown_words(FLAGS.query)
  if unknown:
    n = len(seen)
    logging.warning("%s of the query's %d words are not in the model's vocabulary %s; the "
                    "model sees <unk> for them%s", len(unknown), n, unknown,
                    ": it sees no word of the query" if len(unknown) == n else "")
  print(json.dumps({"query": FLAGS.query, "features": FLAGS.features, "duration": duration,
                    "num_steps": min(features.shape[0], predictor.max_video_len),
                    "unknown_words": unknown, "windows": windows}, indent=1))


if __name__ == "__main__":
  cli.run(main)

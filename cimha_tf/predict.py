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

From a video file (docs/video.md): the model's export records its training features'
recipe; the video is decoded and embedded with it once, for every --query (repeatable):
  python -m cimha_tf.predict --model=EXPORT/cimha/1 --video=FILE --query="..." --query="..." \
      [--weights=PRESET_OR_DIR] [--long_video=pool|window] [--top_k=5]
prints {"video", "duration", "num_clips", "mode", "recipe", "seconds", "predictions": [{"query",
"vid", "pred_relevant_windows": [[start_s, end_s, score], ...], "pred_saliency_scores": [per
clip], "unknown_words"}]}; the duration comes from the video. Videos over max_video_len clips
are mean-pooled (--long_video=pool, as training pooled them) or run in overlapping windows
merged with NMS (--long_video=window); stderr says which ran and the seconds per step.
"""

import json

from absl import flags, logging

from cimha_tf.common import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "SavedModel folder (EXPORT, EXPORT/cimha or a version) or .tflite.")
flags.DEFINE_string("features", None, "Feature file: .npy, .npz or HDF5 (or --video).")
flags.DEFINE_string("video", None, "A video file: decoded and embedded with the model's recipe.")
flags.DEFINE_string("feature_key", None, "Key in the .npz / entry in the HDF5 file.")
flags.DEFINE_multi_string("query", None, "The sentence to localise (repeat it with --video "
                          "for several queries on one encoding).")
flags.DEFINE_float("duration", None, "Video length in seconds.")
flags.DEFINE_float("clip_seconds", None, "Seconds per feature row; duration = rows * this.")
flags.DEFINE_integer("top_k", 5, "Number of windows.", lower_bound=1)
flags.DEFINE_string("vocab", None, "vocab.json for a .tflite model (default: beside it).")
flags.DEFINE_string("weights", None, "--video: where the recipe's CLIP weights are (a preset "
                    "folder, say; default: the recipe's own, e.g. the KerasHub preset name).")
flags.DEFINE_string("extractor_model", None, "--video: the user backbone (.keras / SavedModel) "
                    "of a model trained on its features.")
flags.DEFINE_enum("long_video", "pool", ["pool", "window"], "--video longer than max_video_len "
                  "clips: mean-pool (as training did) or overlapping windows merged with NMS.")
flags.DEFINE_float("nms_iou", 0.5, "--long_video=window: IoU of temporal NMS.", lower_bound=0.0,
                   upper_bound=1.0)
flags.DEFINE_integer("batch_size", 32, "--video: frames per backbone call.", lower_bound=1)
flags.DEFINE_float("max_video_seconds", 3 * 3600.0, "--video: longer videos are refused.",
                   lower_bound=1.0)
flags.mark_flags_as_required(["model", "query"])


def _predict_video():
  import sys

  from cimha_tf.deploy.predictor import load_predictor
  from cimha_tf.deploy.video_predictor import describe_run, encode_video, predict_video
  if FLAGS.duration is not None or FLAGS.clip_seconds is not None:
    raise cli.usage_error("--video: the duration comes from the video; drop --duration/--clip_seconds")
  with cli.clear_errors():
    predictor = load_predictor(FLAGS.model, FLAGS.vocab)
    video = encode_video(predictor, FLAGS.video, weights=FLAGS.weights,
                         extractor_model=FLAGS.extractor_model, batch_size=FLAGS.batch_size,
                         max_seconds=FLAGS.max_video_seconds)
    result = predict_video(predictor, video, FLAGS.query, FLAGS.top_k, FLAGS.long_video,
                           nms_iou=FLAGS.nms_iou)
  print(describe_run(video, result, predictor.max_video_len), file=sys.stderr)
  if video.repairs:
    print(f"{FLAGS.video}: repairs (docs/video.md): {video.repairs}", file=sys.stderr)
  for p in result["predictions"]:
    if p["unknown_words"]:
      logging.warning("query %r: %d words not in the model's vocabulary %s (the model sees <unk>)",
                      p["query"], len(p["unknown_words"]), p["unknown_words"])
  seconds = {k: round(v, 3) for k, v in {**video.seconds, **result.pop("seconds")}.items()}
  print(json.dumps({"video": FLAGS.video, "recipe": video.recipe.describe(),
                    "seconds": seconds, **result}, indent=1))


def main(argv):
  if (FLAGS.features is None) == (FLAGS.video is None):
    raise cli.usage_error("pass --features=FILE (clip features) or --video=FILE, one of them")
  if FLAGS.video is not None:
    return _predict_video()
  if len(FLAGS.query) > 1:
    raise cli.usage_error("--features takes one --query (several: --video)")
  query = FLAGS.query[0]
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
    windows = predictor.predict(features, query, duration, FLAGS.top_k,
                                source=FLAGS.features)
  seen = tokenize(query)[:predictor.max_query_len]
  if not any(ch.isalnum() for token in seen for ch in token):
    # Punctuation tokens are in GloVe's vocabulary, so the <unk> warning below stays silent.
    logging.warning("the query has no word, only punctuation %s: its windows say nothing "
                    "about a moment", seen)
  unknown = predictor.unknown_words(query)
  if unknown:
    n = len(seen)
    logging.warning("%s of the query's %d words are not in the model's vocabulary %s; the "
                    "model sees <unk> for them%s", len(unknown), n, unknown,
                    ": it sees no word of the query" if len(unknown) == n else "")
  print(json.dumps({"query": query, "features": FLAGS.features, "duration": duration,
                    "num_steps": min(features.shape[0], predictor.max_video_len),
                    "unknown_words": unknown, "windows": windows}, indent=1))


if __name__ == "__main__":
  cli.run(main)

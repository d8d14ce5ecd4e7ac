"""Clip features of your own videos, in the layout prepare_data reads.

  python -m cimha_tf.extract_features --videos=DIR_OR_FILE_OR_LIST --output=DIR \
      [--extractor=clip_vit_b32] [--weights=clip_vit_base_patch32|PRESET_DIR|FILE.weights.h5|random] \
      [--batch_size=32] [--overwrite] [--max_video_seconds=10800]
  # a user model (.keras or SavedModel: preprocessed frames -> vectors) with its recipe:
  python -m cimha_tf.extract_features --videos=... --output=... --extractor=my_i3d.keras \
      --clip_seconds=1 --size=224 --mean=0.5,0.5,0.5 --std=0.5,0.5,0.5 --output_dim=1024

Writes DIR/VIDEO.npz (key `features`), DIR/durations.json, DIR/recipe.json (and
DIR/failed.json naming each unreadable video); then, with a JSONL of queries:
  python -m cimha_tf.prepare_data --dataset=jsonl --annotations=Q --features=DIR ...
Unreadable videos are reported by name and counted; the others are extracted; the exit
status is 1 when any failed. docs/video.md has the recipe, step by step.
"""

from absl import flags

from cimha_tf.common import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("videos", None, "A video file, a folder of videos, or a .txt list of paths.")
flags.DEFINE_string("output", None, "Feature folder to write (resumable).")
flags.DEFINE_string("extractor", "clip_vit_b32",
                    "clip_vit_b32 (built in), or a .keras file / SavedModel folder of your own.")
flags.DEFINE_string("weights", "clip_vit_base_patch32",
                    "clip_vit_b32's weights: a KerasHub preset name, a preset folder, a "
                    ".weights.h5 file, or 'random' (seeded; tests and timing only).")
flags.DEFINE_integer("seed", 0, "Seed of --weights=random.")
flags.DEFINE_integer("batch_size", 32, "Frames per backbone call.", lower_bound=1)
flags.DEFINE_bool("overwrite", False, "Redo videos already extracted.")
flags.DEFINE_float("max_video_seconds", 3 * 3600.0,
                   "Longer videos are refused (a guard; extraction streams).", lower_bound=1.0)
flags.DEFINE_bool("progress", True, "Show a progress bar.")
# A user model's recipe (ignored for clip_vit_b32, whose recipe is fixed).
flags.DEFINE_float("clip_seconds", 2.0, "User model: seconds per clip.", lower_bound=1e-3)
flags.DEFINE_integer("size", 224, "User model: frames resized (short side) and centre-cropped to this.",
                     lower_bound=1)
flags.DEFINE_list("mean", None, "User model: per-channel mean of pixels/255 (default CLIP's).")
flags.DEFINE_list("std", None, "User model: per-channel std (default CLIP's).")
flags.DEFINE_integer("output_dim", None, "User model: width of its vectors.", lower_bound=1)
flags.DEFINE_bool("l2_normalize", False, "User model: L2-normalise each vector.")
flags.mark_flags_as_required(["videos", "output"])


def _user_recipe():
  import os

  from cimha_tf.video.recipe import CLIP_MEAN, CLIP_STD, Recipe
  if FLAGS.output_dim is None:
    raise cli.usage_error("--extractor is a user model: pass --output_dim (its vectors' width)")
  def triple(name, value, default):
    if value is None:
      return default
    try:
      out = tuple(float(v) for v in value)
    except ValueError:
      out = ()
    if len(out) != 3:
      raise cli.usage_error(f"--{name}={','.join(value)}: expected 3 numbers R,G,B")
    return out
  name = os.path.splitext(os.path.basename(os.path.normpath(FLAGS.extractor)))[0]
  return Recipe(name, clip_seconds=FLAGS.clip_seconds, size=FLAGS.size,
                mean=triple("mean", FLAGS.mean, CLIP_MEAN), std=triple("std", FLAGS.std, CLIP_STD),
                output_dim=FLAGS.output_dim, l2_normalize=FLAGS.l2_normalize,
                weights=os.path.abspath(FLAGS.extractor)).validate("the flags")


def main(argv):
  import sys

  from cimha_tf.video import extract, extractor as extractor_lib
  recipe = None if FLAGS.extractor in extractor_lib.BUILTIN else _user_recipe()
  with cli.clear_errors():
    items = extract.list_videos(FLAGS.videos)  # a bad --videos fails before the model loads
    print(f"{len(items)} video(s) from {FLAGS.videos}; loading {FLAGS.extractor}", flush=True)
    extractor = extractor_lib.build_extractor(FLAGS.extractor, FLAGS.weights, FLAGS.seed, recipe)
    print(f"recipe: {extractor.recipe.describe()}", flush=True)
    summary = extract.extract_videos(FLAGS.videos, FLAGS.output, extractor,
                                     batch_size=FLAGS.batch_size, overwrite=FLAGS.overwrite,
                                     max_seconds=FLAGS.max_video_seconds, progress=FLAGS.progress)
  print(extract.format_summary(summary, FLAGS.output))
  if summary["failed"]:
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main)

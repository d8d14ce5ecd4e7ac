r"""Prepares a benchmark for training: TFRecords, vocabulary, embeddings, metadata.json.

  cimha-prepare --dataset=charades_sta --annotations=PATH \
      --features=PATH --output_dir=DIR [--glove=FILE] [--max_video_len=128] \
      [--max_query_len=25] [--feature_layout=auto] [--float16] [--skip_bad_videos] \
      [--val_every=6]
  (or python -m cimha_tf.prepare_data ...)
"""

from absl import flags

from cimha_tf.data import features as features_lib
from cimha_tf.common import cli

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", None, ["charades_sta", "activitynet_captions", "tacos", "jsonl"],
                  "Annotation format.")
flags.DEFINE_string("annotations", None, "Annotation folder or file of the dataset.")
flags.DEFINE_string("features", None, "Feature store: folder of VIDEO.npy / VIDEO.npz, or an HDF5 file.")
flags.DEFINE_string("output_dir", None, "Prepared folder to write.")
flags.DEFINE_string("glove", None, "GloVe text file (e.g. glove.840B.300d.txt); none: learned embeddings.")
# Bounded at parse time: out of range is a bad command line (exit 2), as in export.
flags.DEFINE_integer("max_video_len", 128, "Longer videos are mean-pooled into this many steps.",
                     lower_bound=1)
flags.DEFINE_integer("max_query_len", 25, "Queries are cut to this many tokens.", lower_bound=1)
flags.DEFINE_enum("feature_layout", "auto", ["auto"] + list(features_lib.LAYOUTS), "Feature store layout.")
flags.DEFINE_bool("float16", False, "Store features as float16 (half the disk and read bandwidth).")
flags.DEFINE_integer("val_every", 0,
                     "> 0: every Nth training video (file order), with all its queries, becomes a "
                     "'val' split, for datasets without one (Charades-STA: configs/"
                     "charades_sta_i3d.py selects its best epoch on it); 0: none.", lower_bound=0)
flags.DEFINE_bool("skip_bad_videos", False,
                  "Skip videos that are missing or unusable, counting their queries as dropped.")
flags.mark_flags_as_required(["dataset", "annotations", "features", "output_dir"])


def main(argv):
  from cimha_tf.data import prepare
  with cli.clear_errors():
    meta = prepare.prepare(
        FLAGS.dataset, FLAGS.annotations, FLAGS.features, FLAGS.output_dir, glove=FLAGS.glove,
        max_video_len=FLAGS.max_video_len, max_query_len=FLAGS.max_query_len,
        feature_layout=FLAGS.feature_layout, float16=FLAGS.float16, val_every=FLAGS.val_every,
        skip_bad_videos=FLAGS.skip_bad_videos)
  print(prepare.format_accounting(meta))
  print(f"wrote {FLAGS.output_dir}")


EXAMPLE = '{prog} --dataset=charades_sta --annotations=DATA/charades_sta --features=DATA/i3d_features --output_dir=prepared/charades --glove=glove.840B.300d.txt'


def run():
  """The console script's entry point (and python -m's)."""
  cli.run(main, EXAMPLE)


if __name__ == "__main__":
  run()

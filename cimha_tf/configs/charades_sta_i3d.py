"""Charades-STA with I3D features (1024-d), the paper's settings (docs/paper.md, "Training details").

From the paper (docs/paper.md, "Training details"): Adam at 1e-4, batch 100, at most 128
video steps and 25 query words, GloVe 300-d (model.embedding_dim). The paper gives no
learning-rate schedule (the rate stays constant), no epoch count and one model size,
"GloVe embedding 512", read as D = 512 (cimha_tf/model/config.py, paper_width: heads of 64,
FFN 1024, Bi-LSTMs 2 x 256); the rest (dropout, the segment loss weight lambda) is
cimha_tf/model/config.py's, each with why. Windows are the best (start, end)
pairs by P_start * P_end, without NMS (docs/paper.md, "Decoding"), at most as long as the
longest training moment (eval.max_span_from_train, below); R@5 always ranks five.
An epoch is one pass: ceil(queries / batch) steps per length band of 8 steps, so a few more
than queries / batch; train prints the number.

Validation: Charades-STA has no validation split. By default the best epoch is chosen on
one carved from the training videos (every 6th video with all its queries, as the demo
does), so the test split is never looked at before the end:
  python -m cimha_tf.prepare_data --dataset=charades_sta --annotations=DIR_WITH_TXT_AND_JSON \
      --features=I3D_DIR --output_dir=data/charades_sta_i3d --glove=glove.840B.300d.txt \
      --val_every=6
SELECT_ON_TEST below: VSLNet and 2D-TAN select the best epoch on the test split; to compare
with their numbers, --config.data.val_split=test (and prepare without --val_every, so the
full training split trains).
"""

from cimha_tf.experiment.config import experiment_config
from cimha_tf.model.config import paper_width

VAL_SPLIT = "val"        # carved from the training videos by prepare_data --val_every=6
SELECT_ON_TEST = "test"  # --config.data.val_split=test: select on test, as VSLNet / 2D-TAN


def get_config():
  c = experiment_config(
      data_dir="data/charades_sta_i3d",
      train_split="train", val_split=VAL_SPLIT, test_split="test",
      epochs=50,             # not given by the paper; >= 104 steps/epoch at batch 100
      batch_size=100,        # paper
      learning_rate=1e-4,    # paper (Adam)
      seed=0, top_k=5)       # windows per query in the predictions
  c.model.variant = "cimha"
  c.model.cross_fusion = "backprojection"
  c.model.max_video_len = 128   # paper
  c.model.max_query_len = 25    # paper
  paper_width(c.model)
  # Windows at most as long as the longest training moment (0.51 of its video here): the
  # paper's all-pairs argmax of P_start * P_end answered the whole video when the query
  # says little (video-blind: R1@0.5 0.4 -> 31.5; docs/learning.md, "Recipe"). Every pair,
  # the paper's decoding: --config.eval.max_span_from_train=False (max_span_fraction 1.0).
  c.eval.max_span_from_train = True
  return c

"""Charades-STA with I3D features (1024-d), the paper's settings (docs/paper.md, "Training details").

From the paper (docs/paper.md, "Training details"): Adam at 1e-4, batch 100, at most 128
video steps and 25 query words, GloVe 300-d (model.embedding_dim). The paper gives no
learning-rate schedule (the rate stays constant), no epoch count and no model sizes
(width, heads, dropout, FFN / LSTM / MLP widths, the segment loss weight lambda):
cimha_tf/model/config.py gives each default and why. Windows are the best (start, end)
pairs by P_start * P_end, without NMS (docs/paper.md, "Decoding"); R@5 always ranks five.
An epoch is one pass: ceil(queries / batch) steps per length band of 8 steps, so a few more
than queries / batch; train prints the number.

Prepare first:
  python -m cimha_tf.prepare_data --dataset=charades_sta --annotations=DIR_WITH_TXT_AND_JSON \
      --features=I3D_DIR --output_dir=data/charades_sta_i3d --glove=glove.840B.300d.txt
Charades-STA has no validation split; like VSLNet and 2D-TAN we select the best epoch on
the test split (val_split = "test"). Point val_split elsewhere if you carve one out.
"""

from cimha_tf.experiment.config import experiment_config


def get_config():
  c = experiment_config(
      data_dir="data/charades_sta_i3d",
      train_split="train", val_split="test", test_split="test",
      epochs=50,             # not given by the paper; >= 125 steps/epoch at batch 100
      batch_size=100,        # paper
      learning_rate=1e-4,    # paper (Adam)
      seed=0, top_k=5)       # windows per query in the predictions
  c.model.variant = "cimha"
  c.model.cross_fusion = "backprojection"
  c.model.max_video_len = 128   # paper
  c.model.max_query_len = 25    # paper
  return c

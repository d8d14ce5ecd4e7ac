"""ActivityNet Captions with C3D features (500-d), the paper's settings.

Papers disagree on which of val_1 / val_2 is "test" (docs/paper.md). The default follows
VSLNet, whose copy of the annotations we use and whose reported split sizes are
37,421 train / 17,031 test: test = val_2, and val_1 selects the best epoch.
Swap with --config.data.val_split=val_2 --config.data.test_split=val_1 (2D-TAN's reading).

From the paper (docs/paper.md, "Training details"): Adam at 1e-4, batch 100, at most 128
video steps and 25 query words, GloVe 300-d (model.embedding_dim). The paper gives no
learning-rate schedule (the rate stays constant), no epoch count and one model size,
"GloVe embedding 512", read as D = 512 (cimha_tf/model/config.py, paper_width: heads of 64,
FFN 1024, Bi-LSTMs 2 x 256); the rest (dropout, the segment loss weight lambda) is
cimha_tf/model/config.py's, each with why. Windows are the best (start, end)
pairs by P_start * P_end, without NMS (docs/paper.md, "Decoding"); R@5 always ranks five.

Prepare first:
  python -m cimha_tf.prepare_data --dataset=activitynet_captions --annotations=DIR_WITH_JSONS \
      --features=sub_activitynet_v1-3.c3d.hdf5 --output_dir=data/activitynet_captions_c3d \
      --glove=glove.840B.300d.txt
"""

from cimha_tf.experiment.config import experiment_config
from cimha_tf.model.config import paper_width


def get_config():
  c = experiment_config(
      data_dir="data/activitynet_captions_c3d",
      train_split="train", val_split="val_1", test_split="val_2",
      epochs=30,             # not given by the paper; >= 375 steps/epoch at batch 100
      batch_size=100,        # paper
      learning_rate=1e-4,    # paper (Adam)
      seed=0, top_k=5)       # windows per query in the predictions
  c.model.variant = "cimha"
  c.model.cross_fusion = "backprojection"
  c.model.max_video_len = 128   # paper
  c.model.max_query_len = 25    # paper
  paper_width(c.model)          # D = 512 (cimha_tf/model/config.py)
  return c

"""Charades-STA with I3D features (1024-d), the paper's settings (docs/paper.md, "Training details").

Prepare first:
  python -m cimha_tf.prepare_data --dataset=charades_sta --annotations=DIR_WITH_TXT_AND_JSON \
      --features=I3D_DIR --output_dir=data/charades_sta_i3d --glove=glove.840B.300d.txt
Charades-STA has no validation split; like VSLNet and 2D-TAN we select the best epoch on
the test split (val_split = "test"). Point val_split elsewhere if you carve one out.
"""

from cimha_tf.training.config import experiment_config


def get_config():
  c = experiment_config(
      data_dir="data/charades_sta_i3d",
      train_split="train", val_split="test", test_split="test",
      epochs=50,             # not given by the paper; ~124 steps/epoch at batch 100
      batch_size=100,        # paper
      learning_rate=1e-4,    # paper (Adam)
      seed=0, top_k=5)
  c.model.variant = "cimha"
  c.model.cross_fusion = "backprojection"
  c.model.max_video_len = 128   # paper
  c.model.max_query_len = 25    # paper
  return c

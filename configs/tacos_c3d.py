"""TACoS with C3D features (TALL's tall_c3d_features.hdf5, 4096-d; 2D-TAN's split:
train / val / test). Not in the paper's tables: every setting is the two reported
benchmarks' (configs/charades_sta_i3d.py says which come from the paper and which are
ours); epochs are ours, as there. TACoS videos are long (~5 min), so most are mean-pooled
into the 128 steps (prepare's "videos pooled" count).

Prepare first:
  python -m cimha_tf.prepare_data --dataset=tacos --annotations=DIR_WITH_JSONS \
      --features=tall_c3d_features.hdf5 --output_dir=data/tacos_c3d --glove=glove.840B.300d.txt
"""

from cimha_tf.experiment.config import experiment_config


def get_config():
  c = experiment_config(
      data_dir="data/tacos_c3d",
      train_split="train", val_split="val", test_split="test",
      epochs=50,             # ours; >= 98 steps/epoch at batch 100
      batch_size=100,        # as the paper's benchmarks
      learning_rate=1e-4,    # as the paper's benchmarks (Adam, constant)
      seed=0, top_k=5)
  c.model.variant = "cimha"
  c.model.cross_fusion = "backprojection"
  c.model.max_video_len = 128   # as the paper's benchmarks
  c.model.max_query_len = 25
  return c

"""Long videos pooled to 128 steps: 300-900 raw steps (2-7 per pooled step), so every
moment reaches the model mean-pooled and its boundaries fall inside pooled steps; the
oracle reads the same pooled steps (its ceiling includes what pooling loses)."""

from bench.learning import planted

SPECS = (planted.SetSpec(
    name="long_videos", slots=(planted.ACTIONS,), templates=planted.ACTION_TEMPLATES,
    steps=(300, 900), durations=(60.0, 180.0), events=(2, 3), window=(0.1, 0.25),
    train_videos=120, test_videos=40, feature_dim=32, signal=0.25, glove_dim=50,
    max_video_len=128, note="300-900 steps, pooled to 128"),)

"""Many actions per short video: 16-32 steps holding 5-7 events of 6-12% of the video
each (often one to three steps), so neighbouring moments nearly touch and a window that
spills one step over misses IoU 0.7."""

from bench.learning import planted

SPECS = (planted.SetSpec(
    name="many_actions", slots=(planted.ACTIONS,), templates=planted.ACTION_TEMPLATES,
    steps=(16, 32), durations=(8.0, 20.0), events=(5, 7), window=(0.06, 0.12),
    train_videos=120, test_videos=40, feature_dim=64, signal=0.5, glove_dim=50,
    note="5-7 events in 16-32 steps"),)

"""Very short moments: 2-6% of a 64-128-step video (2-7 steps), prepared at 128 steps so
nothing is pooled; a decoder that favours long spans or a loss dominated by the many
outside steps shows here first."""

from bench.learning import planted

SPECS = (planted.SetSpec(
    name="short_moments", slots=(planted.ACTIONS,), templates=planted.ACTION_TEMPLATES,
    steps=(64, 128), events=(2, 4), window=(0.02, 0.06), feature_dim=64, signal=0.5,
    glove_dim=50, max_video_len=128, note="moments of 2-6% of the video"),)

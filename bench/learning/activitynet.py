"""ActivityNet Captions' layout (train.json + val_1.json, one HDF5 file of
f[VID]["c3d_features"]) with three-word compositions ("a person throws the red box"): each
later event of a video shares one of verb / adjective / object with an earlier one, so all
three words are needed; long videos (200-600 steps) pooled to 128; no GloVe."""

from bench.learning import planted

SPECS = (planted.SetSpec(
    name="activitynet", layout="activitynet_captions",
    slots=(planted.VERBS, planted.ADJECTIVES, planted.OBJECTS),
    templates=("{subj} {0} the {1} {2}.", "{subj} {0} a {1} {2}.", "then {subj} {0} the {1} {2}."),
    steps=(200, 600), durations=(60.0, 180.0), events=(2, 3), window=(0.1, 0.3), share=True,
    train_videos=200, test_videos=60, feature_dim=48, signal=0.35, glove_dim=0,
    max_video_len=128, note="verb + adjective + object, shared words, pooled to 128"),)

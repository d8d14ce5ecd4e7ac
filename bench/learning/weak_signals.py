"""Weak signals: the same one-word-group action queries at three signal-to-noise levels.

`signal` is the per-dimension spread of an action's signal relative to noise 1.0, so a
step's projection onto the action's direction has SNR signal * sqrt(64): 2, 1 and 0.5.
Ranks how fast each model's accuracy falls as the evidence per step thins out; the oracle
falls too (it thresholds single steps), which is why results read as a fraction of it.
"""

import dataclasses

from bench.learning import planted

_BASE = planted.SetSpec(
    name="weak_signals", slots=(planted.ACTIONS,), templates=planted.ACTION_TEMPLATES,
    steps=(32, 64), events=(2, 3), window=(0.15, 0.3), feature_dim=64, glove_dim=50)

SPECS = tuple(dataclasses.replace(_BASE, name=f"weak_signals_snr{snr:g}", signal=snr / 8.0,
                                  note=f"per-step projection SNR {snr:g}")
              for snr in (2.0, 1.0, 0.5))

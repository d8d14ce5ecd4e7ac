"""cimha-tf: CI-MHA (Cross Interaction Network, SIGIR 2021) in TensorFlow / Keras 3."""

import os

# TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX-512/AMX-class
# features; they make the model's CPU training step much faster (docs/benchmarks.md).
# Read once, when TensorFlow is first imported, so it only takes effect if cimha_tf comes
# first; TF_ENABLE_ONEDNN_OPTS=0 in the environment keeps TensorFlow's default.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

"""Benchmarks (docs/benchmarks.md): one script per figure, JSON out, --quick for CI."""

import os

# Before any bench module imports TensorFlow (through keras too): TF reads these once.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as cimha_tf/__init__.py

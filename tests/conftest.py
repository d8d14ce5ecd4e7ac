"""Shared test fixtures. Real annotation files live in ../shared/data when present."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as cimha_tf/__init__.py

import pytest

from tests.helpers import REPO_PATH

SHARED_DATA = REPO_PATH.parent / "shared" / "data"


@pytest.fixture
def shared_data():
  """Path to ../shared/data; skips the test cleanly when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"real data folder {SHARED_DATA} not present")
  return SHARED_DATA

"""Annotation readers, one module per benchmark, all producing QueryRecords.

`read_dataset(dataset, path)` -> {split: (records, ReadReport)} in the file order; the
repairs and drop reasons every reader applies are in `repair.py`.
"""

import os
from typing import Dict, List, Tuple

from cimha_tf.data.annotations import activitynet_captions, charades_sta, jsonl, tacos
from cimha_tf.data.records import QueryRecord, ReadReport

DATASETS = ("charades_sta", "activitynet_captions", "tacos", "jsonl")

_READERS = {
    "charades_sta": charades_sta.read,
    "activitynet_captions": activitynet_captions.read,
    "tacos": tacos.read,
    "jsonl": jsonl.read,
}
_FOLDER_ONLY = ("charades_sta", "activitynet_captions", "tacos")


def read_dataset(dataset: str, path: str) -> Dict[str, Tuple[List[QueryRecord], ReadReport]]:
  """Reads every split of `dataset` found at `path` (see each reader for the layout)."""
  if dataset not in _READERS:
    raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
  if dataset in _FOLDER_ONLY and not os.path.isdir(path):
    raise FileNotFoundError(f"{dataset} annotations: {path} is not a folder")
  return _READERS[dataset](str(path))

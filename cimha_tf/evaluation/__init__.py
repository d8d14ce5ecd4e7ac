"""Scoring: R@k / mIoU, the QVHighlights protocol, prediction files and the standalone scorer."""

from cimha_tf.evaluation.metrics import moment_metrics, recall_at_1_curve, temporal_iou
from cimha_tf.evaluation.predictions import (read_ground_truth, read_jsonl, read_predictions,
                                             write_predictions)
from cimha_tf.evaluation.scorer import format_table, score_files, score_predictions

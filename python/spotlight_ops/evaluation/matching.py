r"""Instance matching and average precision, as in the cell-segmentation literature.

- IoU of ground-truth instance ``i`` and predicted instance ``j``:
  :math:`|G_i \cap P_j| / |G_i \cup P_j|`, from one contingency table of the two
  label images (any label values; 0 is background).
- Matching at threshold :math:`\tau`: one-to-one, by the Hungarian algorithm
  (``scipy.optimize.linear_sum_assignment``) on the weights
  :math:`w_{ij} = [\mathrm{IoU}_{ij} \ge \tau]\,(1 + \mathrm{IoU}_{ij}/(K+1))`, K the
  larger instance count: the IoU term is below 1 for any matching, so the number of
  pairs with IoU >= tau is maximised first and their total IoU second. (For
  :math:`\tau > 0.5` the pairs are unique anyway, since non-overlapping instances can
  exceed IoU 0.5 with at most one partner.)
- Counts: TP = matched pairs, FP = predicted instances unmatched, FN = ground-truth
  instances unmatched.
- :math:`AP_\tau = TP / (TP + FP + FN)` (Stringer et al. 2021, Schmidt et al. 2018:
  the "average precision" of instance segmentation, not the area under a PR curve);
  precision TP/(TP+FP), recall TP/(TP+FN), F1 = 2TP/(2TP+FP+FN). Any 0/0 is NaN
  (e.g. AP when both images are empty).
- Default thresholds: 0.50, 0.55, ..., 0.95; ``mean_ap`` averages AP over them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from skimage.segmentation import relabel_sequential

from ._validation import as_labels

IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2).tolist())


@dataclass(frozen=True)
class MatchResult:
    """Matching at one IoU threshold; ``true_labels``/``pred_labels`` are the paired labels."""

    threshold: float
    tp: int
    fp: int
    fn: int
    true_labels: np.ndarray = field(repr=False)
    pred_labels: np.ndarray = field(repr=False)
    ious: np.ndarray = field(repr=False)

    @property
    def ap(self) -> float:
        return _ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


def _ratio(numerator: int, denominator: int) -> float:
    return float(numerator) / denominator if denominator else float("nan")


def iou_matrix(true_labels: np.ndarray, pred_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every (ground truth, prediction) instance pair.

    Returns the ``[n_true, n_pred]`` IoU matrix and the original label values of its
    rows and columns.
    """
    true_labels = as_labels("true_labels", true_labels)
    pred_labels = as_labels("pred_labels", pred_labels)
    if true_labels.shape != pred_labels.shape:
        raise ValueError(
            f"true_labels and pred_labels must have the same shape, got {true_labels.shape} and {pred_labels.shape}"
        )
    true_seq, _, true_inverse = relabel_sequential(true_labels)
    pred_seq, _, pred_inverse = relabel_sequential(pred_labels)
    n_true, n_pred = int(true_seq.max()), int(pred_seq.max())
    table = np.bincount(
        true_seq.ravel() * (n_pred + 1) + pred_seq.ravel(), minlength=(n_true + 1) * (n_pred + 1)
    ).reshape(n_true + 1, n_pred + 1)
    sizes_true = table.sum(axis=1)[1:, None]
    sizes_pred = table.sum(axis=0)[None, 1:]
    overlap = table[1:, 1:]
    union = sizes_true + sizes_pred - overlap
    iou = overlap / np.maximum(union, 1)
    true_ids = np.asarray(true_inverse[np.arange(1, n_true + 1)], dtype=np.int64)
    pred_ids = np.asarray(pred_inverse[np.arange(1, n_pred + 1)], dtype=np.int64)
    return iou, true_ids, pred_ids


def match_at(iou: np.ndarray, threshold: float, true_ids: np.ndarray, pred_ids: np.ndarray) -> MatchResult:
    """One-to-one matching of an IoU matrix at ``threshold`` (see the module docstring)."""
    threshold = float(threshold)
    if not 0 < threshold <= 1:
        raise ValueError(f"IoU threshold must be in (0, 1], got {threshold}")
    n_true, n_pred = iou.shape
    if n_true == 0 or n_pred == 0:
        empty = np.zeros(0, dtype=np.int64)
        return MatchResult(threshold, 0, n_pred, n_true, empty, empty, np.zeros(0))
    eligible = iou >= threshold
    weights = np.where(eligible, 1.0 + iou / (max(n_true, n_pred) + 1.0), 0.0)
    rows, cols = linear_sum_assignment(weights, maximize=True)
    keep = eligible[rows, cols]
    rows, cols = rows[keep], cols[keep]
    tp = int(keep.sum())
    return MatchResult(threshold, tp, n_pred - tp, n_true - tp, true_ids[rows], pred_ids[cols], iou[rows, cols])


def match_instances(
    true_labels: np.ndarray, pred_labels: np.ndarray, thresholds=IOU_THRESHOLDS
) -> list[MatchResult]:
    """Matchings of two label images at each IoU threshold."""
    thresholds = [float(t) for t in np.atleast_1d(thresholds)]
    if not thresholds:
        raise ValueError("thresholds must hold at least one IoU threshold")
    iou, true_ids, pred_ids = iou_matrix(true_labels, pred_labels)
    return [match_at(iou, t, true_ids, pred_ids) for t in thresholds]


def average_precision(true_labels: np.ndarray, pred_labels: np.ndarray, thresholds=IOU_THRESHOLDS) -> dict:
    """AP, precision, recall, F1 and counts per threshold, and AP averaged over thresholds.

    Returns ``{"thresholds", "ap", "precision", "recall", "f1", "tp", "fp", "fn"}`` (lists
    aligned with ``thresholds``), ``"mean_ap"`` and the ``"matches"`` themselves.
    """
    matches = match_instances(true_labels, pred_labels, thresholds)
    ap = [m.ap for m in matches]
    return {
        "thresholds": [m.threshold for m in matches],
        "ap": ap,
        "precision": [m.precision for m in matches],
        "recall": [m.recall for m in matches],
        "f1": [m.f1 for m in matches],
        "tp": [m.tp for m in matches],
        "fp": [m.fp for m in matches],
        "fn": [m.fn for m in matches],
        "mean_ap": float(np.mean(ap)) if not np.all(np.isnan(ap)) else float("nan"),
        "matches": matches,
    }

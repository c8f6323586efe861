r"""The nuclei as the units a bootstrap resamples: each voxel belongs to its nearest reference nucleus.

A volume is cut into the cells of its reference nuclei (the ground-truth instances, or the
target's segmentation without masks): every voxel goes to the nearest voxel of a nucleus
(Euclidean distance in the segmentation's ``spacing``, ``scipy.ndimage.distance_transform_edt``),
so a cell is a nucleus with the background around it. A volume without reference nuclei is
one cell. Per cell, the sums behind the judged metrics are additive:

- squared errors :math:`(Y - P)^2` and voxel counts over the cell, and over the cell's part of
  the target foreground (PSNR and foreground PSNR, with the target's data range ``R``);
- per IoU threshold: TP or FN of the cell's reference nucleus (matched or not), and the FP of
  the unmatched predicted nuclei whose voxels lie mostly in the cell.

A volume made of any multiset of cells has the metrics of those sums; every cell once gives
exactly the row's ``psnr``, ``psnr_fg`` and ``mean_ap`` (:meth:`UnitSums.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential

JUDGED = ("psnr", "psnr_fg", "mean_ap")  # the metrics the pattern check judges, in this order


def nucleus_cells(instances: np.ndarray, spacing) -> tuple[np.ndarray, dict[int, int], int]:
    """Cell index of every voxel, the cell of each nucleus label, and the number of cells."""
    sequential, forward, _ = relabel_sequential(np.asarray(instances))
    count = int(sequential.max())
    if count == 0:
        return np.zeros(sequential.shape, dtype=np.int64), {}, 1
    nearest = ndi.distance_transform_edt(sequential == 0, sampling=spacing, return_distances=False,
                                         return_indices=True)
    cells = sequential[tuple(nearest)].astype(np.int64) - 1
    labels = np.unique(instances)
    return cells, {int(label): int(forward[label]) - 1 for label in labels[labels > 0]}, count


@dataclass(frozen=True)
class UnitSums:
    """Additive per-cell sums of one prediction of one volume (one row per cell)."""

    data_range: float
    pixels: np.ndarray  # (cells, 4): squared errors, voxels, foreground squared errors, foreground voxels
    tp: np.ndarray  # (cells, thresholds)
    fp: np.ndarray
    fn: np.ndarray

    @property
    def count(self) -> int:
        return self.pixels.shape[0]

    def metrics(self, weights: np.ndarray) -> np.ndarray:
        """``psnr``, ``psnr_fg``, ``mean_ap`` of volumes made of the cells ``weights`` times each.

        ``weights``: (k, cells) multiplicities; returns (k, 3).
        """
        pixels = weights @ self.pixels
        tp = weights @ self.tp
        with np.errstate(divide="ignore", invalid="ignore"):
            psnr = 10.0 * np.log10(self.data_range**2 * pixels[:, 1] / pixels[:, 0])
            psnr_fg = 10.0 * np.log10(self.data_range**2 * pixels[:, 3] / pixels[:, 2])
            ap = tp / (tp + weights @ self.fp + weights @ self.fn)
        psnr_fg[pixels[:, 3] == 0] = np.nan  # an empty foreground has no PSNR (as psnr() says)
        return np.stack([psnr, psnr_fg, ap.mean(axis=1)], axis=1)


def _cell_of_predictions(pred_labels: np.ndarray, cells: np.ndarray, count: int) -> dict[int, int]:
    """The cell holding most voxels of each predicted nucleus."""
    sequential, _, inverse = relabel_sequential(pred_labels)
    n_pred = int(sequential.max())
    table = np.bincount(sequential.ravel() * count + cells.ravel(), minlength=(n_pred + 1) * count)
    majority = table.reshape(n_pred + 1, count)[1:].argmax(axis=1)
    return {int(inverse[k + 1]): int(majority[k]) for k in range(n_pred)}


def unit_sums(cells: np.ndarray, cell_of_nucleus: dict[int, int], count: int, target: np.ndarray,
              prediction: np.ndarray, foreground: np.ndarray, data_range: float, pred_labels: np.ndarray,
              matches: list) -> UnitSums:
    """The per-cell sums of one prediction (``matches``: :func:`.matching.match_instances` of its nuclei)."""
    flat = cells.ravel()
    squared = ((target - prediction) ** 2).ravel()
    inside = foreground.ravel()
    pixels = np.stack([
        np.bincount(flat, weights=squared, minlength=count),
        np.bincount(flat, minlength=count).astype(np.float64),
        np.bincount(flat[inside], weights=squared[inside], minlength=count),
        np.bincount(flat[inside], minlength=count).astype(np.float64),
    ], axis=1)
    cell_of_prediction = _cell_of_predictions(pred_labels, cells, count)
    tp, fp, fn = (np.zeros((count, len(matches))) for _ in range(3))
    for k, match in enumerate(matches):
        matched_true = set(match.true_labels.tolist())
        matched_pred = set(match.pred_labels.tolist())
        for label, cell in cell_of_nucleus.items():
            (tp if label in matched_true else fn)[cell, k] += 1
        for label, cell in cell_of_prediction.items():
            if label not in matched_pred:
                fp[cell, k] += 1
    return UnitSums(float(data_range), pixels, tp, fp, fn)

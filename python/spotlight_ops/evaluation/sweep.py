r"""The threshold sweep of the paper's Figure 3: histograms and thresholded predictions.

A prediction trained with a pixel-wise loss fills the background with a low haze. The
sweep asks whether simply cutting that haze recovers what Spotlight gets from training:
the prediction, already on the target's scale (:mod:`.rescaling`), is thresholded at
intensities

.. math:: t_f = \min Y + f\,(\max Y - \min Y), \qquad f \in \texttt{fractions},

(fractions of the target's intensity range, so one threshold means the same intensity
for every model), setting every voxel below :math:`t_f` to the prediction's minimum
(which is :math:`\min Y` after min-max rescaling, i.e. background):

.. math:: P_f = \begin{cases} P & P \ge t_f \\ \min P & P < t_f \end{cases}

and every metric is computed again on :math:`P_f` without further rescaling.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._validation import as_image

DEFAULT_FRACTIONS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3)


def check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    """The sweep fractions as floats in [0, 1), sorted; an error names a bad one."""
    values = tuple(float(f) for f in fractions)
    for f in values:
        if not (np.isfinite(f) and 0 <= f < 1):
            raise ValueError(f"sweep fractions must be in [0, 1), got {f}")
    return tuple(sorted(set(values)))


def threshold_intensity(target: np.ndarray, fraction: float) -> float:
    """:math:`t_f = \\min Y + f (\\max Y - \\min Y)`."""
    target = as_image("target", target)
    return float(target.min() + fraction * (target.max() - target.min()))


def threshold_prediction(prediction: np.ndarray, intensity: float) -> np.ndarray:
    """:math:`P_f`: voxels below ``intensity`` set to the prediction's minimum."""
    prediction = as_image("prediction", prediction)
    return np.where(prediction >= intensity, prediction, prediction.min())


def intensity_histogram(volumes: Sequence[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """Voxel counts of all ``volumes`` pooled, in the bins ``edges`` (values outside are clipped in)."""
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges must be a strictly increasing 1D array of at least 2 values")
    counts = np.zeros(edges.size - 1, dtype=np.int64)
    for volume in volumes:
        clipped = np.clip(np.asarray(volume, dtype=np.float64).ravel(), edges[0], edges[-1])
        counts += np.histogram(clipped, bins=edges)[0]
    return counts

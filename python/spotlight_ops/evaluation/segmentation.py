r"""Nuclei instance segmentation in 3D: Otsu + distance-transform watershed.

The steps follow CellProfiler's 3D monolayer tutorial pipeline (rescale, enhance,
threshold, remove holes, watershed, measure), with CLAHE as the enhancement step.
Every parameter is in :class:`WatershedParams`:

0. optionally (``downsample=2``, the paper's "downsampled by half") the volume is reduced by
   linear interpolation to half size per axis, steps 1-6 run there with the spacing doubled,
   and the labels are brought back to the original grid by nearest-neighbour upsampling;
1. rescale the volume to [0, 1] (min-max);
2. CLAHE, ``skimage.exposure.equalize_adapthist`` in 3D (``clahe_kernel_size``: voxels, an
   int or one per axis, a float in (0, 1] for that fraction of each axis, or None for
   skimage's 1/8; ``clahe_clip_limit``), to even out bright and dim nuclei;
3. Gaussian smoothing of ``smoothing_sigma`` voxels of the original grid (0 = off);
4. Otsu threshold (``skimage.filters.threshold_otsu``, 256 bins) times
   ``threshold_correction`` (CellProfiler's correction factor); foreground = above it;
5. fill holes: ``scipy.ndimage.binary_fill_holes`` in 3D and in every XY plane (a
   nucleus cut open by the volume border is not closed in 3D);
6. watershed seeds: local maxima of the Euclidean distance transform (anisotropic
   ``spacing``), within a box of ``footprint`` physical units per axis, among points
   at least ``min_seed_distance`` deep; ``skimage.segmentation.watershed`` on the
   negated distance, restricted to the foreground;
7. remove nuclei touching the border: ``clear_border`` = ``"xy"`` (the four lateral
   faces, CellProfiler's default for monolayers whose nuclei are cut by the field of
   view but not by the top or bottom of the stack), ``"all"`` (all six faces) or ``"none"``.
   The evaluation applies the same rule to the ground-truth nuclei (:func:`clear_border_labels`),
   so that ground truth and predictions are treated alike;
8. size filter: keep nuclei of ``min_volume`` to ``max_volume`` voxels (of the original grid);
   relabel 1..n.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from skimage.exposure import equalize_adapthist
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import relabel_sequential, watershed

from ._validation import as_image, positive, spacing_for

CLEAR_BORDER_MODES = ("xy", "all", "none")
DOWNSAMPLE_FACTORS = (1, 2)


@dataclass(frozen=True)
class WatershedParams:
    """Parameters of :func:`segment_nuclei` (see the module docstring for each step)."""

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # voxel size (z, y, x)
    clahe: bool = True
    clahe_kernel_size: int | float | tuple[int, int, int] | None = None  # None: 1/8 of each axis (skimage)
    clahe_clip_limit: float = 0.01
    smoothing_sigma: float = 1.0
    threshold_correction: float = 1.0
    fill_holes: bool = True
    footprint: float = 9.0  # physical units per axis of the seed-finding box
    min_seed_distance: float = 2.0  # physical units; shallower maxima are not seeds
    clear_border: str = "xy"
    min_volume: int = 100  # voxels
    max_volume: int | None = None  # voxels
    downsample: int = 1  # 2: segment at half resolution, labels upsampled back

    def __post_init__(self) -> None:
        spacing_for("spacing", self.spacing, 3)
        positive("clahe_clip_limit", self.clahe_clip_limit)
        positive("smoothing_sigma", self.smoothing_sigma, allow_zero=True)
        positive("threshold_correction", self.threshold_correction)
        positive("footprint", self.footprint)
        positive("min_seed_distance", self.min_seed_distance, allow_zero=True)
        if self.clear_border not in CLEAR_BORDER_MODES:
            raise ValueError(f"clear_border must be one of {CLEAR_BORDER_MODES}, got {self.clear_border!r}")
        if int(self.min_volume) < 0:
            raise ValueError(f"min_volume must be >= 0, got {self.min_volume}")
        if self.max_volume is not None and int(self.max_volume) < int(self.min_volume):
            raise ValueError(f"max_volume ({self.max_volume}) must be >= min_volume ({self.min_volume})")
        if self.downsample not in DOWNSAMPLE_FACTORS:
            raise ValueError(f"downsample must be one of {DOWNSAMPLE_FACTORS}, got {self.downsample!r}")
        spacing = spacing_for("spacing", self.spacing, 3)
        object.__setattr__(self, "spacing", spacing)
        kernel = self.clahe_kernel_size
        if isinstance(kernel, float):
            if not 0 < kernel <= 1:
                raise ValueError(f"clahe_kernel_size as a fraction of each axis must be in (0, 1], got {kernel}")
        elif kernel is not None and not isinstance(kernel, int):
            kernel = tuple(int(k) for k in kernel)
            if len(kernel) != 3 or min(kernel) < 1:
                raise ValueError(f"clahe_kernel_size must be 3 positive integers (z, y, x), got {kernel}")
            object.__setattr__(self, "clahe_kernel_size", kernel)
        elif isinstance(kernel, int) and kernel < 1:
            raise ValueError(f"clahe_kernel_size must be positive, got {kernel}")

    def as_dict(self) -> dict:
        return asdict(self)


def downsampled(volume: np.ndarray, factor: int) -> np.ndarray:
    """Step 0: the volume at ``1/factor`` of its size per axis (linear interpolation; at least 1 voxel)."""
    if factor == 1:
        return volume
    shape = tuple(max(1, -(-n // factor)) for n in volume.shape)
    return ndimage.zoom(volume, [s / n for s, n in zip(shape, volume.shape)], order=1, mode="nearest", grid_mode=True)


def upsampled(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Step 0, back: labels on the original grid ``shape`` by nearest-neighbour upsampling."""
    if labels.shape == tuple(shape):
        return labels
    # grid_mode zooms pixel areas: voxel i of the output takes the label of the voxel it lies in
    return ndimage.zoom(labels, [n / s for n, s in zip(shape, labels.shape)], order=0, mode="nearest", grid_mode=True)


def enhance(volume: np.ndarray, params: WatershedParams) -> np.ndarray:
    """Steps 1-3: min-max rescale, CLAHE, Gaussian smoothing."""
    lo, hi = float(volume.min()), float(volume.max())
    image = (volume - lo) / (hi - lo) if hi > lo else np.zeros_like(volume)
    if params.clahe and hi > lo:
        kernel = params.clahe_kernel_size
        if isinstance(kernel, float):
            kernel = tuple(max(1, int(round(n * kernel))) for n in image.shape)
        image = equalize_adapthist(image, kernel_size=kernel, clip_limit=params.clahe_clip_limit)
    if params.smoothing_sigma > 0:  # sigma in voxels of the original grid
        image = ndimage.gaussian_filter(image, params.smoothing_sigma / params.downsample)
    return image


def foreground_mask(image: np.ndarray, params: WatershedParams) -> np.ndarray:
    """Steps 4-5: corrected Otsu threshold and hole filling."""
    if image.max() == image.min():
        return np.zeros(image.shape, dtype=bool)
    mask = image > threshold_otsu(image, nbins=256) * params.threshold_correction
    if params.fill_holes:
        mask = ndimage.binary_fill_holes(mask)
        for z in range(mask.shape[0]):
            mask[z] = ndimage.binary_fill_holes(mask[z])
    return mask


def seed_distance(mask: np.ndarray, params: WatershedParams) -> np.ndarray:
    """Step 6's Euclidean distance transform of ``mask`` (anisotropic spacing of the segmented grid)."""
    return ndimage.distance_transform_edt(mask, sampling=tuple(s * params.downsample for s in params.spacing))


def split_touching(mask: np.ndarray, params: WatershedParams, distance: np.ndarray | None = None) -> np.ndarray:
    """Step 6: seeded watershed of the distance transform inside ``mask`` (on the downsampled grid).

    ``distance``: :func:`seed_distance` of ``mask``, when already computed.
    """
    spacing = tuple(s * params.downsample for s in params.spacing)
    distance = seed_distance(mask, params) if distance is None else distance
    box = tuple(max(1, int(round(params.footprint / s)) // 2 * 2 + 1) for s in spacing)
    components, _ = ndimage.label(mask)
    peaks = peak_local_max(
        distance,
        footprint=np.ones(box, dtype=bool),
        labels=components,
        threshold_abs=params.min_seed_distance,
        exclude_border=False,
    )
    markers = np.zeros(mask.shape, dtype=np.int64)
    markers[tuple(peaks.T)] = 1
    # A flat ridge of the distance map gives several adjacent maxima: merge them into one seed.
    markers, _ = ndimage.label(ndimage.binary_dilation(markers, np.ones((3, 3, 3), bool)) & mask)
    return watershed(-distance, markers, mask=mask)


def border_labels(labels: np.ndarray, mode: str) -> set:
    """The instance ids touching the faces ``mode`` names: none, the YX faces ("xy") or all."""
    if mode == "none":
        return set()
    axes = range(labels.ndim) if mode == "all" else range(labels.ndim - 2, labels.ndim)
    touching = set()
    for axis in axes:
        for index in (0, labels.shape[axis] - 1):
            touching.update(np.unique(np.take(labels, index, axis=axis)).tolist())
    touching.discard(0)
    return touching


def clear_border_labels(labels: np.ndarray, mode: str) -> np.ndarray:
    """Step 7: zero the instances that touch the chosen faces of the volume."""
    if mode not in CLEAR_BORDER_MODES:
        raise ValueError(f"clear_border must be one of {CLEAR_BORDER_MODES}, got {mode!r}")
    touching = border_labels(labels, mode)
    if not touching:
        return labels
    out = labels.copy()
    out[np.isin(labels, list(touching))] = 0
    return out


def filter_sizes(labels: np.ndarray, min_volume: int, max_volume: int | None) -> np.ndarray:
    """Step 8: keep instances of ``min_volume..max_volume`` voxels, relabelled 1..n."""
    sizes = np.bincount(labels.ravel())
    keep = sizes >= int(min_volume)
    if max_volume is not None:
        keep &= sizes <= int(max_volume)
    keep[0] = False
    out = np.where(keep[labels], labels, 0)
    return relabel_sequential(out)[0]


def segment_nuclei(volume: np.ndarray, params: WatershedParams | None = None) -> np.ndarray:
    """Instance labels (int32, 0 = background) of the nuclei in a 3D ZYX ``volume``."""
    volume = as_image("volume", volume, ndim=(3,))
    params = WatershedParams() if params is None else params
    if not isinstance(params, WatershedParams):
        raise TypeError(f"params must be a WatershedParams, got {type(params).__name__}")
    mask = foreground_mask(enhance(downsampled(volume, params.downsample), params), params)
    if not mask.any():
        return np.zeros(volume.shape, dtype=np.int32)
    labels = upsampled(split_touching(mask, params), volume.shape)
    return finish_labels(labels, params)


def finish_labels(labels: np.ndarray, params: WatershedParams) -> np.ndarray:
    """Steps 7-8 on labels of the original grid: border rule, size filter, int32 labels 1..n."""
    labels = clear_border_labels(labels, params.clear_border)
    return filter_sizes(labels, params.min_volume, params.max_volume).astype(np.int32)

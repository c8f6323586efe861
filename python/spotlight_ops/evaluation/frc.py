r"""Single-image Fourier ring correlation (FRC) resolution of XY planes.

Koho et al. (2019)'s one-image FRC, as used here:

1. Checkerboard split: each XY plane (cropped to even height and width) gives two half
   images :math:`A = I[0::2, 0::2]` and :math:`B = I[1::2, 1::2]`, each sampled every
   2 original pixels, sharing the signal but not the (pixel-independent) noise.
2. Each half image has its mean subtracted and is multiplied by a 2D Hamming window
   (outer product of ``numpy.hamming``) against edge leakage; ``window=None`` skips both.
3. Rings: with :math:`n = \min(h, w)` of the half images and spatial frequencies
   :math:`f_y, f_x` in cycles per half-image pixel (``numpy.fft.fftfreq``), a Fourier
   pixel lies at index radius :math:`r = n\sqrt{f_y^2 + f_x^2}`; ring ``k`` holds
   :math:`k\,\delta \le r < \min((k+1)\,\delta, n/2)` (:math:`\delta` = ``bin_delta``,
   default 5) up to the Nyquist radius :math:`n/2`: the last ring is partial when
   :math:`\delta` does not divide :math:`n/2` (kept, so that small planes are measured up
   to Nyquist). A ring's frequency is the centre of its radial extent,
   :math:`(k\delta + \min((k+1)\delta, n/2)) / (2n)` cycles per half-image pixel.
4. :math:`\mathrm{FRC}_k = \mathrm{Re}\sum_k F_A \overline{F_B} /
   \sqrt{\sum_k |F_A|^2 \sum_k |F_B|^2}`; for a volume the three sums are pooled over
   all planes (planes with more signal weigh more), giving one curve per volume.
5. Threshold: ``"one-seventh"`` (the fixed 1/7) or ``"half-bit"``,
   :math:`T_k = (0.2071 + 1.9102/\sqrt{N_k}) / (1.2071 + 0.9102/\sqrt{N_k})` with
   :math:`N_k` the Fourier pixels of ring ``k`` over all pooled planes.
6. The crossing is the first ring ``k >= 1`` with :math:`\mathrm{FRC}_k < T_k`, located
   by linear interpolation of :math:`\mathrm{FRC} - T` between rings ``k-1`` and ``k``,
   at :math:`f_c` cycles per half-image pixel. Resolution = :math:`2/f_c` original
   pixels (a half-image pixel is 2 original pixels) times ``pixel_size``.

No crossing: ``resolution`` is NaN, ``crossed`` False and ``message`` says why: the curve
stays above threshold up to its last ring (the message gives that ring's centre in pixels:
the resolution is finer than that, and nothing finer can be measured on these planes; the
half images' Nyquist limit is 4 pixels), or it starts below threshold (no correlated signal). Koho's
empirical calibration of the diagonal half-pixel shift between ``A`` and ``B`` is not
applied, so values are comparable between models but slightly pessimistic in absolute terms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._validation import as_image, positive

FRC_THRESHOLDS = ("one-seventh", "half-bit")


@dataclass(frozen=True)
class FRCResult:
    """An FRC curve and the resolution where it crosses its threshold."""

    frequencies: np.ndarray = field(repr=False)  # ring centres, cycles per original pixel
    correlation: np.ndarray = field(repr=False)
    threshold: np.ndarray = field(repr=False)
    resolution: float  # in original pixels times pixel_size; NaN when not crossed
    crossing_frequency: float  # cycles per original pixel; NaN when not crossed
    crossed: bool
    message: str


def checkerboard_split(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two diagonal half images ``I[0::2, 0::2]`` and ``I[1::2, 1::2]`` of a 2D plane."""
    plane = np.asarray(plane)
    if plane.ndim != 2:
        raise ValueError(f"plane must be 2D, got shape {plane.shape}")
    h, w = plane.shape[0] // 2 * 2, plane.shape[1] // 2 * 2
    return plane[0:h:2, 0:w:2], plane[1:h:2, 1:w:2]


def _ring_index(shape: tuple[int, int], bin_delta: int) -> tuple[np.ndarray, int, int]:
    """Ring number of every Fourier pixel (-1 beyond Nyquist), ring count, and ``n``."""
    n = min(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    radius = n * np.sqrt(fy**2 + fx**2)
    rings = _rings(n, bin_delta)
    index = np.floor(radius / bin_delta).astype(np.int64)
    index[radius >= n / 2] = -1
    return index, rings, n


def _rings(n: int, bin_delta: int) -> int:
    """Rings of ``bin_delta`` (the last one possibly partial) from radius 0 to Nyquist ``n/2``."""
    return int(np.ceil((n / 2) / bin_delta)) if n >= 2 else 0


def ring_count(plane_shape: tuple[int, ...], bin_delta: int) -> int:
    """How many FRC rings of ``bin_delta`` (the last one possibly partial) fit a ``(..., Y, X)`` plane."""
    return _rings(min(plane_shape[-2] // 2, plane_shape[-1] // 2), int(bin_delta))


def half_bit_threshold(pixels_per_ring: np.ndarray) -> np.ndarray:
    """Van Heel & Schatz's half-bit curve for rings of ``pixels_per_ring`` Fourier pixels."""
    root = np.sqrt(np.maximum(np.asarray(pixels_per_ring, dtype=np.float64), 1.0))
    return (0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root)


def frc_resolution(
    image: np.ndarray,
    bin_delta: int = 5,
    threshold: str = "one-seventh",
    pixel_size: float = 1.0,
    window: str | None = "hamming",
) -> FRCResult:
    """One-image FRC resolution of a 2D image or of a 3D volume's XY planes (pooled)."""
    image = as_image("image", image)
    if isinstance(bin_delta, bool) or int(bin_delta) != bin_delta or int(bin_delta) < 1:
        raise ValueError(f"bin_delta must be a positive integer, got {bin_delta}")
    bin_delta = int(bin_delta)
    if threshold not in FRC_THRESHOLDS:
        raise ValueError(f"threshold must be one of {FRC_THRESHOLDS}, got {threshold!r}")
    pixel_size = positive("pixel_size", pixel_size)
    if window not in ("hamming", None):
        raise ValueError(f"window must be 'hamming' or None, got {window!r}")
    planes = image[None] if image.ndim == 2 else image
    half_shape = (planes.shape[1] // 2, planes.shape[2] // 2)
    index, rings, n = _ring_index(half_shape, bin_delta)
    if rings < 2:
        raise ValueError(
            f"XY planes of shape {planes.shape[1:]} give fewer than 2 rings of bin_delta={bin_delta}; "
            "use larger planes or a smaller bin_delta"
        )
    taper = np.outer(np.hamming(half_shape[0]), np.hamming(half_shape[1])) if window else None
    valid = index >= 0
    cross = np.zeros(rings)
    power_a = np.zeros(rings)
    power_b = np.zeros(rings)
    for plane in planes:
        a, b = checkerboard_split(plane)
        if taper is not None:
            a = (a - a.mean()) * taper
            b = (b - b.mean()) * taper
        fa, fb = np.fft.fft2(a)[valid], np.fft.fft2(b)[valid]
        ring = index[valid]
        cross += np.bincount(ring, (fa * np.conj(fb)).real, rings)
        power_a += np.bincount(ring, np.abs(fa) ** 2, rings)
        power_b += np.bincount(ring, np.abs(fb) ** 2, rings)
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = cross / np.sqrt(power_a * power_b)
    correlation = np.nan_to_num(correlation, nan=0.0)  # an all-zero ring correlates nothing
    pixels = np.bincount(index[valid], minlength=rings) * planes.shape[0]
    curve = half_bit_threshold(pixels) if threshold == "half-bit" else np.full(rings, 1.0 / 7.0)
    inner = np.arange(rings) * bin_delta
    outer = np.minimum(inner + bin_delta, n / 2)
    frequencies_half = (inner + outer) / (2.0 * n)  # ring centres, cycles per half-image pixel
    frequencies = frequencies_half / 2.0  # cycles per original pixel
    return _crossing(frequencies, correlation, curve, pixel_size)


def _crossing(frequencies: np.ndarray, correlation: np.ndarray, curve: np.ndarray, pixel_size: float) -> FRCResult:
    margin = correlation - curve
    if margin[0] < 0:
        return FRCResult(frequencies, correlation, curve, float("nan"), float("nan"), False,
                         "FRC starts below the threshold: the two half images share no signal")
    below = np.nonzero(margin[1:] < 0)[0]
    if below.size == 0:
        finest = pixel_size / frequencies[-1]
        unit = "px" if pixel_size == 1 else "(pixel_size units)"
        return FRCResult(frequencies, correlation, curve, float("nan"), float("nan"), False,
                         f"FRC stays above the threshold up to its last ring (centred at {finest:.3g} {unit}, "
                         "next to the half images' Nyquist limit): resolution finer than that, not measurable "
                         "on these planes")
    k = int(below[0]) + 1
    fraction = margin[k - 1] / (margin[k - 1] - margin[k])
    crossing = frequencies[k - 1] + fraction * (frequencies[k] - frequencies[k - 1])
    return FRCResult(frequencies, correlation, curve, float(pixel_size / crossing), float(crossing), True, "crossed")

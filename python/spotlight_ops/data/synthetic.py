r"""Seeded synthetic 3D scenes of nuclei for tests and the demo (numpy + scipy.ndimage only).

A scene is a field of non-overlapping ellipsoidal nuclei (random radii, flattening,
in-plane orientation, brightness and chromatin texture) inside larger cells, plus small
vesicles that are visible in transmitted light but not stained. From it come:

* ``labels``: uint16 ground-truth instance mask (0 background, 1..n nuclei);
* ``target``: Hoechst-like fluorescence in camera counts, modelled on real widefield or
  spinning-disk stacks. With ``D`` the dye density (per-nucleus brightness, uneven over
  ``brightness_range``, times a chromatin texture), ``C`` the cytoplasm (a shell of
  ``cell_margin`` voxels around each nucleus), ``G_s`` a Gaussian blur of per-axis sigmas ``s``::

      I = background + G_psf(D + cytoplasm_glow * C) + haze * G_haze(D)     (relative intensity)
      target = camera_offset + Poisson(photons * I) + read_noise * n         (counts, n ~ N(0, 1))

  ``psf`` is about three times longer in z than in xy (the axially elongated point-spread
  function: a halo above and below each nucleus), ``G_haze`` is a wide, axially elongated
  out-of-focus glow of the dye itself, so it grows with the local nuclear density (crowded
  regions sit on a brighter haze), the noise is Poisson shot noise of ``photons`` per unit of
  intensity plus Gaussian read noise, and the cytoplasm's unspecific stain is a dim glow
  around each nucleus that sits just under Otsu's threshold (about T - 0.5 std after Otsu
  standardization), as the haze of real Hoechst volumes does;
* ``signal``: a brightfield-like z-stack of the refractive-index map ``R`` (nuclei, cytoplasm,
  vesicles): defocus phase contrast ``-LoG(R)`` plus an axial asymmetry ``dR/dz``, weak
  absorption, a smooth illumination gradient and noise.

The cytoplasm is visible in the signal, so its glow is predictable: an MSE-trained network learns
to reproduce it (and averages the noise), while Spotlight's soft Dice pushes everything under T
down to the soft mask's floor, T - std.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import scipy.ndimage as ndi

from .io import write_volume
from .manifest import ManifestRow, write_manifest


@dataclass(frozen=True)
class SceneConfig:
    """Parameters of a synthetic scene; voxel units, sigmas ordered (z, y, x)."""

    shape: tuple = (32, 64, 64)
    nuclei_density: float = 1.6e-4     # nuclei per voxel: about 10-20 % nuclear volume
    radius_range: tuple = (4.0, 8.0)   # in-plane semi-axes
    flattening_range: tuple = (0.6, 0.9)  # z semi-axis / in-plane semi-axis
    brightness_range: tuple = (0.5, 1.0)  # uneven nuclear brightness (uniform per nucleus)
    texture_strength: float = 0.25
    psf_sigma: tuple = (2.0, 0.7, 0.7)  # axially elongated PSF
    haze_sigma: tuple = (9.0, 5.0, 5.0)  # out-of-focus glow of the dye, elongated in z
    haze: float = 0.3
    background: float = 0.08
    cytoplasm_glow: float = 0.22       # unspecific stain of the cytoplasm: dim, and visible in brightfield
    photons: float = 150.0             # detected photons per unit of relative intensity (shot noise)
    read_noise: float = 2.0            # camera read noise, counts (Gaussian)
    camera_offset: float = 100.0       # camera counts at zero light
    cell_margin: float = 4.0           # cytoplasm thickness around nuclei
    clearance: int = 3                 # voxels between nuclei (at least 1)
    vesicle_density: float = 3e-5
    signal_noise_std: float = 0.05

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(s) != s or s < 8 for s in self.shape):
            raise ValueError(f"shape must be three integers >= 8 (z, y, x), got {self.shape!r}")
        for name in ("radius_range", "flattening_range", "brightness_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {(lo, hi)!r}")
        for name in ("nuclei_density", "texture_strength", "haze", "background", "cytoplasm_glow", "read_noise",
                     "camera_offset", "cell_margin", "vesicle_density", "signal_noise_std"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if int(self.clearance) != self.clearance or self.clearance < 1:
            raise ValueError(f"clearance must be an integer >= 1, got {self.clearance!r}")
        if not self.photons > 0:
            raise ValueError(f"photons must be > 0, got {self.photons!r}")


@dataclass
class Scene:
    """One synthetic scene: float32 ``signal`` and ``target``, uint16 ``labels``, all ``(Z, Y, X)``."""

    signal: np.ndarray
    target: np.ndarray
    labels: np.ndarray
    density: np.ndarray


def _place_nuclei(config: SceneConfig, rng: np.random.Generator) -> tuple:
    """Paints non-overlapping rotated ellipsoids; returns (labels, per-label brightness)."""
    shape = tuple(int(s) for s in config.shape)
    labels = np.zeros(shape, np.uint16)
    wanted = max(1, int(round(config.nuclei_density * np.prod(shape))))
    brightness = [0.0]
    for _ in range(wanted * 20):
        if len(brightness) - 1 >= wanted:
            break
        r_xy = rng.uniform(*config.radius_range)
        radii = np.array([r_xy * rng.uniform(*config.flattening_range), r_xy, r_xy * rng.uniform(0.75, 1.0)])
        centre = np.array([rng.uniform(0, s) for s in shape])
        angle = rng.uniform(0, np.pi)
        extent = np.ceil(radii.max()) + 1 + config.clearance
        lo = np.maximum(np.floor(centre - extent), 0).astype(int)
        hi = np.minimum(np.ceil(centre + extent), shape).astype(int)
        if np.any(hi <= lo):
            continue
        z, y, x = np.meshgrid(*[np.arange(a, b) + 0.5 - c for a, b, c in zip(lo, hi, centre)], indexing="ij")
        yr = np.cos(angle) * y - np.sin(angle) * x
        xr = np.sin(angle) * y + np.cos(angle) * x
        inside = (z / radii[0]) ** 2 + (yr / radii[1]) ** 2 + (xr / radii[2]) ** 2 <= 1.0
        if not inside.any():
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        # a few voxels of clearance from other nuclei (the cytoplasm between them) keeps instances
        # separable after the blur, as in real cell layers
        if np.any(labels[box][ndi.binary_dilation(inside, iterations=config.clearance)]):
            continue
        labels[box][inside] = len(brightness)
        brightness.append(rng.uniform(*config.brightness_range))
    return labels, np.asarray(brightness, np.float32)


def _smooth_noise(shape: tuple, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean unit-std smooth random field."""
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (field - field.mean()) / (field.std() + 1e-12)


def make_scene(seed: int, config: Optional[SceneConfig] = None) -> Scene:
    """The synthetic scene of ``seed`` (the same seed gives the same scene on any machine)."""
    config = config or SceneConfig()
    rng = np.random.default_rng(int(seed))
    shape = tuple(int(s) for s in config.shape)
    labels, brightness = _place_nuclei(config, rng)
    nuclei = labels > 0
    texture = np.clip(1.0 + config.texture_strength * _smooth_noise(shape, 1.2, rng), 0.2, None)
    density = np.where(nuclei, brightness[labels] * texture, 0.0).astype(np.float32)

    cytoplasm = (ndi.distance_transform_edt(~nuclei) <= config.cell_margin) & ~nuclei if nuclei.any() \
        else np.zeros(shape, bool)
    stain = density + config.cytoplasm_glow * cytoplasm
    intensity = (config.background + ndi.gaussian_filter(stain, config.psf_sigma)
                 + config.haze * ndi.gaussian_filter(density, config.haze_sigma))
    photons = rng.poisson(config.photons * np.maximum(intensity, 0.0))
    target = (config.camera_offset + photons + config.read_noise * rng.standard_normal(shape)).astype(np.float32)

    vesicles = np.zeros(shape, np.float32)
    n_vesicles = int(round(config.vesicle_density * np.prod(shape)))
    if n_vesicles:
        points = tuple(rng.integers(0, s, n_vesicles) for s in shape)
        vesicles[points] = 1.0
        vesicles = np.clip(ndi.gaussian_filter(vesicles, 1.0) * 15.0, 0, 1)
    # refractive-index contrast: nuclei a little denser when brighter (so intensity is partly predictable)
    refractive = (np.where(nuclei, 0.7 + 0.3 * brightness[labels] / config.brightness_range[1], 0.0)
                  + 0.35 * cytoplasm + 0.5 * vesicles).astype(np.float32)
    blurred = ndi.gaussian_filter(refractive, (1.5, 1.0, 1.0))
    phase = -ndi.gaussian_laplace(refractive, (1.5, 1.0, 1.0)) + 0.5 * np.gradient(blurred, axis=0)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    illumination = 1.0 + 0.1 * (rng.uniform(-1, 1) * yy + rng.uniform(-1, 1) * xx)
    signal = (illumination * (1.0 + 2.0 * phase - 0.1 * blurred)
              + config.signal_noise_std * rng.standard_normal(shape)).astype(np.float32)
    return Scene(signal=signal, target=target, labels=labels, density=density)


def write_dataset(out_dir: Union[str, Path], n_train: int = 6, n_test: int = 2, config: Optional[SceneConfig] = None,
                  seed: int = 0, voxel_size: Sequence[float] = (0.29, 0.29, 0.29)) -> dict:
    """Writes ``n_train + n_test`` scenes as TIFFs plus ``train.csv`` and ``test.csv`` manifests.

    Layout: ``out_dir/images/scene_XXX_{signal,target,mask}.tif``; the manifests use paths
    relative to ``out_dir`` with columns ``path_signal,path_target,path_mask``.
    Returns ``{"train": Path, "test": Path, "config": dict}``.
    """
    if int(n_train) != n_train or n_train < 0 or int(n_test) != n_test or n_test < 0 or n_train + n_test < 1:
        raise ValueError(f"n_train and n_test must be non-negative integers with a positive sum, "
                         f"got {n_train!r}, {n_test!r}")
    config = config or SceneConfig()
    out_dir = Path(out_dir)
    images = out_dir / "images"
    rows = []
    for index in range(n_train + n_test):
        scene = make_scene(seed * 100_003 + index, config)
        stem = images / f"scene_{index:03d}"
        paths = ManifestRow(Path(f"{stem}_signal.tif"), Path(f"{stem}_target.tif"), Path(f"{stem}_mask.tif"))
        write_volume(paths.signal, scene.signal, voxel_size=voxel_size)
        write_volume(paths.target, scene.target, voxel_size=voxel_size)
        write_volume(paths.mask, scene.labels, voxel_size=voxel_size)
        rows.append(paths)
    result = {"config": asdict(config)}
    for split, split_rows in (("train", rows[:n_train]), ("test", rows[n_train:])):
        if split_rows:
            result[split] = write_manifest(out_dir / f"{split}.csv", split_rows)
    return result

"""Otsu at the float32 and float64 extremes: a sample spanning more than the
dtype's largest finite value (hi - lo overflows: float64 [-1e308, 1e308]) gets a
finite threshold, the threshold of the halved data doubled (the bits of
unbounded arithmetic), in the bin scikit-image picks on the data scaled by
2^-600; otsu_standardize and the fused loss use the same threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.filters import threshold_otsu

import spotlight_ops as so

from conftest import DEVICES

EXTREMES = [(torch.float64, 1e308), (torch.float64, torch.finfo(torch.float64).max),
            (torch.float32, 3e38), (torch.float32, torch.finfo(torch.float32).max)]
SCALE = 2.0 ** -600  # exact in float64 for these magnitudes; no overflow in skimage's criterion


def spanning(dtype: torch.dtype, m: float, samples: int = 3, voxels: int = 20001) -> torch.Tensor:
    """Uniform in [-m, m] with both ends present; a bright cluster at m / 2 in sample 1."""
    u = np.random.default_rng(0).uniform(-1.0, 1.0, (samples, voxels))
    u[1, : voxels // 4] = 0.5 + 0.01 * u[1, : voxels // 4]
    u[:, 0], u[:, 1] = -1.0, 1.0
    return torch.from_numpy(u * m).to(dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, m", EXTREMES)
def test_threshold_finite_and_in_skimages_bin(device, dtype, m):
    x = spanning(dtype, m).to(device)
    got = so.otsu_threshold(x).cpu()
    assert torch.isfinite(got).all(), got
    # The halved data (an exact halving) gives half the threshold, bit for bit.
    torch.testing.assert_close(got, 2 * so.otsu_threshold(x / 2).cpu(), rtol=0, atol=0)
    x64 = x.cpu().double().numpy()
    want = np.array([threshold_otsu(v * SCALE, nbins=256) / SCALE for v in x64])
    width = (x64.max(axis=1) * SCALE - x64.min(axis=1) * SCALE) / 256 / SCALE
    assert np.all(np.abs(got.double().numpy() - want) <= width * 1e-9 + np.abs(want) * 1e-12), (got, want)
    if device == "cuda":  # the CPU kernel's bits
        torch.testing.assert_close(got, so.otsu_threshold(x.cpu()), rtol=0, atol=0)


@pytest.mark.parametrize("dtype, m", EXTREMES)
def test_standardize_and_loss_share_the_finite_threshold(dtype, m):
    x = spanning(dtype, m)
    t = so.otsu_threshold(x)
    y = so.otsu_standardize(x)
    assert torch.isfinite(y).all()
    # the voxels above T are the positive outputs
    above = x.double() > t.double()[:, None]
    assert torch.equal(y > 0, above)
    # pred == target: no squared error to overflow; the fused loss's own Otsu
    # thresholds give the loss of the thresholds given explicitly.
    for reduction in ("none", "batch"):
        fused = so.loss(x, x.clone(), reduction=reduction)
        given = so.loss(x, x.clone(), threshold=t, reduction=reduction)
        assert torch.isfinite(fused).all()
        torch.testing.assert_close(fused, given, rtol=0, atol=0)

"""spotlight.otsu_threshold against the float64 reference and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from skimage.filters import threshold_otsu

import spotlight_ops as so
from helpers import DTYPES, as_numpy64, bin_width, nuclei_like

from conftest import DEVICES


def skimage_thresholds(x: torch.Tensor, bins: int = 256) -> torch.Tensor:
    return torch.tensor([threshold_otsu(v, nbins=bins) for v in as_numpy64(x.reshape(x.shape[0], -1))],
                        dtype=torch.float64)


@pytest.mark.parametrize("device", DEVICES)
def test_random_float64_matches_reference_and_skimage_exactly(device):
    x = torch.rand(5, 3, 40, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) ** 2
    got = so.otsu_threshold(x.to(device)).cpu()
    torch.testing.assert_close(got, so.reference.otsu_threshold(x), rtol=0, atol=0)
    # scikit-image bins through np.histogram's edges: same bin on random data.
    torch.testing.assert_close(got, skimage_thresholds(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bins", [2, 17, 256, 1000])
def test_structured_within_one_bin_of_skimage(dtype, bins):
    x = nuclei_like(4, seed=3, dtype=dtype)
    got = so.otsu_threshold(x, bins)
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32) and got.shape == (4,)
    # skimage on the same (rounded) values; the bin of a value on an edge may
    # differ by one after float rounding, never more.
    diff = (got.double() - skimage_thresholds(x, bins)).abs()
    width = bin_width(x, bins)
    tol = width * 1.001 + (got.double().abs() * (2e-3 if dtype in (torch.float16, torch.bfloat16) else 1e-6))
    assert torch.all(diff <= tol), (diff, width)


def test_most_samples_land_in_the_same_bin_as_skimage():
    x = nuclei_like(16, seed=5, dtype=torch.float32)
    got = so.otsu_threshold(x).double()
    same = (got - skimage_thresholds(x)).abs() <= 1e-5 * got.abs().clamp_min(1)
    assert same.float().mean() >= 0.9


def test_constant_tiny_and_nonfinite_samples():
    x = torch.tensor([[3.0, 3.0, 3.0], [1.0, 2.0, 9.0], [0.0, float("nan"), 1.0], [0.0, float("inf"), 1.0]])
    got = so.otsu_threshold(x)
    assert got[0] == 3.0
    assert torch.isfinite(got[1])
    assert torch.isnan(got[2]) and torch.isnan(got[3])
    one = torch.tensor([[7.5]])
    assert so.otsu_threshold(one).item() == 7.5


def test_non_contiguous_input_is_read_correctly():
    base = nuclei_like(3, seed=7).squeeze(1)  # [3, 8, 24, 24]
    strided = base.transpose(1, 3)  # same samples, other memory order
    assert not strided.is_contiguous()
    torch.testing.assert_close(so.otsu_threshold(strided), so.otsu_threshold(strided.contiguous()))
    sliced = base[::2]
    torch.testing.assert_close(so.otsu_threshold(sliced), so.otsu_threshold(sliced.contiguous()))


def test_large_sample_many_chunks():
    x = torch.rand(1, 64, 128, 128, generator=torch.Generator().manual_seed(1)) ** 3  # 1M voxels
    got = so.otsu_threshold(x).double()
    assert (got - skimage_thresholds(x)).abs().item() <= bin_width(x).item() * 1.001


def test_result_never_requires_grad():
    x = torch.rand(2, 10, requires_grad=True)
    assert not so.otsu_threshold(x).requires_grad


def test_real_nuclei_volumes(shared_data):
    for name in ("raw_8_cell_stage.tif", "raw_16_cell_stage.tif"):
        vol = tifffile.imread(shared_data / "qcanet" / name).astype(np.float32)
        x = torch.from_numpy(vol)[None]
        got = so.otsu_threshold(x).double().item()
        expected = threshold_otsu(vol.astype(np.float64), nbins=256)
        assert abs(got - expected) <= (vol.max() - vol.min()) / 256 * 1.001
        assert abs(got - so.reference.otsu_threshold(x.double()).item()) <= (vol.max() - vol.min()) / 256 * 1.001
    nuc = tifffile.imread(shared_data / "fnet_sample" / "nuc.tif").astype(np.float32)
    got = so.otsu_threshold(torch.from_numpy(nuc)[None]).item()
    assert abs(got - threshold_otsu(nuc.astype(np.float64))) <= (nuc.max() - nuc.min()) / 256 * 1.001

"""spotlight.loss (the fused op) against the float64 reference: values,
gradients, reductions, thresholds, dtypes, layouts and non-finite input."""

from __future__ import annotations

import pytest
import torch

import spotlight_ops as so
from conftest import DEVICES
from helpers import DTYPES, LOSS_RTOL, nuclei_like, pred_like

REDUCTIONS = ["batch", "mean", "none"]
NORMS = ["foreground", "all"]


def reference(pred, target, threshold=None, **kw):
    """The reference on the op's own thresholds when none is given: Otsu is
    tested on its own, and a value on a bin edge must not move the mask here."""
    if threshold is None:
        threshold = so.otsu_threshold(target).double()
    return so.reference.loss(pred.double(), target.double(), threshold, **kw)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("norm", NORMS)
def test_matches_reference(device, dtype, reduction, norm):
    y = nuclei_like(3, seed=11, dtype=dtype)
    p = pred_like(y, seed=12)
    got = so.loss(p.to(device), y.to(device), reduction=reduction, mse_normalization=norm).cpu()
    expected = reference(p, y, reduction=reduction, mse_normalization=norm)
    assert got.dtype == dtype
    assert got.shape == ((3,) if reduction == "none" else ())
    torch.testing.assert_close(got.double(), expected, rtol=LOSS_RTOL[dtype], atol=1e-7)


def test_float32_within_1e5_relative_of_independent_reference():
    """End to end: reference computes its own Otsu thresholds in float64."""
    y = torch.rand(4, 1, 16, 32, 32, generator=torch.Generator().manual_seed(2)) ** 4
    p = torch.rand(4, 1, 16, 32, 32, generator=torch.Generator().manual_seed(3))
    got = so.loss(p, y)
    expected = so.reference.loss(p.double(), y.double())
    assert abs(got.item() - expected.item()) <= 1e-5 * abs(expected.item())


@pytest.mark.parametrize("threshold", [0.25, torch.tensor(0.25), torch.tensor([0.1, 0.2, 0.3])])
def test_given_thresholds(threshold):
    y = torch.rand(3, 2, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    p = torch.rand(3, 2, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    got = so.loss(p, y, threshold, reduction="none")
    expected = so.reference.loss(p, y, threshold, reduction="none")
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)


def test_module_matches_functional_and_overrides_threshold():
    y = nuclei_like(2, seed=8)
    p = pred_like(y)
    crit = so.SpotlightLoss(lam=0.3, k=-0.8, reduction="mean")
    torch.testing.assert_close(crit(p, y), so.loss(p, y, lam=0.3, k=-0.8, reduction="mean"))
    torch.testing.assert_close(crit(p, y, threshold=0.1), so.loss(p, y, 0.1, lam=0.3, k=-0.8, reduction="mean"))
    assert "lam=0.3" in repr(crit)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("norm", NORMS)
def test_gradcheck_double(reduction, norm):
    gen = torch.Generator().manual_seed(6)
    y = torch.rand(2, 1, 3, 4, 4, dtype=torch.float64, generator=gen)
    # Keep P - T away from +-1 and from 0 (kinks of the clamp and of |x|).
    p = (0.5 + 0.3 * torch.rand(2, 1, 3, 4, 4, dtype=torch.float64, generator=gen)).requires_grad_()
    t = torch.tensor([0.45, 0.55], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda q: so.loss(q, y, t, reduction=reduction, mse_normalization=norm), (p,))
    y.requires_grad_()
    assert torch.autograd.gradcheck(lambda q, r: so.loss(q, r, t, reduction=reduction, mse_normalization=norm),
                                    (p, y))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradients_match_reference_autograd(device, dtype, reduction):
    y = nuclei_like(3, seed=21, dtype=dtype)
    p0 = pred_like(y, seed=22)
    p = p0.clone().to(device).requires_grad_()
    yt = y.clone().to(device).requires_grad_()
    w = torch.tensor([0.5, -1.0, 2.0], dtype=dtype, device=device) if reduction == "none" else None
    out = so.loss(p, yt, reduction=reduction)
    (out * w).sum().backward() if w is not None else out.backward()
    pr = p0.double().requires_grad_()
    yr = y.double().requires_grad_()
    ref = reference(pr, yr, reduction=reduction)
    (ref * w.double().cpu()).sum().backward() if w is not None else ref.backward()
    rtol = 1e-10 if dtype == torch.float64 else 2e-4
    torch.testing.assert_close(p.grad.cpu().double(), pr.grad, rtol=rtol, atol=rtol * pr.grad.abs().max().item())
    torch.testing.assert_close(yt.grad.cpu().double(), yr.grad, rtol=rtol, atol=rtol * yr.grad.abs().max().item())


def test_no_target_grad_when_not_asked():
    y = nuclei_like(1)
    p = pred_like(y).requires_grad_()
    so.loss(p, y).backward()
    assert p.grad is not None and y.grad is None


def test_threshold_requiring_grad_is_an_error():
    y = nuclei_like(1)
    t = torch.tensor(0.3, requires_grad=True)
    with pytest.raises(ValueError, match="threshold must not require grad"):
        so.loss(pred_like(y), y, t)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs(dtype):
    y = nuclei_like(2, seed=31, dtype=dtype).squeeze(1).transpose(1, 2)
    p = pred_like(y.contiguous(), seed=32).transpose(1, 2).contiguous().transpose(1, 2)
    assert not y.is_contiguous()
    torch.testing.assert_close(so.loss(p, y, reduction="none"), so.loss(p.contiguous(), y.contiguous(),
                                                                         reduction="none"))


def test_tiny_single_voxel_samples():
    y = torch.tensor([[1.0], [2.0]])
    p = torch.tensor([[0.5], [2.5]])
    got = so.loss(p, y, reduction="none")
    torch.testing.assert_close(got.double(), so.reference.loss(p.double(), y.double(), reduction="none"))


def test_large_batch_of_small_and_one_large_sample():
    y = torch.rand(256, 1, 4, 8, 8, generator=torch.Generator().manual_seed(41)) ** 3
    p = torch.rand_like(y)
    torch.testing.assert_close(so.loss(p, y, reduction="mean").double(), reference(p, y, reduction="mean"),
                               rtol=1e-5, atol=0)
    y1 = torch.rand(1, 1, 64, 128, 128, generator=torch.Generator().manual_seed(42)) ** 3
    p1 = torch.rand_like(y1)
    torch.testing.assert_close(so.loss(p1, y1).double(), reference(p1, y1), rtol=1e-5, atol=0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nan_or_inf_poisons_exactly_its_pools(reduction):
    y = nuclei_like(3, seed=51)
    p = pred_like(y)
    p[1, 0, 0, 0, 0] = float("nan")
    y[2, 0, 1, 1, 1] = float("inf")
    got = so.loss(p, y, reduction=reduction)
    thresholds = so.otsu_threshold(y)
    assert torch.isnan(thresholds[2]) and torch.isfinite(thresholds[:2]).all()
    if reduction == "none":
        assert torch.isfinite(got[0]) and torch.isnan(got[1]) and torch.isnan(got[2])
    else:
        assert torch.isnan(got)


def test_deterministic_and_thread_count_independent():
    y = torch.rand(4, 1, 32, 64, 64, generator=torch.Generator().manual_seed(61)) ** 3
    p = torch.rand_like(y).requires_grad_()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = so.loss(p, y)
        (ga,) = torch.autograd.grad(a, p)
        torch.set_num_threads(max(2, threads))
        b = so.loss(p, y)
        (gb,) = torch.autograd.grad(b, p)
    finally:
        torch.set_num_threads(threads)
    assert a.item() == b.item()
    assert torch.equal(ga, gb)


def test_empty_foreground_gives_zero_mse_term():
    y = torch.zeros(1, 100)
    p = torch.full((1, 100), -2.0)
    # No foreground: MMSE = 0, soft mask 0 everywhere, Dice = 1 - 0 / eps = 1.
    assert so.loss(p, y, 0.0).item() == pytest.approx(0.5)
    assert so.loss(p, y, 0.0, lam=1.0).item() == 0.0


def test_real_paired_volume(shared_data):
    import numpy as np
    import tifffile

    nuc = torch.from_numpy(tifffile.imread(shared_data / "fnet_sample" / "nuc.tif").astype(np.float32))[None, None]
    light = torch.from_numpy(tifffile.imread(shared_data / "fnet_sample" / "light.tif").astype(np.float32))[None, None]
    y = so.otsu_standardize(nuc)
    p = (light - light.mean()) / light.std()
    got = so.loss(p, y, 0.0)
    torch.testing.assert_close(got.double(), so.reference.loss(p.double(), y.double(), 0.0), rtol=1e-5, atol=0)


def test_outputs_of_32_mib_and_more_are_exact():
    """CPU outputs from 32 MiB up are allocated with huge-page advice (ops/cpu_alloc.h). Advice
    cannot change values: this guards that allocation path (a wrong range would crash or corrupt),
    for the gradients, the standardized volume and the sigmoid."""
    y = nuclei_like(1, seed=21, shape=(72, 256, 512))  # 9.4 M voxels: 38 MB per float32 volume
    p = pred_like(y, seed=22).requires_grad_()
    t = y.clone().requires_grad_()
    so.loss(p, t).backward()
    pd, td = p.detach().double().requires_grad_(), t.detach().double().requires_grad_()
    reference(pd, td).backward()
    torch.testing.assert_close(p.grad.double(), pd.grad, rtol=1e-4, atol=1e-12)
    torch.testing.assert_close(t.grad.double(), td.grad, rtol=1e-4, atol=1e-12)
    torch.testing.assert_close(so.otsu_standardize(y).double(), so.reference.otsu_standardize(y.double()),
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(so.tunable_sigmoid(p.detach()).double(),
                               so.reference.tunable_sigmoid(p.detach().double()), rtol=1e-6, atol=1e-6)

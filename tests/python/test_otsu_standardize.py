"""spotlight.otsu_standardize: (x - T) / std per sample, forward and backward, at every finite scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spotlight_ops as so
from conftest import DEVICES
from helpers import DTYPES, nuclei_like


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(device, dtype):
    x = (100 + 10 * nuclei_like(3, seed=9, dtype=torch.float64)).to(dtype)
    got = so.otsu_standardize(x.to(device)).cpu()
    t = so.otsu_threshold(x).double()  # thresholds are tested on their own
    v = x.double().reshape(3, -1)
    expected = ((v - t[:, None]) / v.std(1, unbiased=False, keepdim=True)).reshape(x.shape)
    tol = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)


def test_equals_reference_in_double():
    x = nuclei_like(2, seed=10, dtype=torch.float64)
    torch.testing.assert_close(so.otsu_standardize(x), so.reference.otsu_standardize(x), rtol=1e-12, atol=1e-12)


def test_foreground_starts_at_zero():
    x = nuclei_like(2, seed=11)
    y = so.otsu_standardize(x)
    t = so.otsu_threshold(x)
    assert torch.equal(y > 0, x > t.reshape(-1, 1, 1, 1, 1))


def test_constant_sample():
    x = torch.full((1, 20), 5.0)
    assert torch.equal(so.otsu_standardize(x), torch.zeros(1, 20))


def test_gradient_holds_threshold_constant():
    """T moves with the sample's min and max; the op treats it as a constant
    (a stop-gradient, as the loss treats its mask), so the gradient is that of
    the reference with T detached, and std differentiated."""
    x = (torch.rand(2, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 4).requires_grad_()
    w = torch.randn(2, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    (g,) = torch.autograd.grad((so.otsu_standardize(x) * w).sum(), x)
    (g_ref,) = torch.autograd.grad((so.reference.otsu_standardize(x) * w).sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    # Away from the extremes (which move T), that is the true derivative.
    interior = (x != x.max(1, keepdim=True).values) & (x != x.min(1, keepdim=True).values)
    h = 1e-6
    idx = interior.nonzero()[0]
    xp, xm = x.detach().clone(), x.detach().clone()
    xp[tuple(idx)] += h
    xm[tuple(idx)] -= h
    fd = ((so.otsu_standardize(xp) * w).sum() - (so.otsu_standardize(xm) * w).sum()) / (2 * h)
    assert abs(fd.item() - g[tuple(idx)].item()) < 1e-6


# --- every finite scale -------------------------------------------------------------------

def _exact(x: torch.Tensor, thresholds: torch.Tensor) -> np.ndarray:
    """(x - T) / std per sample in np.longdouble (two passes; 64-bit mantissa on x86, exponents
    to 1e4932, so nothing overflows), T given (the op's threshold, tested on its own)."""
    v = x.reshape(x.shape[0], -1).double().numpy().astype(np.longdouble)
    mean = v.mean(axis=1, keepdims=True)
    sd = np.sqrt(((v - mean) ** 2).mean(axis=1, keepdims=True))
    sd = np.where(sd > 0, sd, np.longdouble(1))
    return (v - thresholds.double().numpy().astype(np.longdouble)[:, None]) / sd


def _expect_exact(x: torch.Tensor, device: str, tol: float) -> None:
    y, t, _ = torch.ops.spotlight._otsu_standardize_forward(x.to(device), 256)
    assert torch.equal(y, so.otsu_standardize(x.to(device)))
    want = _exact(x, t.cpu())
    got = y.cpu().reshape(want.shape).double().numpy().astype(np.longdouble)
    assert np.isfinite(got).all()
    err = float(np.max(np.abs(got - want) / (1 + np.abs(want))))
    assert err <= tol, err


def _offset_samples(dtype, scale: float, voxels: int = 4000, seed: int = 3) -> torch.Tensor:
    """Two samples of offset data (100 + 7u and -3 + 7u), at `scale`, built in float64."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(2, voxels, dtype=torch.float64, generator=g)
    u[:, : voxels // 10] += 2  # a bright tenth: Otsu has two classes
    base = torch.tensor([[100.0], [-3.0]], dtype=torch.float64) + 7 * u
    return (base * scale).to(dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("exponent", range(-30, 31, 5))
def test_float32_exact_at_every_scale(device, exponent):
    """float32 from 1e-30 to 1e30: squares of unscaled values overflow from about 1e19."""
    _expect_exact(_offset_samples(torch.float32, 10.0 ** exponent), device, 1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_exact_near_max_and_denormal(device):
    g = torch.Generator().manual_seed(4)
    u = torch.rand(1, 50000, dtype=torch.float64, generator=g)
    fmax = torch.finfo(torch.float32).max
    _expect_exact(((2 * u - 1) * fmax).to(torch.float32), device, 1e-6)  # x - T overflows unscaled
    _expect_exact((u * fmax).to(torch.float32), device, 1e-6)  # every float sum overflows
    for scale in (1e36, 1e37, 1e38):
        _expect_exact(_offset_samples(torch.float32, scale / 110), device, 1e-6)
    # denormals: integer multiples of 2^-149 below 2^20 of them (1 / std beyond float's range)
    tiny = torch.floor(u * 1e6) * 2.0 ** -149
    _expect_exact(tiny.to(torch.float32), device, 1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scale", [1e-300, 1e-160, 1e160, 1e300])
def test_float64_exact_at_the_extremes(device, scale):
    _expect_exact(_offset_samples(torch.float64, scale), device, 1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_float64_exact_near_max_and_denormal(device):
    g = torch.Generator().manual_seed(5)
    u = torch.rand(1, 50000, dtype=torch.float64, generator=g)
    dmax = torch.finfo(torch.float64).max
    # [-max/2, max/2]: wider, hi - lo overflows in the Otsu bin centre (a threshold of inf, SPEC 1's
    # business, not this test's)
    _expect_exact((u - 0.5) * dmax, device, 1e-12)
    _expect_exact(u * dmax, device, 1e-12)
    _expect_exact(torch.floor(u * 1e9) * 2.0 ** -1074, device, 1e-12)  # denormals of up to 30 bits


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_exact_at_its_scales(device, dtype):
    """Outputs rounded to the dtype: within one unit of its rounding of (1 + |y|)."""
    info = torch.finfo(dtype)
    for scale in (info.tiny * 4, 1.0, info.max / 200):
        _expect_exact(_offset_samples(dtype, scale), device, info.eps)


def test_saved_stats():
    """stats = (scale, scaled mean, inverse scaled std): scale a power of two, and mean and std of
    the sample once unscaled."""
    x = _offset_samples(torch.float64, 1e200)
    _, t, stats = torch.ops.spotlight._otsu_standardize_forward(x, 256)
    assert t.dtype == torch.float64 and stats.shape == (2, 3)
    assert torch.equal(t, so.otsu_threshold(x))
    scale, mean, inv_std = stats.unbind(1)
    assert torch.equal(torch.frexp(scale).mantissa, torch.full((2,), 0.5, dtype=torch.float64))
    v = x / 1e200  # the same data at a scale where float64 has room
    torch.testing.assert_close(mean / scale / 1e200, v.mean(1), rtol=1e-13, atol=0)
    torch.testing.assert_close(1 / (inv_std * scale) / 1e200, v.std(1, unbiased=False), rtol=1e-13, atol=0)


# --- the backward ---------------------------------------------------------------------------

def _grad(x: torch.Tensor, w: torch.Tensor, fn) -> torch.Tensor:
    x = x.detach().clone().requires_grad_()
    (g,) = torch.autograd.grad((fn(x).double() * w).sum(), x)
    return g


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_matches_reference_autograd(device, dtype):
    """The header backward against autograd through the float64 reference (same input values), to
    a few units of the dtype's rounding of the gradient."""
    x = (100 + 10 * nuclei_like(3, seed=12, dtype=torch.float64)).to(dtype)
    w = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(13))
    got = _grad(x.to(device), w.to(device).to(dtype), so.otsu_standardize).cpu().double()
    want = _grad(x.double(), w.to(dtype).double(), so.reference.otsu_standardize)
    eps = torch.finfo(dtype).eps
    scale = want.abs().max().item()
    tol = {torch.float64: 1e3 * eps, torch.float32: 16 * eps}.get(dtype, 2 * eps)
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_backward_float32_at_extreme_scales(device, scale):
    """Where the unscaled formula's s^3 overflows (1e30) or underflows (1e-30) in float."""
    x = _offset_samples(torch.float64, 1.0)
    w = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(14))
    want = _grad(x, w, so.reference.otsu_standardize)  # at scale 1, times 1 / scale below
    got = _grad((x * scale).float().to(device), w.float().to(device), so.otsu_standardize).cpu().double() * scale
    torch.testing.assert_close(got, want, rtol=2e-5, atol=2e-5 * want.abs().max().item())


def test_gradcheck_in_double():
    """gradcheck with the sample's min and max (which move T) held by constant voxels."""
    g = torch.Generator().manual_seed(15)
    v = (torch.rand(2, 20, dtype=torch.float64, generator=g) * 4 + 1).requires_grad_()
    ends = torch.tensor([[0.0, 6.0], [-1.0, 7.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: so.otsu_standardize(torch.cat([v, ends], 1)), (v,))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_private_ops(device):
    x = (100 + 10 * nuclei_like(2, seed=16, dtype=torch.float64)).to(device)
    y, t, stats = torch.ops.spotlight._otsu_standardize_forward(x, 64)
    torch.library.opcheck(torch.ops.spotlight._otsu_standardize_forward.default, (x, 64))
    torch.library.opcheck(torch.ops.spotlight._otsu_standardize_backward.default, (torch.randn_like(x), x, t, stats))


def test_backward_rejects_bad_state():
    x = torch.rand(2, 10)
    _, t, stats = torch.ops.spotlight._otsu_standardize_forward(x, 256)
    bad = torch.ops.spotlight._otsu_standardize_backward
    with pytest.raises(ValueError, match="stats must be"):
        bad(x, x, t, stats[:, :2])
    with pytest.raises(ValueError, match="thresholds must be"):
        bad(x, x, t.double(), stats)
    with pytest.raises(ValueError, match="grad must have the shape"):
        bad(x[:, :5], x, t, stats)


def test_backward_of_constant_sample_is_identity():
    x = torch.full((1, 12), 3.0, requires_grad=True)
    w = torch.arange(12.0).reshape(1, 12)
    (so.otsu_standardize(x) * w).sum().backward()
    assert torch.equal(x.grad, w)

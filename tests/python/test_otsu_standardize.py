"""spotlight.otsu_standardize: (x - T) / std per sample."""

from __future__ import annotations

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

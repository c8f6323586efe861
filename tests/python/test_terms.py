"""spotlight.masked_mse and spotlight.soft_dice against the reference."""

from __future__ import annotations

import pytest
import torch

import spotlight_ops as so
from conftest import DEVICES
from helpers import DTYPES, LOSS_RTOL, nuclei_like, pred_like


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["batch", "mean", "none"])
@pytest.mark.parametrize("norm", ["foreground", "all"])
def test_masked_mse_matches_reference(device, dtype, reduction, norm):
    y = nuclei_like(3, seed=1, dtype=dtype)
    p = pred_like(y)
    m = y > 0.5
    got = so.masked_mse(p.to(device), y.to(device), m.to(device), norm, reduction).cpu()
    expected = so.reference.masked_mse(p.double(), y.double(), m, norm, reduction)
    torch.testing.assert_close(got.double(), expected, rtol=LOSS_RTOL[dtype], atol=1e-7)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["batch", "mean", "none"])
def test_soft_dice_matches_reference(device, dtype, reduction):
    y = nuclei_like(3, seed=2, dtype=dtype)
    s = torch.rand(y.shape, generator=torch.Generator().manual_seed(3)).to(dtype)
    m = y > 0.5
    got = so.soft_dice(s.to(device), m.to(device), 1e-6, reduction).cpu()
    expected = so.reference.soft_dice(s.double(), m, 1e-6, reduction)
    torch.testing.assert_close(got.double(), expected, rtol=LOSS_RTOL[dtype], atol=1e-7)


@pytest.mark.parametrize("reduction", ["batch", "mean", "sum", "none"])
@pytest.mark.parametrize("norm", ["foreground", "all"])
def test_gradcheck(reduction, norm):
    gen = torch.Generator().manual_seed(4)
    p = torch.rand(2, 3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.rand(2, 3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    m = torch.rand(2, 3, 4, generator=gen) > 0.5
    assert torch.autograd.gradcheck(lambda a, b: so.masked_mse(a, b, m, norm, reduction), (p, y))
    s = torch.rand(2, 3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: so.soft_dice(a, m, 1e-6, reduction), (s,))


def test_fused_loss_equals_composition_of_terms():
    y = nuclei_like(2, seed=5, dtype=torch.float64)
    p = pred_like(y)
    t = so.otsu_threshold(y)
    m = y > t.reshape(-1, 1, 1, 1, 1)
    soft = 0.5 * (1 + so.tunable_sigmoid(p - t.reshape(-1, 1, 1, 1, 1), -0.95))
    composed = 0.5 * so.masked_mse(p, y, m) + 0.5 * so.soft_dice(soft, m)
    torch.testing.assert_close(so.loss(p, y), composed, rtol=1e-12, atol=0)


def test_empty_mask_gives_zero_mse():
    p = torch.rand(2, 10)
    assert so.masked_mse(p, p + 1, torch.zeros(2, 10, dtype=torch.bool)).item() == 0.0

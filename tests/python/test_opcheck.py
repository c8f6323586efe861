"""torch.library.opcheck on every op: schema, autograd registration, fake
tensors and AOT dispatch agree with the real kernels."""

from __future__ import annotations

import pytest
import torch

import spotlight_ops  # noqa: F401
from conftest import DEVICES


def _inputs(device, dtype=torch.float64, requires_grad=True):
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(3, 2, 5, dtype=dtype, generator=gen).to(device)
    p = (0.3 + 0.4 * torch.rand(3, 2, 5, dtype=dtype, generator=gen)).to(device).requires_grad_(requires_grad)
    return p, y


def cases(device):
    p, y = _inputs(device)
    m = y > 0.5
    t = torch.tensor([0.4, 0.5, 0.6], dtype=torch.float64, device=device)
    ops = torch.ops.spotlight
    yield ops.otsu_threshold.default, (y, 256)
    yield ops.otsu_standardize.default, (y.clone().requires_grad_(), 64)
    yield ops.tunable_sigmoid.default, (p, -0.95)
    yield ops._tunable_sigmoid_backward.default, (torch.ones_like(y), y, -0.5)
    for red in ("batch", "mean", "none"):
        yield ops.masked_mse.default, (p, y, m, "foreground", red)
        yield ops.soft_dice.default, (p, m, 1e-6, red)
        yield ops.loss.default, (p, y, None, 0.5, -0.95, 1e-6, 256, "foreground", red)
        yield ops.loss.default, (p, y, t, 0.3, -0.9, 1e-6, 256, "all", red)
        yield ops._loss_forward.default, (p.detach(), y, None, 0.5, -0.95, 1e-6, 256, "foreground", red)
    fwd = ops._loss_forward.default(p.detach(), y, t, 0.5, -0.95, 1e-6, 256, "foreground", "none")
    yield ops._loss_backward.default, (torch.ones(3, dtype=torch.float64, device=device), p.detach(), y, fwd[1],
                                       fwd[2], 0.5, -0.95, 1e-6, "foreground", "none", True)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_every_op(device):
    n = 0
    for op, args in cases(device):
        torch.library.opcheck(op, args)
        n += 1
    assert n == 20

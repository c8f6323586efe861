"""spotlight.tunable_sigmoid: values, clamp, gradient."""

from __future__ import annotations

import pytest
import torch

import spotlight_ops as so
from conftest import DEVICES
from helpers import DTYPES


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [-0.95, -0.5, 0.0, 0.7])
def test_matches_formula(device, dtype, k):
    x = torch.linspace(-2, 2, 1001, dtype=torch.float64).to(dtype)
    got = so.tunable_sigmoid(x.to(device), k).cpu()
    c = x.double().clamp(-1, 1)
    expected = (c - k * c) / (k - 2 * k * c.abs() + 1)
    tol = {torch.float64: 1e-15, torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)


def test_endpoints_and_oddness():
    x = torch.tensor([-5.0, -1.0, 0.0, 1.0, 5.0], dtype=torch.float64)
    assert so.tunable_sigmoid(x, -0.95).tolist() == [-1.0, -1.0, 0.0, 1.0, 1.0]
    y = torch.rand(100, dtype=torch.float64)
    torch.testing.assert_close(so.tunable_sigmoid(-y, -0.9), -so.tunable_sigmoid(y, -0.9))


def test_gradcheck_inside_and_zero_outside():
    x = torch.tensor([-0.9, -0.4, -0.05, 0.2, 0.8], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: so.tunable_sigmoid(v, -0.95), (x,))
    out = torch.tensor([-3.0, 1.5], dtype=torch.float64, requires_grad=True)
    so.tunable_sigmoid(out, -0.95).sum().backward()
    assert out.grad.tolist() == [0.0, 0.0]


def test_gradient_is_zero_at_the_ends_of_the_clamp_in_op_and_reference():
    """|x| = 1 exactly: 0 (docs/design.md), in the op and in the reference, whatever torch.clamp's
    backward does there (torch 2.11 passes the gradient at the ends, 2.14.1 does not)."""
    k = -0.95
    x = torch.tensor([-1.0, 1.0, -1.0 + 2**-40, 1.0 - 2**-40], dtype=torch.float64)
    inside = (1 - k * k) / (k - 2 * k * (1.0 - 2**-40) + 1) ** 2
    for f in (so.tunable_sigmoid, so.reference.tunable_sigmoid):
        v = x.clone().requires_grad_()
        f(v, k).sum().backward()
        assert v.grad[:2].tolist() == [0.0, 0.0]
        torch.testing.assert_close(v.grad[2:], torch.full((2,), inside, dtype=torch.float64))
    # the case hypothesis found: a constant target sample, predictions exactly T - 1 and T + 1
    p = torch.tensor([[4.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([[3.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    pa, pr = p.clone().requires_grad_(), p.clone().requires_grad_()
    so.loss(pa, y).backward()
    so.reference.loss(pr, y, so.otsu_threshold(y)).backward()
    assert pa.grad[1].tolist() == [0.0, 0.0]
    torch.testing.assert_close(pa.grad, pr.grad, rtol=1e-12, atol=1e-15)


def test_non_contiguous():
    x = torch.randn(6, 5).t()
    torch.testing.assert_close(so.tunable_sigmoid(x), so.tunable_sigmoid(x.contiguous()))

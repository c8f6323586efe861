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


# Second derivative: the backward op _tunable_sigmoid_backward(g, x, k) = g * sigma_k'(x) is itself
# differentiable, in g through itself and in x through _tunable_sigmoid_double_backward.

def _grad_formula(x, k):
    """sigma_k'(x) in float64 torch ops, inside (-1, 1), 0 outside: autograd of it is the reference."""
    den = k - 2 * k * x.abs() + 1
    return torch.where((x > -1) & (x < 1), (1 - k * k) / den**2, torch.zeros_like(x))


def _grad2_formula(x, k):
    """sigma_k''(x) = 4 k (1 - k^2) sign(x) / (k - 2k|x| + 1)^3 inside (-1, 1), 0 outside."""
    den = k - 2 * k * x.abs() + 1
    return torch.where((x > -1) & (x < 1), 4 * k * (1 - k * k) * x.sign() / den**3, torch.zeros_like(x))


def _away_from_kinks(n, gen, dtype=torch.float64):
    """Points in (-1.5, 1.5) at least 0.02 from 0 and from +-1 (where sigma'' jumps)."""
    x = torch.rand(n, dtype=torch.float64, generator=gen) * 3 - 1.5
    x = x[((x.abs() - 1).abs() > 0.02) & (x.abs() > 0.02)]
    return x.to(dtype)


@pytest.mark.parametrize("k", [-0.95, -0.3, 0.6])
def test_second_derivative_formula_is_autograd_of_the_first(k):
    gen = torch.Generator().manual_seed(1)
    x = _away_from_kinks(200, gen).requires_grad_()
    (auto,) = torch.autograd.grad(_grad_formula(x, k).sum(), x)
    torch.testing.assert_close(_grad2_formula(x.detach(), k), auto, rtol=1e-13, atol=0)
    # and a central difference of sigma_k'
    h = 1e-6
    fd = (_grad_formula(x.detach() + h, k) - _grad_formula(x.detach() - h, k)) / (2 * h)
    torch.testing.assert_close(_grad2_formula(x.detach(), k), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [-0.95, 0.5])
def test_second_derivative_values(device, dtype, k):
    """Op and autograd against the float64 formula at the (rounded) inputs. Tolerances: a few float32
    roundings for float32/float64-in-float32 math; one rounding of the output for half (2^-11) and
    bfloat16 (2^-8), doubled."""
    gen = torch.Generator().manual_seed(2)
    x = _away_from_kinks(600, gen, dtype)
    g = (torch.rand(x.shape, dtype=torch.float64, generator=gen) * 2 - 1).to(dtype)
    o = (torch.rand(x.shape, dtype=torch.float64, generator=gen) * 2 - 1).to(dtype)
    expected = o.double() * g.double() * _grad2_formula(x.double(), k)
    rtol = {torch.float64: 1e-13, torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
    got = torch.ops.spotlight._tunable_sigmoid_double_backward(o.to(device), g.to(device), x.to(device), k).cpu()
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), expected, rtol=rtol, atol=rtol * 1e-3)
    # the same through autograd: d/dx <o, dL/dx> with dL/dx from create_graph
    xv, gv = x.to(device).requires_grad_(), g.to(device)
    (first,) = torch.autograd.grad(so.tunable_sigmoid(xv, k), xv, gv, create_graph=True)
    (second,) = torch.autograd.grad(first, xv, o.to(device))
    torch.testing.assert_close(second.cpu().double(), expected, rtol=rtol, atol=rtol * 1e-3)
    # and in g: o * sigma_k'(x)
    gv = g.to(device).requires_grad_()
    b = torch.ops.spotlight._tunable_sigmoid_backward(gv, x.to(device), k)
    (grad_g,) = torch.autograd.grad(b, gv, o.to(device))
    torch.testing.assert_close(grad_g.cpu().double(), o.double() * _grad_formula(x.double(), k), rtol=rtol,
                               atol=rtol * 1e-3)


@pytest.mark.parametrize("k", [-0.95, -0.4, 0.7])
def test_gradgradcheck_inside_and_across_the_clamp(k):
    x = torch.tensor([-1.6, -1.03, -0.97, -0.6, -0.2, -0.03, 0.04, 0.3, 0.8, 0.99, 1.01, 2.0],
                     dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda v: so.tunable_sigmoid(v, k), (x,))
    g = torch.linspace(-1, 1, x.numel(), dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda gg, v: torch.ops.spotlight._tunable_sigmoid_backward(gg, v, k), (g, x))


def test_second_derivative_is_zero_at_zero_and_outside():
    x = torch.tensor([0.0, -1.0, 1.0, -3.0, 4.0], dtype=torch.float64)
    ones = torch.ones_like(x)
    got = torch.ops.spotlight._tunable_sigmoid_double_backward(ones, ones, x, -0.95)
    assert got.tolist() == [0.0] * 5


def test_second_derivative_nan():
    """A NaN incoming gradient reaches every element (also where sigma'' is 0); a NaN x gets 0, as in
    the first derivative (whose select keeps only -1 < x < 1) and the reference's autograd."""
    nan = float("nan")
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0, nan], dtype=torch.float64)
    ones = torch.ones_like(x)
    for o, g in ((torch.full_like(x, nan), ones), (ones, torch.full_like(x, nan))):
        assert torch.ops.spotlight._tunable_sigmoid_double_backward(o, g, x, -0.95).isnan().all()
    got = torch.ops.spotlight._tunable_sigmoid_double_backward(ones, ones, x, -0.95)
    assert got[5].item() == 0.0 and got[:5].isfinite().all()
    xv = x.clone().requires_grad_()
    (first,) = torch.autograd.grad(so.tunable_sigmoid(xv, -0.95).sum(), xv, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), xv)
    xr = x.clone().requires_grad_()
    (first_r,) = torch.autograd.grad(so.reference.tunable_sigmoid(xr, -0.95).sum(), xr, create_graph=True)
    assert first[5].item() == 0.0 and first_r[5].item() == 0.0 and second[5].item() == 0.0


def test_third_derivative_raises_a_named_error():
    x = torch.tensor([0.3, -0.6], dtype=torch.float64, requires_grad=True)
    (first,) = torch.autograd.grad(so.tunable_sigmoid(x).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="third derivative of spotlight.tunable_sigmoid"):
        second.sum().backward()


def test_double_backward_checks_its_arguments():
    x = torch.rand(4)
    with pytest.raises(ValueError, match="grad_out must have the shape of x"):
        torch.ops.spotlight._tunable_sigmoid_double_backward(torch.rand(3), x, x, -0.5)
    with pytest.raises(TypeError, match="grad must have the dtype of x"):
        torch.ops.spotlight._tunable_sigmoid_double_backward(x, x.double(), x, -0.5)
    with pytest.raises(Exception, match="k must lie"):
        torch.ops.spotlight._tunable_sigmoid_double_backward(x, x, x, 1.0)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_of_the_backward_ops(device):
    gen = torch.Generator().manual_seed(3)
    x = _away_from_kinks(40, gen)[:16].reshape(2, 8).to(device)
    g, o = torch.rand_like(x), torch.rand_like(x)
    torch.library.opcheck(torch.ops.spotlight._tunable_sigmoid_double_backward.default, (o, g, x, -0.5))
    # the backward op's own autograd kernel
    torch.library.opcheck(torch.ops.spotlight._tunable_sigmoid_backward.default,
                          (g.clone().requires_grad_(), x.clone().requires_grad_(), -0.5))

"""The backwards of spotlight.masked_mse and spotlight.soft_dice (the private ops
_masked_mse_backward and _soft_dice_backward, from the sums the private forwards
save) against the autograd of the float64 reference, in every dtype.

Tolerances: the op's gradient is computed in float (double for float64) from
pool sums accumulated in float lanes, then rounded once to the dtype. Against
the float64 reference on the same (dtype-rounded) inputs its relative error is
the dtype's unit roundoff u (2^-11 float16, 2^-8 bfloat16, 2^-24 float32) plus
the float computation's few 1e-7 (sums over ~1e4 voxels, the coefficient and two
roundings): rtol = u + 1e-6 for the float dtypes, 1e-12 for float64. atol is the
dtype's subnormal spacing (tiny * eps), the absolute rounding of gradients that
underflow into its subnormal range."""

from __future__ import annotations

import pytest
import torch

import spotlight_ops as so
from conftest import DEVICES
from helpers import DTYPES, nuclei_like, pred_like

REDUCTIONS = ["batch", "mean", "sum", "none"]
NORMS = ["foreground", "all"]
ops = torch.ops.spotlight


def _tolerances(dtype):
    fi = torch.finfo(dtype)
    rtol = 1e-12 if dtype == torch.float64 else fi.eps / 2 + 1e-6
    return dict(rtol=rtol, atol=fi.tiny * fi.eps)


def _upstream(reduction, n, gen, dtype):
    """A random upstream gradient of the op's value, as float64 holding values of the
    op's dtype (autograd hands the op a gradient of its output's dtype)."""
    shape = (n,) if reduction == "none" else ()
    return (0.5 + torch.rand(shape, dtype=torch.float64, generator=gen)).to(dtype).double()


def _mse_inputs(dtype, n=3):
    y = nuclei_like(n, seed=11, dtype=dtype)
    p = pred_like(y, seed=12)
    m = y > 0.5
    m[-1] = False  # the last sample has no foreground: D = 0, gradient 0 under "foreground"
    return p, y, m


def _grads(out, inputs, g):
    return torch.autograd.grad(out, inputs, g.to(out.dtype).to(out.device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("norm", NORMS)
def test_masked_mse_backward_matches_reference_autograd(device, dtype, reduction, norm):
    p, y, m = _mse_inputs(dtype)
    g = _upstream(reduction, p.shape[0], torch.Generator().manual_seed(13), dtype)
    pd, yd = p.to(device).requires_grad_(), y.to(device).requires_grad_()
    gp, gt = _grads(so.masked_mse(pd, yd, m.to(device), norm, reduction), (pd, yd), g)
    assert gp.dtype == dtype and gt.dtype == dtype
    p64, y64 = p.double().requires_grad_(), y.double().requires_grad_()
    wp, wt = torch.autograd.grad(so.reference.masked_mse(p64, y64, m, norm, reduction), (p64, y64), g)
    torch.testing.assert_close(gp.cpu().double(), wp, **_tolerances(dtype))
    torch.testing.assert_close(gt.cpu().double(), wt, **_tolerances(dtype))
    if norm == "foreground" and reduction != "batch":
        assert torch.all(gp[-1] == 0)  # D = 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_masked_mse_half_grad_target_is_minus_grad_pred(device, dtype):
    """dL/dY = -dL/dP to the bit, in the dtypes where a copy of grad_pred would pass
    a loose check."""
    p, y, m = _mse_inputs(dtype)
    pd, yd = p.to(device).requires_grad_(), y.to(device).requires_grad_()
    gp, gt = torch.autograd.grad(so.masked_mse(pd, yd, m.to(device)), (pd, yd))
    assert gp.abs().max() > 0
    assert torch.equal(gt, -gp)
    # Only pred requires grad: the same grad_pred, and target gets none.
    pd2 = p.to(device).requires_grad_()
    (gp2,) = torch.autograd.grad(so.masked_mse(pd2, y.to(device), m.to(device)), (pd2,))
    assert torch.equal(gp2, gp)


def _dice_inputs(dtype, n=3):
    y = nuclei_like(n, seed=21, dtype=dtype)
    s = torch.rand(y.shape, generator=torch.Generator().manual_seed(22)).to(dtype)
    return s, y > 0.5


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_soft_dice_backward_matches_reference_autograd(device, dtype, reduction):
    s, m = _dice_inputs(dtype)
    g = _upstream(reduction, s.shape[0], torch.Generator().manual_seed(23), dtype)
    sd = s.to(device).requires_grad_()
    (gs,) = _grads(so.soft_dice(sd, m.to(device), 1e-6, reduction), (sd,), g)
    assert gs.dtype == dtype
    s64 = s.double().requires_grad_()
    (ws,) = torch.autograd.grad(so.reference.soft_dice(s64, m, 1e-6, reduction), (s64,), g)
    torch.testing.assert_close(gs.cpu().double(), ws, **_tolerances(dtype))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,eps", [(torch.float64, 1e-6), (torch.float64, 0.25), (torch.float32, 0.25)])
def test_soft_dice_backward_keeps_eps_where_it_matters(device, dtype, eps):
    """Pools of one foreground voxel and small soft sums, so that eps moves
    B = sum(S) + sum(M) + eps (>= 1 with any foreground) far beyond the tolerance:
    a backward that drops eps fails here. (With no foreground A = 0 and the gradient
    is 0 whatever eps; the default eps changes B by 1e-6 relative, which float64's
    tolerance resolves and float32's does not, hence eps = 0.25 there.)"""
    s = torch.tensor([[2e-7, 1e-7, 3e-7, 0.0], [0.2, 0.1, 0.0, 0.4]], dtype=dtype)
    m = torch.tensor([[False, True, False, False], [True, False, False, False]])
    s64 = s.double().requires_grad_()
    (want,) = torch.autograd.grad(so.reference.soft_dice(s64, m, eps, "none").sum(), (s64,))
    (without_eps,) = torch.autograd.grad(so.reference.soft_dice(s64, m, 0.0, "none").sum(), (s64,))
    tol = _tolerances(dtype)
    # The check can fail: eps changes the expected gradient far beyond the tolerance.
    assert ((want - without_eps).abs() > 100 * (tol["rtol"] * want.abs() + tol["atol"])).any()
    sd = s.to(device).requires_grad_()
    (got,) = torch.autograd.grad(so.soft_dice(sd, m.to(device), eps, "none").sum(), (sd,))
    torch.testing.assert_close(got.cpu().double(), want, **tol)


# --- NaN and Inf (SPEC section 8; docs/design.md "Non-finite values") ---------------------------


def _poisoned(x, where, value):
    x = x.clone()
    x.reshape(x.shape[0], -1)[where] = value
    return x


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("which", ["pred", "target"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("masked", [True, False])
def test_masked_mse_non_finite_poisons_its_pool(device, dtype, which, value, masked):
    """A NaN or Inf in pred or target, masked or not: the value of every pool that
    holds it is NaN, other pools finite; the gradient is not finite exactly where pred
    or target is not (NaN, or +-Inf for an Inf under the mask), as the reference's
    and torch's MSE gradients are."""
    p, y, m = _mse_inputs(dtype)
    m = m.clone()
    m.reshape(3, -1)[1, 5] = masked
    if which == "pred":
        p = _poisoned(p, (1, 5), value)
    else:
        y = _poisoned(y, (1, 5), value)
    pd, yd, md = p.to(device).requires_grad_(), y.to(device).requires_grad_(), m.to(device)
    none = so.masked_mse(pd, yd, md, "foreground", "none").cpu()
    assert torch.isnan(none[1]) and torch.isfinite(none[[0, 2]]).all()
    assert torch.isnan(so.masked_mse(pd, yd, md, "foreground", "batch"))
    for reduction in ("batch", "none"):
        gp, gt = torch.autograd.grad(so.masked_mse(pd, yd, md, "foreground", reduction).sum(), (pd, yd))
        p64, y64 = p.double().requires_grad_(), y.double().requires_grad_()
        wp, wt = torch.autograd.grad(so.reference.masked_mse(p64, y64, m, "foreground", reduction).sum(), (p64, y64))
        bad = ~torch.isfinite(p.double()) | ~torch.isfinite(y.double())
        assert torch.equal(~torch.isfinite(gp.cpu()), bad) and torch.equal(~torch.isfinite(gt.cpu()), bad)
        torch.testing.assert_close(gp.cpu().double(), wp, equal_nan=True, **_tolerances(dtype))
        torch.testing.assert_close(gt.cpu().double(), wt, equal_nan=True, **_tolerances(dtype))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("masked", [True, False])
def test_soft_dice_non_finite_poisons_its_pool(device, dtype, value, masked):
    """A NaN or Inf in soft: the pool's value and its whole gradient are NaN (A and
    B hold it), as the reference's; other pools are untouched."""
    s, m = _dice_inputs(dtype)
    m = m.clone()
    m.reshape(3, -1)[1, 7] = masked
    s = _poisoned(s, (1, 7), value)
    sd, md = s.to(device).requires_grad_(), m.to(device)
    none = so.soft_dice(sd, md, 1e-6, "none").cpu()
    assert torch.isnan(none[1]) and torch.isfinite(none[[0, 2]]).all()
    assert torch.isnan(so.soft_dice(sd, md, 1e-6, "mean"))
    for reduction in ("none", "mean", "batch"):
        (gs,) = torch.autograd.grad(so.soft_dice(sd, md, 1e-6, reduction).sum(), (sd,))
        gs = gs.cpu().reshape(3, -1)
        if reduction == "batch":
            assert torch.isnan(gs).all()
        else:
            assert torch.isnan(gs[1]).all() and torch.isfinite(gs[[0, 2]]).all()
        s64 = s.double().requires_grad_()
        (ws,) = torch.autograd.grad(so.reference.soft_dice(s64, m, 1e-6, reduction).sum(), (s64,))
        torch.testing.assert_close(gs.double(), ws.reshape(3, -1), equal_nan=True, **_tolerances(dtype))


# --- the private ops -----------------------------------------------------------------------------


def _private_cases(device, reduction):
    gen = torch.Generator().manual_seed(31)
    p = torch.rand(3, 2, 5, dtype=torch.float64, generator=gen).to(device)
    y = torch.rand(3, 2, 5, dtype=torch.float64, generator=gen).to(device)
    m = y > 0.5
    g = torch.ones(3 if reduction == "none" else (), dtype=torch.float64, device=device)
    _, mse_sums = ops._masked_mse_forward(p, y, m, "all", reduction)
    _, dice_sums = ops._soft_dice_forward(p, m, 1e-6, reduction)
    yield ops._masked_mse_forward.default, (p, y, m, "all", reduction)
    yield ops._masked_mse_backward.default, (g, p, y, m, mse_sums, "all", reduction, True)
    yield ops._masked_mse_backward.default, (g, p, y, m, mse_sums, "foreground", reduction, False)
    yield ops._soft_dice_forward.default, (p, m, 1e-6, reduction)
    yield ops._soft_dice_backward.default, (g, p, m, dice_sums, 1e-6, reduction)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["batch", "none"])
def test_opcheck_private_term_ops(device, reduction):
    for op, args in _private_cases(device, reduction):
        torch.library.opcheck(op, args)


def test_private_forward_saves_the_pool_sums():
    p, y, m = _mse_inputs(torch.float64)
    value, sums = ops._masked_mse_forward(p, y, m, "foreground", "none")
    assert sums.shape == (3, 7) and sums.dtype == torch.float64
    flat_m = m.reshape(3, -1).double()
    torch.testing.assert_close(sums[:, 0], flat_m.sum(1))  # D
    torch.testing.assert_close(sums[:, 1], (flat_m * (y - p).reshape(3, -1) ** 2).sum(1), rtol=1e-13, atol=0)
    torch.testing.assert_close(value, ops.masked_mse(p, y, m, "foreground", "none"), rtol=0, atol=0)
    s, sm = _dice_inputs(torch.float64)
    value, sums = ops._soft_dice_forward(s, sm, 1e-6, "none")
    flat_s, flat_sm = s.reshape(3, -1), sm.reshape(3, -1).double()
    torch.testing.assert_close(sums[:, 2], flat_s.sum(1), rtol=1e-13, atol=0)  # sum(S)
    torch.testing.assert_close(sums[:, 3], (flat_s * flat_sm).sum(1), rtol=1e-13, atol=0)  # A
    torch.testing.assert_close(value, ops.soft_dice(s, sm, 1e-6, "none"), rtol=0, atol=0)


BAD_STATE = [
    ("grad count", lambda p, y, m, s: ops._masked_mse_backward(torch.ones(2), p, y, m, s, "all", "batch", True),
     ValueError, "grad must hold 1 values"),
    ("sums shape", lambda p, y, m, s: ops._masked_mse_backward(torch.ones(()), p, y, m, s[:, :5], "all", "batch",
                                                                True), ValueError, r"sums must be the forward.s, float64 \[3, 7\]"),
    ("sums dtype", lambda p, y, m, s: ops._soft_dice_backward(torch.ones(()), p, m, s.float(), 1e-6, "batch"),
     ValueError, r"sums must be the forward.s, float64 \[3, 7\], got \[3, 7\] of another dtype"),
    ("reduction", lambda p, y, m, s: ops._soft_dice_backward(torch.ones(()), p, m, s, 1e-6, "max"), ValueError,
     "reduction must be one of"),
    ("eps", lambda p, y, m, s: ops._soft_dice_backward(torch.ones(()), p, m, s, -1.0, "batch"), ValueError,
     "eps must be"),
    ("norm", lambda p, y, m, s: ops._masked_mse_backward(torch.ones(()), p, y, m, s, "x", "batch", True),
     ValueError, "mse_normalization must be"),
]


@pytest.mark.parametrize("name,call,exc,match", BAD_STATE, ids=[c[0] for c in BAD_STATE])
def test_private_backward_rejects_bad_state(name, call, exc, match):
    p = torch.rand(3, 4)
    y = torch.rand(3, 4)
    m = y > 0.5
    _, sums = ops._masked_mse_forward(p, y, m, "all", "batch")
    with pytest.raises(exc, match=match):
        call(p, y, m, sums)


@pytest.mark.parametrize("op", ["masked_mse", "soft_dice"])
def test_second_derivative_is_a_clear_error(op):
    p, y, m = _mse_inputs(torch.float64)
    pd = p.requires_grad_()
    call = (lambda a: so.masked_mse(a, y, m)) if op == "masked_mse" else (lambda a: so.soft_dice(a, m))
    (g,) = torch.autograd.grad(call(pd), pd, create_graph=True)
    assert g.requires_grad
    with pytest.raises(RuntimeError, match=f"second derivative of spotlight.{op} is not implemented"):
        (g ** 2).sum().backward()
    (g_plain,) = torch.autograd.grad(call(pd), pd)
    torch.testing.assert_close(g.detach(), g_plain, rtol=0, atol=0)


def test_compiled_forward_and_backward_trace_the_private_ops():
    """torch.compile(fullgraph) through the autograd kernels: the fake kernels of the
    private forward and backward ops give the shapes, and the values are the eager ones."""
    p, y, m = _mse_inputs(torch.float32)
    s, sm = _dice_inputs(torch.float32)

    def f(a, b, c):
        return so.masked_mse(a, b, m, "all", "none").sum() + so.soft_dice(c, sm, 1e-6, "mean")

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    args = [t.clone().requires_grad_() for t in (p, y, s)]
    eager_args = [t.clone().requires_grad_() for t in (p, y, s)]
    got = torch.autograd.grad(compiled(*args), args)
    want = torch.autograd.grad(f(*eager_args), eager_args)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

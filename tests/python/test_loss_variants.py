"""The variants of SPEC section 11 in the fused loss (soft masks, mask rule, given
masks, squared Dice denominator, VisCy's empty pools, per-channel pools, reduction
"sum") against the float64 reference, value and gradient, on every device; opcheck
of the new option combinations."""

from __future__ import annotations

import itertools

import pytest
import torch

import spotlight_ops as so
from conftest import DEVICES
from helpers import packed_options

SOFT_MASKS = ["clamped", "unclamped", "viscy"]
REDUCTIONS = ["batch", "mean", "sum", "none"]


def edge_batch(dtype=torch.float64, channels=2, seed=0):
    """[4, C, 3, 5, 6] around T = 0: ties at T (values on a 0.25 grid), one sample with
    an empty mask (all below T), one with a full mask, P crossing T +- 1."""
    gen = torch.Generator().manual_seed(seed)
    shape = (4, channels, 3, 5, 6)
    y = (torch.randint(-6, 7, shape, generator=gen).double() * 0.25)
    y[1] = -0.5 - torch.rand(shape[1:], generator=gen, dtype=torch.float64)  # empty
    y[2] = 0.25 + torch.rand(shape[1:], generator=gen, dtype=torch.float64)  # full
    p = 3.0 * torch.rand(shape, generator=gen, dtype=torch.float64) - 1.5
    return p.to(dtype), y.to(dtype)


def run_both(device, p, y, **kw):
    """(value, grad_pred, grad_target) of the op on `device` and of the float64 reference."""
    out = []
    for fn, dev in ((so.loss, device), (so.reference.loss, "cpu")):
        pp = p.detach().to(dev).requires_grad_()
        yy = y.detach().to(dev).requires_grad_()
        args = dict(kw)
        if isinstance(args.get("mask"), torch.Tensor):
            args["mask"] = args["mask"].to(dev)
        if isinstance(args.get("threshold"), torch.Tensor):
            args["threshold"] = args["threshold"].to(dev)
        value = fn(pp, yy, **args)
        value.backward(torch.linspace(0.5, 1.5, value.numel(), dtype=value.dtype, device=dev).reshape(value.shape))
        out.append((value.detach().cpu(), pp.grad.cpu(), yy.grad.cpu()))
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("soft_mask,dice_denominator,empty_pools,reduction",
                         list(itertools.product(SOFT_MASKS, ["linear", "squared"], ["spotlight", "viscy"],
                                                REDUCTIONS)))
def test_variants_match_reference_float64(device, soft_mask, dice_denominator, empty_pools, reduction):
    p, y = edge_batch()
    # Cycle the mask source and the pooling through the product, so every pair meets.
    case = SOFT_MASKS.index(soft_mask) + 3 * REDUCTIONS.index(reduction)
    mask_rule = ["greater", "greater_equal"][case % 2]
    per_channel = case % 3 == 0
    mask = (y > 0.3) if case % 5 == 0 else None
    kw = dict(threshold=0.0, lam=0.3, k=-0.9, eps=1e-6, soft_mask=soft_mask, mask=mask, mask_rule=mask_rule,
              dice_denominator=dice_denominator, empty_pools=empty_pools, per_channel=per_channel,
              reduction=reduction, mse_normalization=["foreground", "all"][case % 2])
    (v, gp, gt), (rv, rgp, rgt) = run_both(device, p, y, **kw)
    assert v.shape == rv.shape
    torch.testing.assert_close(v, rv, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gp, rgp, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(gt, rgt, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,rtol", [(torch.float32, 2e-5), (torch.bfloat16, 2e-2)])
def test_variants_in_reduced_precision(device, dtype, rtol):
    p, y = edge_batch(dtype)
    kw = dict(threshold=0.0, soft_mask="viscy", mask_rule="greater_equal", empty_pools="viscy", per_channel=True,
              reduction="mean")
    got = so.loss(p.to(device), y.to(device), **kw).cpu()
    want = so.reference.loss(p.double(), y.double(), **kw)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), want, rtol=rtol, atol=1e-6)


def test_soft_masks_differ_where_published():
    """Each soft mask is the formula of SPEC 11, read off the loss with lam = 0 and a full mask."""
    x = torch.linspace(-2, 2, 41, dtype=torch.float64).reshape(1, -1)
    k = -0.95
    raw = (x - k * x) / (k - 2 * k * x.abs() + 1)
    clamped_raw = (x.clamp(-1, 1) - k * x.clamp(-1, 1)) / (k - 2 * k * x.clamp(-1, 1).abs() + 1)
    expected = {"clamped": 0.5 * (1 + clamped_raw), "unclamped": 0.5 * (1 + raw), "viscy": raw.clamp(0, 1)}
    y = torch.ones_like(x)  # M = 1 everywhere: Dice = 1 - 2 sum(S) / (sum(S) + n + eps)
    n = x.numel()
    for name, s in expected.items():
        got = so.loss(x, y, 0.0, lam=0.0, k=k, eps=0.0, soft_mask=name)
        want = 1 - 2 * s.sum() / (s.sum() + n)
        torch.testing.assert_close(got, want, rtol=1e-14, atol=0)
    # Outside [0, 1] without the clamp (towards -0.013 and 1.013 as |x| grows).
    assert -0.007 < expected["unclamped"].min() < -0.006 and 1.006 < expected["unclamped"].max() < 1.007


def test_given_mask_replaces_the_rule_and_threshold_still_centres_the_soft_mask():
    p, y = edge_batch()
    mask = torch.rand(y.shape, generator=torch.Generator().manual_seed(3)) > 0.5
    got = so.loss(p, y, 0.2, mask=mask, reduction="none")
    want = so.reference.loss(p, y, 0.2, mask=mask, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    # The mask alone decides M: the target's values no longer matter to Dice.
    with_other_target = so.loss(p, y + 10.0, 0.2, lam=0.0, mask=mask, reduction="none")
    torch.testing.assert_close(with_other_target, so.loss(p, y, 0.2, lam=0.0, mask=mask, reduction="none"))


def test_mask_rule_counts_ties():
    y = torch.tensor([[0.0, 0.0, 1.0, -1.0]], dtype=torch.float64)
    p = torch.zeros_like(y)
    # lam = 1, foreground MSE: mean of (Y - P)^2 over the mask.
    assert so.loss(p, y, 0.0, lam=1.0).item() == pytest.approx(1.0)  # M = {1.0}
    assert so.loss(p, y, 0.0, lam=1.0, mask_rule="greater_equal").item() == pytest.approx(1.0 / 3.0)


def test_viscy_empty_pools_policy_by_hand():
    """Pool 0 has no foreground (plain MSE, no Dice), pool 1 a full mask (no Dice), pool 2 both."""
    y = torch.tensor([[-1.0, -2.0], [1.0, 2.0], [1.0, -1.0]], dtype=torch.float64)
    p = torch.tensor([[0.0, 0.0], [0.5, 0.5], [0.5, 0.0]], dtype=torch.float64)
    lam, eps, k = 0.5, 1e-6, -0.95
    mse = [(1 + 4) / 2, (0.25 + 2.25) / (2 + eps), 0.25 / (1 + eps)]
    s = so.reference._soft(p[2], k, "clamped")
    dice2 = 1 - 2 * s[0] / (s.sum() + 1 + eps)
    want = lam * sum(mse) / 3 + (1 - lam) * dice2
    got = so.loss(p, y, 0.0, lam=lam, k=k, eps=eps, empty_pools="viscy", reduction="mean")
    assert got.item() == pytest.approx(want.item(), rel=1e-13)
    # No pool qualifies for Dice: the Dice term is 0.
    got = so.loss(p[:2], y[:2], 0.0, lam=lam, empty_pools="viscy", reduction="mean")
    assert got.item() == pytest.approx(lam * (mse[0] + mse[1]) / 2, rel=1e-13)


def test_per_channel_pools_shape_and_values():
    p, y = edge_batch(channels=3)
    got = so.loss(p, y, 0.0, per_channel=True, reduction="none")
    assert got.shape == (4, 3)
    for c in range(3):
        torch.testing.assert_close(got[:, c], so.loss(p[:, c], y[:, c], 0.0, reduction="none"), rtol=1e-14, atol=0)
    # Otsu per (sample, channel).
    got = so.loss(p, y, per_channel=True, reduction="none")
    want = so.loss(p.reshape(12, -1), y.reshape(12, -1), reduction="none").reshape(4, 3)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_reduction_sum_is_the_sum_of_the_per_sample_losses():
    p, y = edge_batch()
    none = so.loss(p, y, 0.0, reduction="none")
    torch.testing.assert_close(so.loss(p, y, 0.0, reduction="sum"), none.sum(), rtol=1e-14, atol=0)
    torch.testing.assert_close(so.loss(p, y, 0.0, reduction="mean"), none.mean(), rtol=1e-14, atol=0)


@pytest.mark.parametrize("soft_mask", SOFT_MASKS)
@pytest.mark.parametrize("dice_denominator", ["linear", "squared"])
def test_gradcheck_variants(soft_mask, dice_denominator):
    gen = torch.Generator().manual_seed(6)
    y = torch.rand(2, 2, 3, 4, dtype=torch.float64, generator=gen) - 0.3
    y[0, 0] = -1.0  # one empty (sample, channel) pool for VisCy's policy
    # P - T away from 0 and +-1 (the kinks of |x| and of the clamps).
    p = (0.1 + 0.8 * torch.rand(2, 2, 3, 4, dtype=torch.float64, generator=gen)) * torch.where(
        torch.rand(2, 2, 3, 4, generator=gen) > 0.5, 1.0, -1.0)
    p.requires_grad_()
    y.requires_grad_()
    for kw in (dict(empty_pools="viscy", per_channel=True, reduction="mean"), dict(reduction="batch"),
               dict(mask_rule="greater_equal", reduction="none")):
        f = lambda q, r: so.loss(q, r, 0.0, soft_mask=soft_mask, dice_denominator=dice_denominator, **kw)  # noqa: E731
        assert torch.autograd.gradcheck(f, (p, y))


def variant_opcheck_cases(device):
    gen = torch.Generator().manual_seed(0)
    y = (torch.rand(3, 2, 5, dtype=torch.float64, generator=gen) - 0.5).to(device)
    p = (torch.rand(3, 2, 5, dtype=torch.float64, generator=gen) - 0.5).to(device).requires_grad_()
    m = y > 0.1
    ops = torch.ops.spotlight
    for soft_mask, reduction, extra in (
            ("unclamped", "batch", dict(dice_denominator="squared")),
            ("viscy", "mean", dict(mask_rule="greater_equal", empty_pools="viscy", per_channel=True)),
            ("viscy", "none", dict(per_channel=True, mask=m)),
            ("clamped", "sum", dict(mask=m, empty_pools="viscy")),
            ("unclamped", "none", dict(dice_denominator="squared", empty_pools="viscy"))):
        kw = dict(soft_mask=soft_mask, **extra)
        yield ops.loss.default, (p, y, torch.tensor([0.0], dtype=torch.float64, device=device), 0.4, -0.9, 1e-6,
                                 256, "foreground", reduction), kw
        yield ops.loss.default, (p, y, None, 0.5, -0.95, 1e-6, 64, "all", reduction), kw
        options = {name: value for name, value in kw.items() if name != "mask"}
        yield ops._loss_forward.default, (p.detach(), y, None, kw.get("mask"),
                                          packed_options(reduction=reduction, **options)), {}


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_variants(device):
    n = 0
    for op, args, kwargs in variant_opcheck_cases(device):
        torch.library.opcheck(op, args, kwargs)
        n += 1
    assert n == 15


@pytest.mark.parametrize("kw", [{}, dict(soft_mask="viscy", empty_pools="viscy", mask_rule="greater_equal")],
                         ids=["default", "variant"])
def test_otsu_from_cache_gives_the_bits_of_thresholds_then_loss(kw):
    """The CPU op is the header's loss_forward: with many small samples each sample's Otsu and sums
    passes run from cache (whole_samples); the bits equal Otsu thresholds then the loss on them."""
    import os

    n = 4 * (os.cpu_count() or 1)
    gen = torch.Generator().manual_seed(9)
    y = torch.rand(n, 1, 4, 16, 16, generator=gen) ** 3
    p = torch.rand(n, 1, 4, 16, 16, generator=gen).requires_grad_()
    for reduction in ("none", "batch"):
        fused = so.loss(p, y, reduction=reduction, **kw)
        given = so.loss(p, y, so.otsu_threshold(y), reduction=reduction, **kw)
        assert torch.equal(fused, given)

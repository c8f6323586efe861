"""The MSE term of the fused loss (``mse_term``, SPEC 11-12, docs/collapse.md): ``"masked"`` (the paper)
or ``"plain"`` (every voxel), and the trainer's criterion built from it: one fused op, bit for bit the
``"trained"`` preset."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import spotlight_ops as so
from spotlight_ops import reference
from spotlight_ops.cli import build_parser
from spotlight_ops.training import TrainConfig, make_criterion
from spotlight_ops.training.cli import config_from_args

from conftest import DEVICES


def _batch(device="cpu", channels=2):
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(3, channels, 4, 6, 5, generator=g, dtype=torch.float64)
    target = torch.randn(3, channels, 4, 6, 5, generator=g, dtype=torch.float64)
    return pred.to(device), target.to(device)


def _plain_mse(p, y, reduction: str, per_channel: bool):
    """lam's term of the plain loss by torch's mse_loss: the MSE of each pool, reduced like the loss."""
    if reduction == "batch":
        return torch.nn.functional.mse_loss(p, y)
    pools = p.shape[0] * (p.shape[1] if per_channel else 1)
    per_pool = torch.nn.functional.mse_loss(p, y, reduction="none").reshape(pools, -1).mean(1)
    if reduction == "none":
        return per_pool.reshape(p.shape[:2] if per_channel else p.shape[:1])
    return per_pool.sum() if reduction == "sum" else per_pool.mean()


CASES = list(itertools.product(["batch", "mean", "sum", "none"], [False, True], [False, True]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction,per_channel,given_mask", CASES)
def test_plain_is_lam_mse_plus_the_dice_term_to_1e12(device, reduction, per_channel, given_mask):
    """The issue's definition: loss(p, y, 0.0, mse_term="plain") equals
    lam * mse_loss(p, y) + (1 - lam) * loss(p, y, 0.0, lam=0), value and gradient, in float64."""
    pred, target = _batch(device)
    mask = (target > 0.3) if given_mask else None
    lam = 0.3
    options = dict(reduction=reduction, per_channel=per_channel, mask=mask, k=-0.9)
    p1 = pred.clone().requires_grad_()
    got = so.loss(p1, target, 0.0, lam=lam, mse_term="plain", **options)
    p2 = pred.clone().requires_grad_()
    expected = lam * _plain_mse(p2, target, reduction, per_channel) + (1 - lam) * so.loss(p2, target, 0.0, lam=0.0,
                                                                                          **options)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    weights = torch.linspace(0.5, 1.5, got.numel(), dtype=torch.float64, device=device).reshape(got.shape)
    (g1,) = torch.autograd.grad((got * weights).sum(), p1)
    (g2,) = torch.autograd.grad((expected * weights).sum(), p2)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-15)
    # and the independent float64 reference, value and gradient
    p3 = pred.cpu().clone().requires_grad_()
    ref = reference.loss(p3, target.cpu(), 0.0, lam=lam, mse_term="plain",
                         **{**options, "mask": None if mask is None else mask.cpu()})
    torch.testing.assert_close(got.cpu(), ref.detach(), rtol=1e-12, atol=1e-12)
    (g3,) = torch.autograd.grad((ref * weights.cpu()).sum(), p3)
    torch.testing.assert_close(g1.cpu(), g3, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("soft_mask,empty_pools", [("unclamped", "spotlight"), ("viscy", "viscy")])
def test_plain_on_the_variant_path_and_the_target_gradient(soft_mask, empty_pools):
    pred, target = _batch()
    y = target.clone().requires_grad_()
    p = pred.clone().requires_grad_()
    options = dict(mse_term="plain", soft_mask=soft_mask, empty_pools=empty_pools, dice_denominator="squared",
                   reduction="mean", per_channel=True)
    got = so.loss(p, y, 0.0, lam=0.6, **options)
    ref_p, ref_y = pred.clone().requires_grad_(), target.clone().requires_grad_()
    ref = reference.loss(ref_p, ref_y, 0.0, lam=0.6, **options)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.autograd.grad(got, (p, y)), torch.autograd.grad(ref, (ref_p, ref_y)),
                               rtol=1e-10, atol=1e-14)


def test_mse_normalization_applies_to_the_masked_term_only():
    pred, target = _batch()
    plain = so.loss(pred, target, 0.0, mse_term="plain")
    assert torch.equal(plain, so.loss(pred, target, 0.0, mse_term="plain", mse_normalization="all"))
    assert not torch.equal(so.loss(pred, target, 0.0), so.loss(pred, target, 0.0, mse_normalization="all"))


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def test_trainer_default_is_the_trained_preset_bit_for_bit_in_one_fused_op():
    pred, target = _batch(channels=1)
    pred, target = pred.float(), target.float()
    criterion = make_criterion(TrainConfig())
    preset = so.SpotlightLoss.from_preset("trained")
    assert criterion.options() == preset.options()
    p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    with _Ops() as ops:
        got = criterion(p1, target)
        got.backward()
    expected = preset(p2, target)
    expected.backward()
    assert torch.equal(got, expected) and torch.equal(p1.grad, p2.grad)
    assert ops.names.count("spotlight._loss_forward") == 1 and ops.names.count("spotlight._loss_backward") == 1
    assert not [n for n in ops.names if "mse" in n], ops.names  # no separate MSE
    # the preset is the trained objective: lam * MSE over every voxel + (1 - lam) * Dice at T = 0
    lam = 0.5
    composite = lam * torch.nn.functional.mse_loss(pred, target) + (1 - lam) * so.loss(pred, target, 0.0, lam=0.0)
    torch.testing.assert_close(expected.detach(), composite, rtol=1e-6, atol=1e-7)


def test_masked_term_through_the_trainer_is_the_papers_loss_bit_for_bit():
    pred, target = _batch(channels=1)
    got = make_criterion(TrainConfig(loss="spotlight", mse_term="masked", lam=0.3, k=-0.9))(pred, target)
    assert torch.equal(got, so.loss(pred, target, threshold=0.0, lam=0.3, k=-0.9))


def test_mse_term_flag_and_its_errors():
    assert TrainConfig().mse_term == "plain" and TrainConfig().preset == "trained"
    assert TrainConfig(preset="spotlight").mse_term == "masked"  # the paper's loss
    args = build_parser().parse_args(["train", "--train-csv", "x.csv", "--mse-term", "masked"])
    assert config_from_args(args).mse_term == "masked"
    with pytest.raises(ValueError, match="^spotlight: mse_term must be 'masked' or 'plain', got 'foreground'$"):
        TrainConfig(mse_term="foreground")

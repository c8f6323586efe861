"""Spotlight's MSE term (``mse_term``, docs/collapse.md): plain (every voxel, default) or masked (the paper)."""

from __future__ import annotations

import pytest
import torch

import spotlight_ops
from spotlight_ops import reference
from spotlight_ops.cli import build_parser
from spotlight_ops.training import TrainConfig, make_criterion
from spotlight_ops.training.cli import config_from_args


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 1, 4, 8, 8, generator=g, dtype=torch.float64), \
        torch.randn(2, 1, 4, 8, 8, generator=g, dtype=torch.float64)


def test_plain_term_is_lam_mse_plus_dice_against_the_reference():
    pred, target = _batch()
    criterion = make_criterion(TrainConfig(loss="spotlight", mse_term="plain", lam=0.3, k=-0.9))
    mask = target > 0
    soft = reference.soft_mask(pred, torch.zeros(2, dtype=torch.float64), k=-0.9)
    expected = 0.3 * torch.mean((pred - target) ** 2) + 0.7 * reference.soft_dice(soft, mask)
    torch.testing.assert_close(criterion(pred, target), expected)
    p = pred.clone().requires_grad_()
    criterion(p, target).backward()
    q = pred.clone().requires_grad_()
    (0.3 * torch.mean((q - target) ** 2) + 0.7 * reference.loss(q, target, threshold=0.0, lam=0.0, k=-0.9)).backward()
    torch.testing.assert_close(p.grad, q.grad)


def test_masked_term_is_the_papers_loss_bit_for_bit():
    pred, target = _batch()
    got = make_criterion(TrainConfig(loss="spotlight", mse_term="masked", lam=0.3, k=-0.9))(pred, target)
    assert torch.equal(got, spotlight_ops.loss(pred, target, threshold=0.0, lam=0.3, k=-0.9))


def test_mse_term_default_flag_and_errors():
    assert TrainConfig().mse_term == "plain"
    args = build_parser().parse_args(["train", "--train-csv", "x.csv", "--mse-term", "masked"])
    assert config_from_args(args).mse_term == "masked"
    with pytest.raises(ValueError, match="mse_term"):
        TrainConfig(mse_term="foreground")

"""Foreground fractions of the training batch (logged every row) and the collapse warning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spotlight_ops import reference
from spotlight_ops.training import train
from spotlight_ops.training.log import read_log
from spotlight_ops.training.monitor import foreground_fractions

from _training_helpers import tiny_config, tiny_dataset


def test_fractions_against_numpy():
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(3, 1, 4, 6, 5, generator=g), torch.randn(3, 1, 4, 6, 5, generator=g) + 0.3
    got = foreground_fractions(pred, target, 0.25).tolist()
    assert got == pytest.approx([float(np.mean(pred.numpy() > 0.25)), float(np.mean(target.numpy() > 0.25))],
                                abs=1e-7)
    per_sample = torch.tensor([0.0, 1.0, -1.0])
    p, y = pred.numpy(), target.numpy()
    t = per_sample.numpy()[:, None, None, None, None]
    got = foreground_fractions(pred, target, per_sample).tolist()
    assert got == pytest.approx([float(np.mean(p > t)), float(np.mean(y > t))], abs=1e-7)
    otsu = reference.otsu_threshold(target.double()).numpy()[:, None, None, None, None]
    got = foreground_fractions(pred, target, None).tolist()  # each target sample's own Otsu threshold
    assert got == pytest.approx([float(np.mean(p > otsu)), float(np.mean(y > otsu))], abs=1e-6)


def test_fraction_errors_name_the_argument():
    x = torch.zeros(2, 1, 2, 2, 2)
    with pytest.raises(ValueError, match="same shape"):
        foreground_fractions(x, torch.zeros(2, 1, 2, 2, 3), 0.0)
    with pytest.raises(ValueError, match="threshold must hold one value per sample"):
        foreground_fractions(x, x, torch.zeros(3))


def test_training_logs_the_batch_fractions(tmp_path):
    data = tiny_dataset(tmp_path / "data", n_train=2, n_test=0)
    train(tiny_config(data["train"], tmp_path / "run", iterations=3))
    rows = read_log(tmp_path / "run" / "log.csv")
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert 0.0 <= r["fg_fraction_pred"] <= 1.0 and 0.0 < r["fg_fraction_target"] < 1.0

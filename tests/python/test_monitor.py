"""Foreground fractions of the training batch (logged every row) and the collapse warning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spotlight_ops import reference
from spotlight_ops.training import TrainConfig, train
from spotlight_ops.training.log import read_log
from spotlight_ops.training.monitor import CollapseMonitor, collapse_hint, foreground_fractions

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


def _feed(monitor: CollapseMonitor, pred, target) -> list:
    return [m for i, (p, t) in enumerate(zip(pred, target), 1) if (m := monitor.update(i, p, t))]


def test_collapse_above_T_warns_once_with_what_to_try():
    rng = np.random.default_rng(0)
    target = rng.uniform(0.15, 0.55, 300)
    pred = np.concatenate([np.linspace(0.3, 0.99, 30), np.full(270, 0.999)])  # the measured collapse's shape
    monitor = CollapseMonitor(window=50, hint=collapse_hint(TrainConfig(loss="spotlight", mse_term="masked")))
    warnings = _feed(monitor, pred, target)
    assert len(warnings) == 1
    assert "above the threshold T" in warnings[0] and "collapsing above T" in warnings[0]
    assert "--mse-term plain" in warnings[0] and "docs/collapse.md" in warnings[0]
    assert monitor.warnings == warnings


def test_collapse_below_T_warns_and_rearms_after_recovery():
    target = np.full(400, 0.3)
    pred = np.concatenate([np.full(100, 0.001), np.full(150, 0.3), np.full(150, 0.001)])
    warnings = _feed(CollapseMonitor(window=50), pred, target)
    assert len(warnings) == 2 and all("collapsing below T" in w for w in warnings)


def test_healthy_runs_do_not_warn():
    rng = np.random.default_rng(1)
    target = rng.uniform(0.14, 0.55, 1500)  # batch-to-batch spread of the real pair's patches
    # an MSE run: early overshoot to 2x the target's fraction, then noisy agreement
    pred = np.clip(target * np.concatenate([np.linspace(2.0, 1.0, 200), np.ones(1300)])
                   + rng.normal(0, 0.08, 1500), 0, 1)
    assert _feed(CollapseMonitor(window=50), pred, target) == []
    # a Spotlight run that keeps its foreground a little tighter than the target's
    assert _feed(CollapseMonitor(window=50), np.clip(0.7 * target, 0, 1), target) == []


def test_window_must_fill_and_non_finite_values_are_ignored():
    monitor = CollapseMonitor(window=5)
    assert [monitor.update(i, 1.0, 0.3) for i in range(4)] == [None] * 4
    assert monitor.update(4, float("nan"), 0.3) is None and monitor.gap() is None
    assert monitor.update(5, 1.0, 0.3) is not None


def test_monitor_arguments_are_checked():
    with pytest.raises(ValueError, match="window"):
        CollapseMonitor(window=0)
    with pytest.raises(ValueError, match="odds_ratio"):
        CollapseMonitor(odds_ratio=1.0)


def test_collapsing_run_warns_on_stderr(tmp_path, capsys, monkeypatch):
    import spotlight_ops.training.trainer as trainer

    class Collapsed(trainer.FNet):  # a model stuck above T: what the paper's loss converges to on real data
        def forward(self, x):
            return super().forward(x) * 0 + 5.0 + 0 * x

    monkeypatch.setattr(trainer, "FNet", Collapsed)
    data = tiny_dataset(tmp_path / "data", n_train=2, n_test=0)
    train(tiny_config(data["train"], tmp_path / "run", iterations=60, checkpoint_every=60, mse_term="masked"))
    err = capsys.readouterr().err
    assert "training is collapsing above T" in err and "--mse-term plain" in err

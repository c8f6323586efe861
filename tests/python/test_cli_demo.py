"""The ``spotlight`` command line and the end-to-end ``spotlight demo --quick``."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from spotlight_ops.cli import build_parser, main
from spotlight_ops.data import read_volume
from spotlight_ops.demo import QUICK, summarize

from _training_helpers import CLI, subprocess_env


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for command in ("train", "predict", "demo", "evaluate"):
        assert command in text
    assert main([]) == 2  # no command: help and a usage error


def test_summary():
    target = np.linspace(0, 1, 1000).reshape(10, 10, 10)
    mask = np.zeros(target.shape, np.uint16)
    mask[5:] = 1
    row = summarize("m", [np.where(mask > 0, target, -1.0)], [target], [mask])
    assert row["background_mean"] == -1.0 and row["background_std"] == 0.0
    assert row["background_above_threshold"] == 0.0 and np.isnan(row["pearson_background"])
    # at the display's floor (T - std = -1) the background is black in every zone
    assert row["shown_rim"] == row["shown_near"] == row["shown_far"] == 0.0
    # the window is [-1, p99.8 of the target]; zones by distance to the nuclei (z >= 5 here):
    # rim z = 3, 4 (distance 1, 2), near z = 1, 2 (3, 4), far z = 0 (5)
    background = np.zeros(target.shape)
    background[0], background[1:3], background[3:5] = 0.5, -0.5, 2.0
    bright = summarize("b", [np.where(mask > 0, target, background)], [target], [mask])
    hi = np.percentile(target, 99.8)
    assert bright["shown_far"] == pytest.approx(1.5 / (hi + 1))
    assert bright["shown_near"] == pytest.approx(0.5 / (hi + 1))
    assert bright["shown_rim"] == 1.0  # clipped at the window's top
    assert bright["background_above_threshold"] == pytest.approx(0.6)


def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([*CLI, "demo", "--quick", "--out", str(out), "--no-progress", "--num-threads", "1"],
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (out / "report.md").read_text()
    assert "| model | background shown: rim | near nuclei | far |" in report
    # what was measured, where and when; the verdict is the evaluation's, with its numbers and intervals
    assert "Measured with `spotlight demo --quick --out" in report and "load average" in report
    assert " CPUs, torch " in report
    evaluation = (out / "evaluation" / "report.md").read_text()
    verdict = report[report.index("## Verdict"):report.index("## Evaluation")]
    assert any(v in verdict for v in ("pattern holds", "pattern does not hold", "Not distinguishable"))
    parts = [line for line in verdict.splitlines() if line.startswith("- ") and " — " in line]
    assert len(parts) == 3 and all("95% interval" in line for line in parts)
    assert all(line in evaluation for line in parts)  # the evaluation's own lines, one implementation
    assert "Intervals: 95% paired bootstrap" in verdict and "not the randomness of training" in verdict
    assert "the targets themselves score AP@0.5" in report
    # the evaluation's own tables: the summary and the differences with their intervals
    assert "| model | PSNR dB | fg PSNR dB |" in report and "| spotlight | mse | mean AP |" in report
    assert "Segmentation tuned on the targets" in evaluation
    assert "paper's pattern" in result.stdout and "95% interval" in result.stdout
    assert "| mse |" in report and "| spotlight |" in report
    # the hyperparameters are the trained configs' (runs/spotlight/config.yaml), not the demo's literals
    from spotlight_ops.training import TrainConfig
    from spotlight_ops.training.config import read_yaml

    trained = TrainConfig.from_dict(read_yaml(out / "runs" / "spotlight" / "config.yaml"))
    assert f"Spotlight with lam {trained.lam:g}, k {trained.k:g}," in report
    assert f"MSE term {trained.mse_term!r}" in report and f"{trained.iterations} Adam iterations" in report
    for picture in ("slices_00.png", "background_histogram.png"):
        assert (out / picture).stat().st_size > 1000 and f"]({picture})" in report
    metrics = json.loads((out / "metrics.json").read_text())
    assert {r["model"] for r in metrics["rows"]} == {"target (ground truth)", "mse", "spotlight"}
    assert all(np.isfinite(r["pearson_background"]) for r in metrics["rows"][1:])
    for loss in ("mse", "spotlight"):
        assert (out / "runs" / loss / "model.pt").is_file()
        prediction = read_volume(out / "predictions" / loss / "scene_003_prediction.tif")
        assert prediction.shape == tuple(QUICK["shape"])
    # a second run continues (here: skips) the finished trainings instead of starting over
    again = subprocess.run([*CLI, "demo", "--quick", "--out", str(out), "--no-progress", "--num-threads", "1"],
                           env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("already finished") == 2


def test_summary_of_a_volume_without_nuclei_and_of_a_constant_prediction():
    target = np.linspace(-2, 2, 1000).reshape(10, 10, 10)
    empty = np.zeros(target.shape, np.uint16)
    row = summarize("m", [np.full(target.shape, 0.5)], [target], [empty])
    # no nucleus: the whole volume is far background (not zones measured from a corner)
    assert np.isnan(row["shown_rim"]) and np.isnan(row["shown_near"])
    assert row["shown_far"] == pytest.approx(1.5 / (np.percentile(target, 99.8) + 1))
    # a zone missing from one volume is averaged over the others; other NaNs stay NaN
    mask = np.zeros(target.shape, np.uint16)
    mask[5:] = 1
    two = summarize("m", [np.full(target.shape, 0.5), np.full(target.shape, 0.5)], [target, target], [empty, mask])
    assert not np.isnan(two["shown_rim"])
    assert np.isnan(two["pearson_background"])  # a constant prediction has no correlation


def test_the_installed_command_is_the_torch_free_dispatcher():
    """``spotlight`` (pyproject's entry point) is spotlight_cli:main, and the wheel ships that package."""
    import importlib
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    module, _, function = project["project"]["scripts"]["spotlight"].partition(":")
    assert (module, function) == ("spotlight_cli", "main")
    assert "python/spotlight_cli" in project["tool"]["scikit-build"]["wheel"]["packages"]
    assert getattr(importlib.import_module(module), function) is main  # spotlight_ops.cli re-exports it

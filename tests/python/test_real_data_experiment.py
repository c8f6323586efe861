"""Smoke test of benchmarks/real_data_experiment.py: tiny iterations on the real pair (skips without it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import REPO, shared_data_dir

SCRIPT = REPO / "benchmarks" / "real_data_experiment.py"


def _script():
    spec = importlib.util.spec_from_file_location("real_data_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


needs_pair = pytest.mark.skipif(shared_data_dir() is None or not (shared_data_dir() / "fnet_sample").is_dir(),
                                reason="real data fnet_sample not found")


def _tiny_run(out: Path, docs: Path, *flags: str) -> None:
    """The script on 2 iterations of seed 0 (one budget, no sweep), with ``flags`` added."""
    assert _script().main(["--out", str(out), "--docs", str(docs), "--iterations", "2", "--early", "2",
                           "--eval-every", "2", "--seeds", "0", "--no-sweep", *flags]) == 0


def test_skips_with_a_message_without_the_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPOTLIGHT_DATA", str(tmp_path / "nowhere"))
    assert _script().main(["--out", str(tmp_path / "out"), "--docs", str(tmp_path / "e.md")]) == 0
    assert "skipped: fnet_sample not found" in capsys.readouterr().out
    assert not (tmp_path / "e.md").exists()


@needs_pair
def test_tiny_run_writes_the_page(tmp_path):
    docs = tmp_path / "docs" / "experiments.md"
    out = tmp_path / "out"
    _tiny_run(out, docs, "--arms", "mse", "spotlight")
    page = docs.read_text()
    assert "## After 2 iterations" in page and "| mse |" in page and "| spotlight |" in page
    assert "target's own" in page  # no masks: segmentation against the target's segmentation, said so
    assert (docs.parent / "figures" / "experiments" / "heldout_fraction.png").is_file()
    assert sorted(p.name for p in (out / "predictions" / "2").iterdir()) == ["mse_s0.tif", "spotlight_s0.tif"]


@needs_pair
def test_averaged_run_writes_its_own_page_and_figures(tmp_path):
    from spotlight_ops.files.checkpoint import load_checkpoint

    docs = tmp_path / "docs" / "averaged.md"
    out = tmp_path / "out"
    _tiny_run(out, docs, "--arms", "mse", "--ema-decay", "0.9")
    page = docs.read_text()
    assert "--ema-decay 0.9" in page and "moving average of the weights" in page
    assert (docs.parent / "figures" / "averaged" / "heldout_fraction.png").is_file()
    assert not (docs.parent / "figures" / "experiments").exists()
    assert "ema" in load_checkpoint(out / "runs" / "mse_s0" / "checkpoints" / "checkpoint_latest.pt")

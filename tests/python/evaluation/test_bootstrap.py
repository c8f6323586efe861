"""Intervals of model-versus-model differences: the nucleus cells, the nested paired bootstrap, the verdicts."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
from evaluation_scenes import nuclei_scene
from scipy import ndimage, stats

from spotlight_ops.evaluation import check_pattern, cli, run_evaluation
from spotlight_ops.evaluation.bootstrap import Difference, model_differences
from spotlight_ops.evaluation.nucleus_units import UnitSums, nucleus_cells
from spotlight_ops.evaluation.options import EvaluationOptions
from spotlight_ops.evaluation.volume_metrics import build_reference, prediction_row

FAST = dict(sweep_fractions=(), progress=False, plots=False, morphology=False, tune_segmentation=False)


def test_cells_are_the_voronoi_cells_of_the_nuclei():
    labels = np.zeros((1, 1, 10), np.int32)
    labels[0, 0, 1], labels[0, 0, 8] = 5, 9
    cells, cell_of, count = nucleus_cells(labels, (1, 1, 1))
    assert count == 2 and cell_of == {5: 0, 9: 1}
    assert cells.ravel().tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]  # each voxel in the cell of its nearer nucleus
    empty, _, one = nucleus_cells(np.zeros((2, 3, 4), np.int32), (1, 1, 1))
    assert one == 1 and not empty.any()


def test_every_cell_once_gives_the_rows_numbers():
    """The per-cell sums add up to the row's psnr, psnr_fg and mean_ap (an independent computation)."""
    labels, target = nuclei_scene(seed=3)
    opts = EvaluationOptions(morphology=False, segmentation={"min_volume": 10})
    reference, _ = build_reference(target, labels, opts)
    for prediction in (ndimage.gaussian_filter(target, 1.5) + 30.0, np.where(labels > 0, target, 80.0)):
        row, _, units = prediction_row(reference, prediction, opts, with_frc=False, with_cellpose=False,
                                       with_units=True)
        assert units.count == len(np.unique(labels)) - 1
        psnr, psnr_fg, mean_ap = units.metrics(np.ones((1, units.count)))[0]
        assert psnr == pytest.approx(row["psnr"], rel=1e-12) and psnr_fg == pytest.approx(row["psnr_fg"], rel=1e-12)
        assert mean_ap == pytest.approx(row["mean_ap"], rel=1e-12)


def _random_units(rng, cells, scale=1.0, thresholds=3):
    pixels = np.stack([rng.gamma(2.0, scale, cells), rng.integers(50, 100, cells).astype(float),
                       rng.gamma(2.0, scale, cells), rng.integers(10, 30, cells).astype(float)], axis=1)
    tp = rng.integers(0, 2, (cells, thresholds)).astype(float)
    return UnitSums(10.0, pixels, tp, rng.integers(0, 2, (cells, thresholds)).astype(float), 1.0 - tp)


def test_one_volume_matches_scipy_bootstrap_over_its_cells():
    rng = np.random.default_rng(0)
    a, b = _random_units(rng, 40), _random_units(rng, 40, scale=1.3)
    ours = model_differences({"a": [a], "b": [b]}, [("a", "b")], n_resamples=20000)

    def cells_statistic(k):  # scipy draws cell indices of the one volume; the volume is made of those cells
        def f(index, axis=-1):
            index = np.atleast_2d(index)
            weights = np.stack([np.bincount(row, minlength=40) for row in index]).astype(float)
            return (a.metrics(weights) - b.metrics(weights))[:, k]
        return f
    for k, difference in enumerate(ours):
        reference = stats.bootstrap((np.arange(40),), cells_statistic(k), vectorized=True, n_resamples=20000,
                                    method="percentile", rng=np.random.default_rng(1)).confidence_interval
        width = reference.high - reference.low
        assert width > 0
        assert difference.low == pytest.approx(reference.low, abs=0.05 * width)
        assert difference.high == pytest.approx(reference.high, abs=0.05 * width)


@pytest.mark.parametrize("level", ["volumes", "seeds"])
def test_volumes_or_seeds_of_one_cell_match_scipy_bootstrap_over_them(level):
    """One cell per volume: the nested draw is scipy's one-sample bootstrap of the volumes (or the seeds)."""
    rng = np.random.default_rng(2)
    a = [_random_units(rng, 1) for _ in range(12)]
    b = [_random_units(rng, 1, scale=1.5) for _ in range(12)]
    seeds = tuple(range(12)) if level == "seeds" else None
    ours = model_differences({"a": a, "b": b}, [("a", "b")], training_seeds=seeds, n_resamples=20000)
    per_volume = np.concatenate([x.metrics(np.ones((1, 1))) - y.metrics(np.ones((1, 1))) for x, y in zip(a, b)])
    for k, difference in enumerate(ours):
        reference = stats.bootstrap((per_volume[:, k],), np.mean, n_resamples=20000, method="percentile",
                                    rng=np.random.default_rng(1)).confidence_interval
        width = reference.high - reference.low
        assert difference.estimate == pytest.approx(per_volume[:, k].mean(), rel=1e-12)
        assert difference.low == pytest.approx(reference.low, abs=0.05 * width)
        assert difference.high == pytest.approx(reference.high, abs=0.05 * width)


def test_the_bootstrap_is_paired_and_reproducible():
    rng = np.random.default_rng(3)
    a = [_random_units(rng, 30) for _ in range(3)]
    # b errs 1.25 times as much in every cell: its PSNR is lower by exactly 10 log10(1.25) in every resample
    b = [UnitSums(u.data_range, u.pixels * [1.25, 1, 1.25, 1], u.tp, u.fp, u.fn) for u in a]
    same = model_differences({"a": a, "b": b}, [("b", "a")], n_resamples=500)
    shift = -10 * math.log10(1.25)
    for d in same[:2]:
        assert d.low == pytest.approx(shift, abs=1e-9) and d.high == pytest.approx(shift, abs=1e-9)
    assert same[2].low == same[2].high == 0.0  # the same nuclei matched: AP equal in every resample
    again = model_differences({"a": a, "b": b}, [("b", "a")], n_resamples=500)
    assert again == same
    c = [_random_units(rng, 30) for _ in range(3)]
    assert model_differences({"a": a, "c": c}, [("c", "a")], n_resamples=500, seed=1) != \
        model_differences({"a": a, "c": c}, [("c", "a")], n_resamples=500, seed=2)


def test_seeds_widen_the_interval_by_the_spread_between_training_runs():
    """Two seeds whose models disagree (+-3 dB), 8 volumes each: resampling the seeds covers the disagreement,
    volumes pooled without seeds average it away."""
    rng = np.random.default_rng(4)
    a = [_random_units(rng, 10) for _ in range(16)]
    b = [UnitSums(u.data_range, u.pixels * ([0.5, 1, 0.5, 1] if k < 8 else [2, 1, 2, 1]), u.tp, u.fp, u.fn)
         for k, u in enumerate(a)]
    pooled = model_differences({"a": a, "b": b}, [("b", "a")], n_resamples=2000)[0]
    seeded = model_differences({"a": a, "b": b}, [("b", "a")], training_seeds=(0,) * 8 + (1,) * 8,
                               n_resamples=2000)[0]
    assert seeded.estimate == pytest.approx(pooled.estimate, abs=1e-12)
    shift = 10 * math.log10(2)
    assert seeded.low == pytest.approx(-shift) and seeded.high == pytest.approx(shift)  # one seed drawn twice
    assert -2 < pooled.low < pooled.high < 2


def _rows(s_fg, m_fg, s_all, m_all, s_ap, m_ap):
    nan = math.nan
    return [{"model": "mse", "threshold_fraction": nan, "psnr": m_all, "psnr_fg": m_fg, "mean_ap": m_ap},
            {"model": "spotlight", "threshold_fraction": nan, "psnr": s_all, "psnr_fg": s_fg, "mean_ap": s_ap}]


def _differences(fg, whole, ap):
    return [Difference("spotlight", "mse", metric, (lo + hi) / 2, lo, hi, 0.95)
            for metric, (lo, hi) in zip(("psnr", "psnr_fg", "mean_ap"), (whole, fg, ap))]


def test_the_pattern_is_judged_by_the_intervals():
    rows = _rows(22.4, 22.3, 28.0, 28.1, 0.21, 0.26)
    unclear = check_pattern(rows, 1.0, _differences((-0.2, 0.4), (-0.3, 0.1), (-0.12, 0.02)), "note")
    assert unclear.verdict == "not distinguishable" and not unclear.holds
    assert "Not distinguishable" in unclear.lines[0] and unclear.lines[-1] == "note"
    assert unclear.lines[1].startswith("Foreground PSNR about equal (within 1 dB): yes")
    assert "Whole-volume PSNR lower for spotlight: not distinguishable" in unclear.lines[2]
    assert "95% interval -0.30 to +0.10" in unclear.lines[2] and "95% interval -0.120 to +0.020" in unclear.lines[3]
    holds = check_pattern(rows, 1.0, _differences((-0.9, 0.9), (-0.3, -0.1), (0.01, 0.1)))
    assert holds.verdict == "holds" and holds.holds
    fails = check_pattern(rows, 1.0, _differences((-0.5, 1.2), (-0.3, -0.1), (-0.2, -0.01)))
    assert fails.verdict == "does not hold" and "not distinguishable" in fails.lines[1] and ": NO" in fails.lines[3]
    assert check_pattern(rows, 1.0, _differences((1.1, 2.0), (-1, -0.5), (0.1, 0.2))).verdict == "does not hold"


def test_the_report_carries_the_intervals(tmp_path):
    """Two models that predict the same: every interval is [0, 0], and the verdict says not distinguishable."""
    labels, target = nuclei_scene(seed=5)
    blurred = ndimage.gaussian_filter(target, 1.2)
    predictions = {"mse": [blurred], "spotlight": [blurred.copy()]}
    evaluation = run_evaluation(predictions, [target], [labels], tmp_path, bootstrap_resamples=2000, **FAST)
    assert evaluation.pattern.verdict == "not distinguishable"
    assert [(d.model, d.baseline) for d in evaluation.differences] == [("spotlight", "mse")] * 3
    report = (tmp_path / "report.md").read_text()
    assert "**Not distinguishable**" in report and "95% interval" in report
    assert "Intervals: 95% paired bootstrap over the nuclei of the volume (2000 resamples, seed 0;" in report
    assert "| spotlight | mse | PSNR |" in report
    assert (tmp_path / "differences.csv").read_text().startswith("model,baseline,metric,difference,low,high")


def test_bad_interval_options_fail_before_any_work(tmp_path):
    labels, target = nuclei_scene(seed=6)
    predictions = {"mse": [target], "spotlight": [target]}
    for options, problem in (({"training_seeds": (0, 1)}, "training_seeds has 2 labels for 1 volumes"),
                             ({"bootstrap_resamples": 10}, "bootstrap_resamples must be an integer >= 100"),
                             ({"confidence_level": 1.0}, r"confidence_level must be in \[0.5, 1\)"),
                             ({"bootstrap_seed": -1}, "bootstrap_seed must be a non-negative integer")):
        with pytest.raises(ValueError, match=problem):
            run_evaluation(predictions, [target], [labels], tmp_path / "out", **options, **FAST)
    assert not (tmp_path / "out").exists()
    parser = cli.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--target", "t.tif", "--pred", "a.tif", "--out", "o", "--training-seeds", "0,0,1",
                              "--bootstrap-resamples", "500", "--confidence", "0.9", "--prediction-units", "target"])
    options = cli.options_from_args(args)
    assert options["training_seeds"] == ("0", "0", "1") and options["bootstrap_resamples"] == 500
    assert options["confidence_level"] == 0.9 and options["prediction_units"] == "target"

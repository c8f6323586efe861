"""The options of :func:`evaluate_models`, validated in one place before any work."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from ._validation import positive
from .frc import FRC_THRESHOLDS
from .matching import IOU_THRESHOLDS
from .pixel_metrics import ssim_window
from .prediction_units import check_prediction_units
from .rescaling import check_range, check_rescale, check_target_norm
from .segmentation import WatershedParams
from .sweep import DEFAULT_FRACTIONS, check_fractions


@dataclass(frozen=True)
class EvaluationOptions:
    """Every knob of the evaluation; the defaults are the conventions of docs/evaluation.md."""

    target_norm: str = "otsu"  # target units: Otsu-standardized as in training (rescaling.py), or "none"
    smooth_threshold: bool = False  # Otsu T of the targets from their smoothed copy (as training can)
    prediction_units: str = "auto"  # "target", "standardized", "zscored", or read (prediction_units.py)
    rescale: str = "none"  # how predictions reach the target's scale (rescaling.py)
    target_range: tuple[float, float] | None = None  # rescale="range": the combined training targets' range
    training_run: str | Path | None = None  # rescale="range": read target_range from this training run
    tune_segmentation: bool | None = None  # None: tune on the targets when masks are given (tuning.py)
    otsu_bins: int = 256  # histogram bins of the target's Otsu threshold (foreground)
    ssim_win_size: int = 7
    bg_percentile: float = 3.0  # MicroSSIM background offset percentile
    frc_bin_delta: int = 5
    frc_threshold: str = "one-seventh"
    pixel_size: float = 1.0  # XY pixel size: FRC resolution is reported in these units
    iou_thresholds: tuple[float, ...] = IOU_THRESHOLDS
    segmentation: WatershedParams = field(default_factory=WatershedParams)
    cellpose_model: str | Path | None = None
    cellpose_diameter: float | None = None
    cellpose_anisotropy: float | None = None
    cellpose_gpu: bool = False
    sweep_fractions: tuple[float, ...] = DEFAULT_FRACTIONS  # empty: no threshold sweep
    morphology: bool = True
    volume_names: tuple[str, ...] | None = None
    psnr_tolerance_db: float = 1.0  # "about equal" foreground PSNR in the pattern check
    training_seeds: tuple | None = None  # per volume: the training run (seed) whose models predicted it (bootstrap.py)
    bootstrap_resamples: int = 9999  # resamples of the intervals of model-versus-model differences
    confidence_level: float = 0.95
    bootstrap_seed: int = 0  # the intervals' random draws: a report is reproducible
    histogram_bins: int = 100
    progress: bool = True
    plots: bool = True

    def __post_init__(self) -> None:
        check_target_norm(self.target_norm)
        check_prediction_units(self.prediction_units)
        check_rescale(self.rescale)
        if self.target_range is not None:
            object.__setattr__(self, "target_range", check_range(self.target_range))
        if self.target_range is not None and self.training_run is not None:
            raise ValueError("give target_range or training_run, not both")
        if self.rescale == "range" and self.target_range is None and self.training_run is None:
            raise ValueError("rescale='range' needs target_range=(lo, hi) or training_run=RUN_FOLDER")
        if self.rescale != "range" and (self.target_range is not None or self.training_run is not None):
            raise ValueError(f"target_range and training_run are for rescale='range', not {self.rescale!r}")
        if self.tune_segmentation not in (None, True, False):
            raise ValueError(f"tune_segmentation must be True, False or None (auto), got {self.tune_segmentation!r}")
        if int(self.otsu_bins) < 2:
            raise ValueError(f"otsu_bins must be at least 2, got {self.otsu_bins}")
        ssim_window((self.ssim_win_size,), self.ssim_win_size)
        if not 0 <= float(self.bg_percentile) < 100:
            raise ValueError(f"bg_percentile must be in [0, 100), got {self.bg_percentile}")
        if int(self.frc_bin_delta) < 1:
            raise ValueError(f"frc_bin_delta must be a positive integer, got {self.frc_bin_delta}")
        if self.frc_threshold not in FRC_THRESHOLDS:
            raise ValueError(f"frc_threshold must be one of {FRC_THRESHOLDS}, got {self.frc_threshold!r}")
        positive("pixel_size", self.pixel_size)
        thresholds = tuple(float(t) for t in self.iou_thresholds)
        if not thresholds or any(not 0 < t <= 1 for t in thresholds):
            raise ValueError(f"iou_thresholds must be a non-empty list of values in (0, 1], got {self.iou_thresholds}")
        object.__setattr__(self, "iou_thresholds", thresholds)
        if isinstance(self.segmentation, dict):
            object.__setattr__(self, "segmentation", WatershedParams(**self.segmentation))
        if not isinstance(self.segmentation, WatershedParams):
            kind = type(self.segmentation).__name__
            raise TypeError(f"segmentation must be a WatershedParams or a dict of its fields, got {kind}")
        object.__setattr__(self, "sweep_fractions", check_fractions(self.sweep_fractions))
        positive("psnr_tolerance_db", self.psnr_tolerance_db, allow_zero=True)
        if int(self.histogram_bins) < 2:
            raise ValueError(f"histogram_bins must be at least 2, got {self.histogram_bins}")
        if self.volume_names is not None:
            object.__setattr__(self, "volume_names", tuple(str(n) for n in self.volume_names))
        if self.training_seeds is not None:
            object.__setattr__(self, "training_seeds", tuple(self.training_seeds))
        if isinstance(self.bootstrap_resamples, bool) or not isinstance(self.bootstrap_resamples, (int, np.integer)) \
                or self.bootstrap_resamples < 100:
            raise ValueError(f"bootstrap_resamples must be an integer >= 100, got {self.bootstrap_resamples!r}")
        if not 0.5 <= float(self.confidence_level) < 1:
            raise ValueError(f"confidence_level must be in [0.5, 1), got {self.confidence_level}")
        if isinstance(self.bootstrap_seed, bool) or not isinstance(self.bootstrap_seed, (int, np.integer)) \
                or self.bootstrap_seed < 0:
            raise ValueError(f"bootstrap_seed must be a non-negative integer, got {self.bootstrap_seed!r}")

    @classmethod
    def from_kwargs(cls, options: dict) -> EvaluationOptions:
        """Builds the options from ``**options``; an unknown name is a TypeError naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"evaluate_models got unknown option(s) {unknown}; known options: {sorted(known)}")
        return cls(**options)

    def with_names(self, count: int) -> EvaluationOptions:
        """Fills in default volume names (``volume_0`` ...) and checks the per-volume lists' lengths."""
        if self.training_seeds is not None and len(self.training_seeds) != count:
            raise ValueError(f"training_seeds has {len(self.training_seeds)} labels for {count} volumes")
        if self.volume_names is None:
            return replace(self, volume_names=tuple(f"volume_{i}" for i in range(count)))
        if len(self.volume_names) != count:
            raise ValueError(f"volume_names has {len(self.volume_names)} names for {count} volumes")
        return self


def describe(options: EvaluationOptions) -> dict:
    """The options as plain values, for the report."""
    out = {}
    for f in fields(options):
        value = getattr(options, f.name)
        if isinstance(value, WatershedParams):
            value = value.as_dict()
        elif isinstance(value, (tuple, np.ndarray)):
            value = list(value)
        out[f.name] = value
    return out

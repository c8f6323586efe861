"""The paper's evaluation of a virtual stain: pixel metrics, FRC, segmentation AP, morphology.

Entry point: :func:`evaluate_models` (also ``spotlight evaluate`` / ``python -m
spotlight_ops.evaluation.cli``). Conventions are written down in docs/evaluation.md and in
each module's docstring.
"""

from __future__ import annotations

from .bootstrap import Difference, model_differences
from .evaluate import Evaluation, evaluate_models, run_evaluation
from .foreground import otsu_foreground
from .frc import FRCResult, checkerboard_split, frc_resolution
from .instances import to_instances
from .matching import IOU_THRESHOLDS, average_precision, iou_matrix, match_instances
from .microssim import MicroSSIMResult, micro_ssim
from .morphology import FEATURES, matched_cosine_distances, nucleus_features
from .options import EvaluationOptions
from .pattern import check_pattern
from .pixel_metrics import pearson, psnr, ssim
from .rescaling import rescale_to_target, target_data_range
from .segmentation import WatershedParams, segment_nuclei
from .sweep import threshold_intensity, threshold_prediction

__all__ = [
    "FEATURES",
    "IOU_THRESHOLDS",
    "Difference",
    "Evaluation",
    "EvaluationOptions",
    "FRCResult",
    "MicroSSIMResult",
    "WatershedParams",
    "average_precision",
    "check_pattern",
    "checkerboard_split",
    "evaluate_models",
    "frc_resolution",
    "iou_matrix",
    "match_instances",
    "matched_cosine_distances",
    "micro_ssim",
    "model_differences",
    "nucleus_features",
    "otsu_foreground",
    "pearson",
    "psnr",
    "rescale_to_target",
    "run_evaluation",
    "segment_nuclei",
    "ssim",
    "target_data_range",
    "threshold_intensity",
    "threshold_prediction",
    "to_instances",
]

"""Does the paper's pattern hold? Spotlight vs MSE on the evaluation rows.

The paper's claim, in the terms of this evaluation (means over volumes, unthresholded
predictions): a model trained with Spotlight, compared with one trained with MSE, has

1. about the same foreground PSNR: ``|psnr_fg(spotlight) - psnr_fg(mse)| <= tolerance_db``;
2. a lower whole-volume PSNR: ``psnr(spotlight) < psnr(mse)`` (it does not reproduce
   the background haze the MSE model learns to copy);
3. a higher segmentation AP: ``mean_ap(spotlight) > mean_ap(mse)`` (AP averaged over
   the IoU thresholds).

Models are found by name, case-insensitively: the first whose name contains
``"spotlight"``, and the first whose name contains ``"mse"`` but not ``"spotlight"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PatternCheck:
    """The verdict and the numbers behind it (``lines`` are ready for the report)."""

    applicable: bool
    holds: bool
    lines: tuple[str, ...]


def main_rows(rows: list[dict]) -> list[dict]:
    """Rows of unthresholded predictions (the sweep rows and the target rows excluded)."""
    return [r for r in rows if r["model"] != "target" and math.isnan(r["threshold_fraction"])]


def model_mean(rows: list[dict], model: str, key: str) -> float:
    """Mean of ``key`` over the volumes of ``model`` (NaNs ignored; NaN if none)."""
    values = np.array([r.get(key, math.nan) for r in rows if r["model"] == model], dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


def find_models(models: list[str]) -> tuple[str | None, str | None]:
    """(spotlight-like name, mse-like name) among ``models``, or None for each missing."""
    spotlight = next((m for m in models if "spotlight" in m.lower()), None)
    mse = next((m for m in models if "mse" in m.lower() and "spotlight" not in m.lower()), None)
    return spotlight, mse


def check_pattern(rows: list[dict], tolerance_db: float = 1.0) -> PatternCheck:
    """Checks the three parts of the pattern on ``rows`` from :func:`evaluate_models`."""
    rows = main_rows(rows)
    models = list(dict.fromkeys(r["model"] for r in rows))
    spotlight, mse = find_models(models)
    if spotlight is None or mse is None:
        return PatternCheck(
            False,
            False,
            (
                "Not checked: the paper's pattern compares a model named like 'spotlight' with one named "
                f"like 'mse', and the models here are {models}.",
            ),
        )
    s_fg, m_fg = model_mean(rows, spotlight, "psnr_fg"), model_mean(rows, mse, "psnr_fg")
    s_all, m_all = model_mean(rows, spotlight, "psnr"), model_mean(rows, mse, "psnr")
    s_ap, m_ap = model_mean(rows, spotlight, "mean_ap"), model_mean(rows, mse, "mean_ap")
    fg_equal = abs(s_fg - m_fg) <= tolerance_db
    whole_lower = s_all < m_all
    ap_higher = s_ap > m_ap
    holds = bool(fg_equal and whole_lower and ap_higher)

    def mark(ok: bool) -> str:
        return "yes" if ok else "NO"

    lines = (
        f"Foreground PSNR about equal (within {tolerance_db:g} dB): {mark(fg_equal)} — "
        f"{spotlight} {s_fg:.2f} dB vs {mse} {m_fg:.2f} dB (difference {s_fg - m_fg:+.2f} dB).",
        f"Whole-volume PSNR lower for {spotlight}: {mark(whole_lower)} — {s_all:.2f} dB vs {m_all:.2f} dB.",
        f"Segmentation AP (mean over IoU thresholds) higher for {spotlight}: {mark(ap_higher)} — "
        f"{s_ap:.3f} vs {m_ap:.3f}.",
    )
    verdict = (
        f"**The paper's pattern holds** for {spotlight} vs {mse}."
        if holds
        else f"**The paper's pattern does not hold** for {spotlight} vs {mse} (see the parts marked NO)."
    )
    return PatternCheck(True, holds, (verdict,) + lines)

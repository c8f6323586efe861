"""Does the paper's pattern hold? Spotlight vs MSE on the evaluation rows.

The paper's claim, in the terms of this evaluation (means over volumes, unthresholded
predictions; differences Spotlight minus MSE): a model trained with Spotlight, compared with
one trained with MSE, has

1. about the same foreground PSNR: ``|psnr_fg(spotlight) - psnr_fg(mse)| <= tolerance_db``;
2. a lower whole-volume PSNR: ``psnr(spotlight) < psnr(mse)`` (it does not reproduce
   the background haze the MSE model learns to copy);
3. a higher segmentation AP: ``mean_ap(spotlight) > mean_ap(mse)`` (AP averaged over
   the IoU thresholds).

With the differences' confidence intervals (:mod:`.bootstrap`; ``evaluate_models`` always
has them) each part is judged by its interval: "yes" when the whole interval is on the
paper's side (part 1: inside ``[-tolerance, tolerance]``), "NO" when the whole interval is on
the other side (part 1: outside it), and "not distinguishable" when it contains 0 (part 1:
when it crosses the tolerance). The pattern holds when every part is "yes", does not hold
when a part is "NO", and is not distinguishable otherwise. Without intervals the point
estimates are compared, and the lines say so.

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
    verdict: str = "not checked"  # "holds", "does not hold", "not distinguishable" or "not checked"


YES, NO, UNCLEAR = "yes", "NO", "not distinguishable"


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


def _judge(low: float, high: float, side: str, tolerance: float = 0.0) -> str:
    """One part's status from its interval: ``side`` is where the paper puts the difference."""
    if side == "within":
        if -tolerance <= low and high <= tolerance:
            return YES
        return NO if high < -tolerance or low > tolerance else UNCLEAR
    if side == "below":
        low, high = -high, -low
    return YES if low > 0 else NO if high < 0 else UNCLEAR


def _part(metric: str, side: str, tolerance: float, observed: float, interval) -> tuple[str, str]:
    """(status, the difference with its interval, or a note that there is none)."""
    digits, unit = (2, " dB") if "psnr" in metric else (3, "")
    if interval is None:
        ok = abs(observed) <= tolerance if side == "within" else observed < 0 if side == "below" else observed > 0
        return (YES if ok else NO), f"difference {observed:+.{digits}f}{unit}, no interval"
    if math.isnan(interval.low):
        return UNCLEAR, f"difference {observed:+.{digits}f}{unit}, interval not measurable"
    return _judge(interval.low, interval.high, side, tolerance), f"difference {interval.text(digits, unit)}"


def check_pattern(rows: list[dict], tolerance_db: float = 1.0, differences=None,
                  interval_note: str = "") -> PatternCheck:
    """Checks the three parts of the pattern on ``rows`` from :func:`evaluate_models`.

    ``differences``: :class:`.bootstrap.Difference` objects (those of the spotlight/mse pair are
    used); ``interval_note``: what the intervals cover, appended as the last line.
    """
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
    found = {d.metric: d for d in differences or () if (d.model, d.baseline) == (spotlight, mse)}
    means = {key: (model_mean(rows, spotlight, key), model_mean(rows, mse, key))
             for key in ("psnr_fg", "psnr", "mean_ap")}
    parts = {
        "psnr_fg": _part("psnr_fg", "within", tolerance_db, means["psnr_fg"][0] - means["psnr_fg"][1],
                         found.get("psnr_fg")),
        "psnr": _part("psnr", "below", 0.0, means["psnr"][0] - means["psnr"][1], found.get("psnr")),
        "mean_ap": _part("mean_ap", "above", 0.0, means["mean_ap"][0] - means["mean_ap"][1], found.get("mean_ap")),
    }
    statuses = [status for status, _ in parts.values()]
    verdict = "holds" if all(s == YES for s in statuses) else "does not hold" if NO in statuses else UNCLEAR
    (s_fg, m_fg), (s_all, m_all), (s_ap, m_ap) = means["psnr_fg"], means["psnr"], means["mean_ap"]
    lines = (
        f"Foreground PSNR about equal (within {tolerance_db:g} dB): {parts['psnr_fg'][0]} — "
        f"{spotlight} {s_fg:.2f} dB vs {mse} {m_fg:.2f} dB, {parts['psnr_fg'][1]}.",
        f"Whole-volume PSNR lower for {spotlight}: {parts['psnr'][0]} — {s_all:.2f} dB vs {m_all:.2f} dB, "
        f"{parts['psnr'][1]}.",
        f"Segmentation AP (mean over IoU thresholds) higher for {spotlight}: {parts['mean_ap'][0]} — "
        f"{s_ap:.3f} vs {m_ap:.3f}, {parts['mean_ap'][1]}.",
    )
    head = {
        "holds": f"**The paper's pattern holds** for {spotlight} vs {mse}: every part is on the paper's side"
                 + (" with its whole interval." if found else " (point estimates only)."),
        "does not hold": f"**The paper's pattern does not hold** for {spotlight} vs {mse}: the parts marked NO are "
                         + ("on the other side with their whole interval." if found else "on the other side."),
        UNCLEAR: f"**Not distinguishable**: this run cannot tell whether the paper's pattern holds for {spotlight} vs "
                 f"{mse}; the intervals of the parts marked '{UNCLEAR}' contain 0 (part 1: cross the tolerance).",
    }[verdict]
    note = (interval_note,) if interval_note else ()
    return PatternCheck(True, verdict == "holds", (head,) + lines + note, verdict)

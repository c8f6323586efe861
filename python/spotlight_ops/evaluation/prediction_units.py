r"""Which units a model's predictions are in, and the map into the evaluation's units.

A prediction comes in one of these units, named by ``prediction_units``:

- ``"target"``: the units of the targets as given (camera counts, say: a copy of the
  target, a model trained on raw targets);
- ``"standardized"``: the target's Otsu-standardized units :math:`(Y - T) / s`, those of
  ``spotlight train`` and ``spotlight predict`` (T, s and the mean per target volume,
  :func:`.rescaling.otsu_standardization`);
- ``"zscored"``: the target's z-scored units :math:`(Y - \bar Y) / s`, those of a model
  trained with ``target_norm: zscore``: mapped to the target's units by :math:`P s + \bar Y`,
  then as ``"target"``. Only given, never read: it differs from ``"standardized"`` by an
  offset of a fraction of a std, which a prediction's misfit does not tell apart.

It is mapped into the evaluation's units (``target_norm``) by the target's own map, so a
prediction and its target always meet in the same units: under ``target_norm="otsu"`` a
``"target"`` prediction becomes :math:`(P - T) / s` and a ``"standardized"`` one is taken as
it is; under ``target_norm="none"`` a ``"standardized"`` one becomes :math:`P s + T`. An exact
copy of the target, in either units, then scores PSNR inf and SSIM 1.

``"auto"`` (default) reads each model's units from its predictions. With :math:`Z = (Y - T)/s`,
the misfit of each reading over all the model's volumes, in target stds (rms):

.. math::
    e_\text{target} = \sqrt{\textstyle\frac{1}{V}\sum_v \overline{(P_v - Y_v)^2} / s_v^2},
    \qquad
    e_\text{standardized} = \sqrt{\textstyle\frac{1}{V}\sum_v \overline{(P_v - Z_v)^2}}.

The rule: when the two readings put the predictions within ``AGREE`` target stds (rms) of
each other (the targets are standardized already), the units do not matter and the reading
that leaves them unchanged is taken; otherwise the reading that misses by at most
``1 / MARGIN`` of the other is taken; otherwise the units are not plain and the evaluation
stops with an error naming the model and both misfits, before any work. The two units
differ by the target's offset and scale, so raw fluorescence (an offset of a few stds, a std
far from 1) is told apart by a wide margin even for a poor model. With a ``rescale`` other
than ``"none"`` the predictions are rescaled anyway and ``"auto"`` takes them as given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validation import as_image
from .rescaling import Standardization

PREDICTION_UNITS = ("auto", "target", "standardized", "zscored")
AGREE = 0.01  # target stds (rms): readings closer than this are the same units
MARGIN = 2.0  # "auto": the reading taken misses by at most 1 / MARGIN of the other


@dataclass(frozen=True)
class UnitsChoice:
    """The units of one model's predictions and how they were chosen."""

    units: str  # "target", "standardized" or "zscored"
    how: str  # "given", "detected", "agree" (both readings the same) or "rescaled" (units irrelevant)
    error_target: float = math.nan  # misfit read in the targets' units, target stds (rms)
    error_standardized: float = math.nan  # misfit read as Otsu-standardized, target stds (rms)

    def describe(self, model: str) -> str:
        """One line for the report."""
        misfits = (f" (misfit {self.error_target:.3g} target stds read in the targets' units, "
                   f"{self.error_standardized:.3g} read as standardized)")
        return {
            "given": f"{model}: {self.units} units, given",
            "detected": f"{model}: {self.units} units, detected{misfits}",
            "agree": f"{model}: the targets' units and the standardized ones coincide here{misfits}",
            "rescaled": f"{model}: rescaled to the target, so its units do not matter",
        }[self.how]


def check_prediction_units(units: str) -> str:
    """Returns ``units`` after checking it is one of :data:`PREDICTION_UNITS`."""
    if units not in PREDICTION_UNITS:
        raise ValueError(f"prediction_units must be one of {PREDICTION_UNITS}, got {units!r}")
    return units


def _misfits(model: str, volumes: list, targets: list, maps: list[Standardization]) -> tuple[float, float, float]:
    """(e_target, e_standardized, rms distance between the two readings), all in target stds."""
    e_target = e_standardized = spread = 0.0
    for i, (prediction, target, standard) in enumerate(zip(volumes, targets, maps)):
        p = as_image(f"predictions[{model!r}][{i}]", prediction, ndim=(3,))
        e_target += float(np.mean((p - target) ** 2)) / standard.std**2
        e_standardized += float(np.mean((p - standard.apply(target)) ** 2))
        spread += float(np.mean((standard.apply(p) - p) ** 2))
    count = len(targets)
    return math.sqrt(e_target / count), math.sqrt(e_standardized / count), math.sqrt(spread / count)


def choose_units(model: str, volumes: list, targets: list, maps: list[Standardization], units: str,
                 rescale: str, target_norm: str) -> UnitsChoice:
    """The units of ``model``'s predictions (see the module docstring); ValueError when not plain.

    ``targets`` are the targets as given, ``maps`` their Otsu standardizations.
    """
    check_prediction_units(units)
    if units != "auto":
        return UnitsChoice(units, "given")
    if rescale != "none":
        return UnitsChoice("target" if target_norm == "none" else "standardized", "rescaled")
    e_target, e_standardized, spread = _misfits(model, volumes, targets, maps)
    if spread <= AGREE:
        return UnitsChoice("target" if target_norm == "none" else "standardized", "agree", e_target, e_standardized)
    if e_target * MARGIN <= e_standardized:
        return UnitsChoice("target", "detected", e_target, e_standardized)
    if e_standardized * MARGIN <= e_target:
        return UnitsChoice("standardized", "detected", e_target, e_standardized)
    raise ValueError(
        f"predictions[{model!r}]: units not plain: read in the targets' units they miss the targets by "
        f"{e_target:.3g} target stds (rms), read as Otsu-standardized by {e_standardized:.3g}, neither "
        f"{MARGIN:g} times closer; say which with prediction_units='target' or 'standardized' "
        "(--prediction-units), or give a rescale"
    )


def to_evaluation_units(prediction: np.ndarray, choice: UnitsChoice, standard: Standardization,
                        target_norm: str) -> np.ndarray:
    """The prediction in the evaluation's units (float64): the target's map applied, inverted or neither."""
    if choice.units == "zscored":
        prediction = np.asarray(prediction, dtype=np.float64) * standard.std + standard.mean
        return standard.apply(prediction) if target_norm == "otsu" else prediction
    if choice.units == "target" and target_norm == "otsu":
        return standard.apply(prediction)
    if choice.units == "standardized" and target_norm == "none":
        return standard.invert(prediction)
    return np.asarray(prediction, dtype=np.float64)

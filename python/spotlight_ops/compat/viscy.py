r"""VisCy's ``SpotlightLoss`` (``viscy_utils/losses/spotlight.py``, viscy-utils 0.1.0) over the fused op.

The constructor takes VisCy's arguments with VisCy's defaults and checks them as VisCy does (the same
``ValueError`` messages); ``forward(pred, target, fg_mask=None)`` returns VisCy's value and gradients
(to 1e-6 relative in float64, ``tests/python/test_compat_viscy.py`` against VisCy's file). A VisCy
YAML recipe switches by its ``class_path``::

    loss_function:
      class_path: spotlight_ops.compat.viscy.SpotlightLoss   # was viscy_utils.losses.spotlight.SpotlightLoss
      init_args: {lambda_mse: 0.5, sigmoid_k: -0.95, fg_threshold: 0.0}

VisCy's semantics, all of which the fused op's ``"viscy"`` preset computes (docs/variants.md):
per (sample, channel) pools averaged; the foreground ``M`` is ``fg_mask`` when given, else
``target >= fg_threshold``, else ``target >= T`` with ``T`` the Otsu threshold of each (sample,
channel); the soft mask is ``clamp(sigma_k(pred), 0, 1)``, centred at 0 whatever the threshold (VisCy
applies the sigmoid to ``pred`` itself); the masked MSE is over ``sum(M) + eps``, the plain MSE for a
pool without foreground; the Dice term averages the pools whose mask is neither empty nor full.

Where it differs from VisCy, on purpose:

* ``fg_mask`` must be binary (bool, or 0/1 values) and of the target's shape: VisCy multiplies by a
  float mask, so other values would weigh voxels, which the fused op does not do (a ValueError here;
  checking a float mask's values costs one device synchronisation per call, a bool mask none);
* ``fg_threshold`` must be None or a number at construction (VisCy fails at the first call);
* mismatched shapes of ``pred`` and ``target`` are an error (VisCy broadcasts them);
* VisCy logs a warning once when no pool has a real mask; this class does not (the op computes the
  same Dice term, 0, without a host synchronisation).
"""

from __future__ import annotations

import numbers
from typing import Optional

import torch
from torch import Tensor, nn

from ..functional import loss, otsu_threshold
from ..presets import preset_options

__all__ = ["SpotlightLoss"]


class SpotlightLoss(nn.Module):
    """VisCy's ``SpotlightLoss(lambda_mse, sigmoid_k, eps, fg_threshold)`` over the fused op (module docstring).

    Args:
        lambda_mse: weight of the masked MSE, in (0, 1); the Dice term weighs ``1 - lambda_mse``.
        sigmoid_k: tunable-sigmoid steepness, in (-1, 0).
        eps: > 0, added to the MSE's and the Dice's denominators.
        fg_threshold: the foreground is ``target >= fg_threshold``; None: Otsu per (sample, channel).
    """

    def __init__(self, lambda_mse: float = 0.5, sigmoid_k: float = -0.95, eps: float = 1e-6,
                 fg_threshold: Optional[float] = None) -> None:
        super().__init__()
        if not -1 < sigmoid_k < 0:
            raise ValueError(f"sigmoid_k must be in (-1, 0), got {sigmoid_k}")
        if not 0 < lambda_mse < 1:
            raise ValueError(f"lambda_mse must be in (0, 1), got {lambda_mse}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if fg_threshold is not None and (isinstance(fg_threshold, bool) or not isinstance(fg_threshold, numbers.Real)):
            raise TypeError(f"fg_threshold must be None or a number, got {fg_threshold!r}")
        self.lambda_mse = lambda_mse
        self.sigmoid_k = sigmoid_k
        self.eps = eps
        self.fg_threshold = fg_threshold
        # threshold 0 centres the soft mask at pred itself, as VisCy's sigmoid is; M comes from mask= below
        self._options = preset_options("viscy", lam=float(lambda_mse), k=float(sigmoid_k), eps=float(eps),
                                       threshold=0.0)

    def forward(self, pred: Tensor, target: Tensor, fg_mask: Optional[Tensor] = None) -> Tensor:
        """The loss of ``pred`` against ``target`` (``[B, C, Z, Y, X]`` or ``[B, C, Y, X]``): a scalar."""
        if pred.shape != target.shape:
            raise ValueError(f"pred and target must have one shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
        if fg_mask is not None:
            mask = _binary(fg_mask, target)
        elif self.fg_threshold is None:
            flat = target.detach().reshape(target.shape[0] * target.shape[1], -1)
            thresholds = otsu_threshold(flat).to(target.dtype).reshape(*target.shape[:2], *[1] * (target.dim() - 2))
            mask = target.detach() >= thresholds
        elif float(self.fg_threshold) == 0.0:
            mask = None  # the preset's own rule, target >= 0: no mask tensor to build
        else:
            mask = target.detach() >= float(self.fg_threshold)
        return loss(pred, target, mask=mask, **self._options)

    def extra_repr(self) -> str:
        return (f"lambda_mse={self.lambda_mse}, sigmoid_k={self.sigmoid_k}, eps={self.eps}, "
                f"fg_threshold={self.fg_threshold}")


def _binary(fg_mask: Tensor, target: Tensor) -> Tensor:
    """``fg_mask`` as a bool tensor; a ValueError naming it when its shape or values do not fit."""
    if not isinstance(fg_mask, Tensor):
        raise TypeError(f"fg_mask must be a tensor or None, got {type(fg_mask).__name__}")
    if fg_mask.shape != target.shape:
        raise ValueError(f"fg_mask must have the target's shape {tuple(target.shape)}, got {tuple(fg_mask.shape)}")
    if fg_mask.dtype == torch.bool:
        return fg_mask
    if bool(((fg_mask != 0) & (fg_mask != 1)).any()):
        raise ValueError("fg_mask must be binary (bool, or 0 and 1 values): VisCy would weigh voxels by other values, "
                         "which this loss does not do")
    return fg_mask != 0

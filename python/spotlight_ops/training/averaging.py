r"""The exponential moving average of the weights ("EMA model"), which written models can hold.

With small batches Adam moves every weight by about ``lr`` per step in a direction set by a few
patches, so two checkpoints 50 iterations apart can predict rather different images: on the real pair
of docs/collapse.md one run's held-out fraction above T changes by 7 to 10 points (standard deviation)
between neighbouring checkpoints even with recomputed BatchNorm statistics (docs/training.md, "Weight
averaging"). With ``ema_decay = d > 0`` training writes an average of its recent weights instead of
the last ones,

.. math::
    \bar w_1 = w_1, \qquad \bar w_t = d \, \bar w_{t-1} + (1 - d) \, w_t ,

updated after every optimiser step ``t``: an average over about ``1 / (1 - d)`` steps, in which the
first weights keep the share ``d^(t - 1)`` (5 % after 300 steps at ``d = 0.99``). This is
:func:`torch.optim.swa_utils.get_ema_multi_avg_fn`'s average, held in an
:class:`~torch.optim.swa_utils.AveragedModel` (its state dict: ``module.*`` and the update count
``n_averaged``). The average covers the parameters; the buffers (BatchNorm running statistics) are
copied from the training model, and written models recompute them for the averaged weights
(``bn_batches``, :mod:`.batchnorm`). Training never reads the average: losses, gradients and an exact
resume are those of a run without it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


class WeightAverage(AveragedModel):
    """The EMA of the module docstring over ``model``'s parameters (a copy of ``model``, on its device).

    :meth:`update_parameters` is ``AveragedModel``'s with ``use_buffers=False`` and the EMA, without a
    host-device synchronisation: ``AveragedModel`` copies its update count to the device at every update
    (a blocking copy), while here the count stays a CPU tensor that only the CPU reads.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {decay!r}")
        super().__init__(model, use_buffers=False)
        self.decay = float(decay)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        means = list(self.module.parameters())
        currents = [p.detach() for p in model.parameters()]
        if int(self.n_averaged) == 0:  # the first update copies
            torch._foreach_copy_(means, currents)
        else:
            torch._foreach_lerp_(means, currents, 1.0 - self.decay)
        for mine, theirs in zip(self.module.buffers(), model.buffers()):
            mine.copy_(theirs)
        self.n_averaged += 1


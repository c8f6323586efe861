r"""The exponential moving average of the weights ("EMA model"), which written models can hold.

With small batches Adam moves every weight by about ``lr`` per step in a direction set by a few
patches, so two checkpoints 50 iterations apart can predict rather different images: on the real pair
of docs/collapse.md one run's held-out fraction above T moves by about 5 to 9 points (standard
deviation) between neighbouring checkpoints even with recomputed BatchNorm statistics
(docs/training.md, "Weight averaging"). With ``ema_decay = d > 0`` training writes an average of its
recent weights instead of the last ones,

.. math::
    \bar w_1 = w_1, \qquad \bar w_t = d \, \bar w_{t-1} + (1 - d) \, w_t ,

updated after every optimiser step ``t`` (:class:`torch.optim.swa_utils.AveragedModel` with
:func:`torch.optim.swa_utils.get_ema_multi_avg_fn`): an average over about ``1 / (1 - d)`` steps, in
which the first weights keep the share ``d^(t - 1)`` (5 % after 300 steps at ``d = 0.99``). The average
covers the parameters; the buffers (BatchNorm running statistics) follow the training model, and
written models recompute them for the averaged weights (:mod:`.batchnorm`). Training never reads the
average: losses, gradients and an exact resume are those of a run without it.
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def averaged_model(model: nn.Module, decay: float) -> AveragedModel:
    """An :class:`AveragedModel` of ``model`` (a copy, on its device) taking the EMA of the module docstring."""
    if not 0.0 < decay < 1.0:
        raise ValueError(f"decay must lie in (0, 1), got {decay!r}")
    # no device argument: the update counter stays on the CPU, since AveragedModel tests it for 0 at every
    # update and on a GPU tensor that test would wait for the device (the copy of the module is on its device)
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)

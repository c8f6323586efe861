r"""Batch-norm statistics for inference, recomputed over training batches ("precise BN").

F-net normalises with BatchNorm. In training mode a layer uses the batch's mean and variance; in
eval mode (prediction, validation) it uses running averages updated with momentum 0.1, i.e. an
exponential average dominated by the last ~10 batches, taken with weights that changed at every step.
With small batches (the real-data setting of docs/collapse.md: 4 patches of 16 x 32 x 32) those
averages swing from checkpoint to checkpoint, and so do the predictions: the held-out fraction above
T jumped between 1 % and 89 % from one checkpoint to the next with unchanged training-mode behaviour
(docs/experiments.md, "Batch-norm statistics").

Here the model's weights are frozen and every BatchNorm layer's statistics are recomputed as the
plain average over ``batches`` fresh training batches (:func:`torch.optim.swa_utils.update_bn`,
momentum ``None``). The batches come from a sampler of their own, seeded from ``(seed, iteration)``,
so the training stream, and with it an exact resume, is untouched; the result is a copy, never the
training model.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..data import PatchSampler
from ..models import FNet

STREAM = 0x424E  # "BN": keeps these draws apart from every other stream seeded from the run's seed


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def recompute_statistics(model: nn.Module, batches: Sequence[torch.Tensor]) -> nn.Module:
    """A copy of ``model`` (an :class:`FNet`) whose BatchNorm statistics are the average over ``batches``.

    The copy is a plain FNet (a SyncBatchNorm model's copy computes local statistics, so one process
    can do this alone), in eval mode, on the model's device.
    """
    if not batches:
        raise ValueError("batches must hold at least one batch")
    device = next(model.parameters()).device
    copy = FNet(**model.config()).to(device)
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.optim.swa_utils.update_bn([b.to(device) for b in batches], copy)
    return copy.eval()


def inference_model(model: nn.Module, pairs, patch_size: Sequence[int], batch_size: int, count: int, seed: int,
                    iteration: int, min_foreground_fraction: float, max_retries: int,
                    augment: str = "none") -> nn.Module:
    """``model`` with statistics from ``count`` batches drawn for ``(seed, iteration)`` (see the module).

    ``pairs`` is the training data; a :class:`~spotlight_ops.data.VolumeBuffer` is read as the volumes it
    holds now, so drawing here never switches its volumes.
    """
    if count < 1:
        raise ValueError(f"count must be a positive number of batches, got {count!r}")
    pool = list(pairs) if hasattr(pairs, "after_batch") else pairs
    stream_seed = int(np.random.SeedSequence([int(seed), int(iteration), STREAM]).generate_state(1)[0])
    sampler = PatchSampler(pool, patch_size, batch_size, seed=stream_seed,
                           min_foreground_fraction=min_foreground_fraction, max_retries=max_retries, augment=augment)
    batches = [torch.from_numpy(sampler.sample()[0]) for _ in range(count)]
    return recompute_statistics(model, batches)

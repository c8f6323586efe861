"""Input generators shared by the op tests."""

from __future__ import annotations

import numpy as np
import torch

from spotlight_ops import defaults as D

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# Relative tolerance of a loss value against the float64 reference: float
# accumulation for float32, plus the rounding of the result to the dtype.
LOSS_RTOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def nuclei_like(n: int, shape=(8, 24, 24), seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """Structured volumes: bright blobs on a noisy dim background, [n, 1, *shape]."""
    gen = torch.Generator().manual_seed(seed)
    z, y, x = torch.meshgrid(*(torch.arange(s, dtype=torch.float64) for s in shape), indexing="ij")
    out = 0.1 * torch.randn(n, 1, *shape, generator=gen, dtype=torch.float64)
    for i in range(n):
        for _ in range(4):
            c = [torch.randint(0, s, (1,), generator=gen).item() for s in shape]
            r = 2.0 + 3.0 * torch.rand(1, generator=gen).item()
            d2 = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2
            out[i, 0] += (1.0 + torch.rand(1, generator=gen).item()) * torch.exp(-d2 / (2 * r * r))
    return out.to(dtype)


def pred_like(target: torch.Tensor, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    noise = 0.3 * torch.randn(target.shape, generator=gen, dtype=torch.float64)
    return (0.8 * target.double() + noise).to(target.dtype)


def bin_width(x: torch.Tensor, bins: int = 256) -> torch.Tensor:
    v = x.reshape(x.shape[0], -1).double()
    return (v.max(1).values - v.min(1).values) / bins


def as_numpy64(x: torch.Tensor) -> np.ndarray:
    return x.detach().double().cpu().numpy()


def _opcheck_inputs(device, dtype, requires_grad=True):
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(3, 2, 5, dtype=dtype, generator=gen).to(device)
    p = (0.3 + 0.4 * torch.rand(3, 2, 5, dtype=dtype, generator=gen)).to(device).requires_grad_(requires_grad)
    return p, y


def packed_options(**options) -> list:
    """The ``float[] options`` argument of the private loss ops (``_loss_forward``, ``_loss_backward``):
    the defaults with ``options`` applied, packed by the op library."""
    from spotlight_ops.functional import _option_text

    return torch.ops.spotlight._pack_loss_options([f"{k}={_option_text(v)}" for k, v in options.items()])


def opcheck_cases(device, dtype=torch.float64):
    """(op overload, args[, kwargs]) for torch.library.opcheck: every op of the library, 30 cases."""
    p, y = _opcheck_inputs(device, dtype)
    m = y > 0.5
    t = torch.tensor([0.4, 0.5, 0.6], dtype=dtype, device=device)
    ops = torch.ops.spotlight
    yield ops.otsu_threshold.default, (y, 256)
    yield ops.otsu_standardize.default, (y.clone().requires_grad_(), 64)
    yield ops.tunable_sigmoid.default, (p, D.K)
    yield ops._tunable_sigmoid_backward.default, (torch.ones_like(y), y, -0.5)
    for red in ("batch", "mean", "none"):
        yield ops.masked_mse.default, (p, y, m, "foreground", red)
        yield ops.soft_dice.default, (p, m, 1e-6, red)
        yield ops.loss.default, (p, y, None, D.LAM, D.K, D.EPS, D.BINS, D.MSE_NORMALIZATION, red)
        yield ops.loss.default, (p, y, t, 0.3, -0.9, 1e-6, 256, "all", red)
        yield ops.loss.default, (p, y, t), {"reduction": red, "mse_term": "plain", "per_channel": True}
        yield ops.loss.default, (p, y, None), {"reduction": red, "mse_term": "plain", "mask": m}
        yield ops._loss_and_sums.default, (p, y, t), {"reduction": red, "mse_term": "plain"}
        yield ops._loss_forward.default, (p.detach(), y, None, None, packed_options(reduction=red))
    fwd = ops._loss_forward.default(p.detach(), y, t, None, packed_options(reduction="none", mse_term="plain"))
    yield ops._loss_backward.default, (torch.ones(3, dtype=dtype, device=device), p.detach(), y, fwd[1],
                                       fwd[2], None, packed_options(reduction="none", mse_term="plain"), True)
    yield ops._loss_counts.default, (fwd[2],)

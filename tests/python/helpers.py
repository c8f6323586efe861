"""Input generators shared by the op tests."""

from __future__ import annotations

import numpy as np
import torch

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

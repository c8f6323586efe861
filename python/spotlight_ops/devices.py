"""The torch device of a ``--device`` flag, for training and prediction alike."""

from __future__ import annotations

import torch


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available; ``cuda`` -> the process's local GPU."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: CUDA is not available on this machine (no GPU, or torch without CUDA); "
                             "use --device cpu or --device auto")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if preference.startswith("cuda:"):
        index = preference[5:]
        if not torch.cuda.is_available():
            raise ValueError(f"--device {preference}: CUDA is not available on this machine; use --device cpu "
                             f"or --device auto")
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise ValueError(f"--device {preference}: this machine has {torch.cuda.device_count()} GPU(s) "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    try:
        return torch.device(preference)
    except RuntimeError as err:
        raise ValueError(f"--device {preference}: not a device ({err}); use auto, cpu, cuda or cuda:N") from None

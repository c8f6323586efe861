r"""The learning-rate schedule: a pure function of the iteration, so a resume continues it exactly.

For iteration ``i`` (1-based, the step about to be taken), base rate ``lr``, ``W`` warm-up
iterations and ``N`` iterations in all:

    warm-up (i <= W):      lr * i / W
    constant (the paper):  lr
    cosine:                min_lr + (lr - min_lr) * (1 + cos(pi * (i - W) / (N - W))) / 2

so the cosine starts at ``lr`` right after the warm-up and reaches ``min_lr`` at the last
iteration. Nothing is stored in checkpoints: the rate is recomputed from ``i`` on resume. Extending
a finished cosine run (a larger ``iterations`` on resume) stretches the remaining schedule to the
new end.
"""

from __future__ import annotations

import math


def learning_rate(iteration: int, lr: float, schedule: str = "constant", warmup_iterations: int = 0,
                  iterations: int = 1, min_lr: float = 0.0) -> float:
    """The rate for ``iteration`` (see the module docstring)."""
    if iteration < 1:
        raise ValueError(f"iteration must be >= 1, got {iteration}")
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    if warmup_iterations > 0 and iteration <= warmup_iterations:
        return lr * iteration / warmup_iterations
    if schedule == "constant":
        return lr
    span = iterations - warmup_iterations
    if span <= 0:
        return lr
    progress = min(1.0, (iteration - warmup_iterations) / span)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

r"""Validation on fixed held-out patches: loss and foreground fractions, a best checkpoint, a loss curve.

The held-out pairs come from ``val_csv``, or from ``val_fraction`` of the training manifest: a
seeded permutation of its rows (``numpy.random.default_rng([seed, 3])``) whose first
``max(1, round(val_fraction * n))`` rows are held out (:func:`split_rows`).

``val_patches`` patches are cut once per run, patch ``j`` from held-out pair ``j mod m`` (each pair
loaded, cut and freed in turn), at foreground-aware positions drawn from generators seeded by
``seed`` and the pair's index: the same patches at every validation, in every process, after every
resume. Every ``val_every`` iterations the model (in eval mode, without gradients) predicts them in
chunks of the batch size and the run records

* ``val_loss``: the training criterion, the mean over chunks weighted by their size;
* ``val_fg_pred`` and ``val_fg_target``: the fraction of voxels above the foreground threshold
  (0 on Otsu-standardized targets; the patch channel's Otsu T in z-score units otherwise) in the
  predictions, and in the targets (or in their stored foreground masks, when training uses them). A
  prediction whose foreground fraction falls far below the target's has collapsed to background.

Patches carry every channel (``[count, C, *patch]``); when training passes stored foreground masks to
the loss (``with_mask``), the patches' masks are cut alike and the criterion gets them as ``mask=``.

Validation draws no random numbers and changes no state of the model (eval-mode BatchNorm), so it
leaves training, and exact resume, as they are.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..data import ManifestRow, PatchSampler, PreprocessConfig, load_pair
from ..files.runfiles import atomic_write_bytes

PLOT_SECONDS = 30.0  # least time between two redraws of loss_curve.png (the last iteration always redraws)

# log.csv column -> TensorBoard tag
COLUMNS = {"val_loss": "loss/val", "val_fg_pred": "foreground_fraction/val_pred",
           "val_fg_target": "foreground_fraction/val_target"}


def split_rows(rows: Sequence[ManifestRow], fraction: float, seed: int) -> tuple:
    """``(train_rows, val_rows)``: a seeded ``fraction`` of ``rows`` held out (see the module docstring)."""
    rows = list(rows)
    if fraction <= 0:
        return rows, []
    n_val = max(1, int(round(fraction * len(rows))))
    if n_val >= len(rows):
        raise ValueError(f"val_fraction {fraction} of {len(rows)} training pairs leaves none to train on")
    order = np.random.default_rng([int(seed), 3]).permutation(len(rows))
    held = set(int(i) for i in order[:n_val])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def fixed_patches(rows: Sequence[ManifestRow], config: PreprocessConfig, patch_size: Sequence[int], count: int,
                  seed: int, min_foreground_fraction: float, max_retries: int, progress: bool = False,
                  with_mask: bool = False) -> dict:
    """``{"signal", "target", "threshold"[, "mask"]}``: ``count`` patches ``[count, C, *patch]`` (C the
    pairs' signal and target channels), per-patch-and-channel thresholds ``[count, C_target]`` and, with
    ``with_mask``, the patches' stored masks as bool ``[count, C_target, *patch]``."""
    if not rows:
        raise ValueError("no validation pairs")
    rows = list(rows)
    per_pair = [len(range(i, count, len(rows))) for i in range(len(rows))]
    signal = np.empty((count, len(rows[0].signals)) + tuple(patch_size), np.float32)
    target = np.empty((count, len(rows[0].targets)) + tuple(patch_size), np.float32)
    mask = np.empty(target.shape, bool) if with_mask else None
    threshold = np.zeros(target.shape[:2], np.float32)
    iterator = enumerate(rows)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(rows), desc="validation patches", unit="pair")
    for index, row in iterator:
        if per_pair[index] == 0:
            continue
        pair = load_pair(row, config)
        sampler = PatchSampler([pair], patch_size, per_pair[index], seed=seed, rank=1_000_003 + index,
                               min_foreground_fraction=min_foreground_fraction, max_retries=max_retries)
        batch = sampler.sample(with_mask=with_mask)
        signal[index::len(rows)], target[index::len(rows)] = batch[:2]
        if with_mask:
            if batch[2] is None:
                raise ValueError(f"validation pair {row.target} has no stored foreground mask, the training pairs "
                                 f"have: run spotlight preprocess on it, or train with --no-stored-masks")
            mask[index::len(rows)] = batch[2] != 0
        if config.target_norm != "otsu":  # each channel's Otsu T in its z-score units
            info = {k: np.asarray(pair.info[k], np.float64) for k in ("otsu_threshold", "target_mean", "target_std")}
            std = np.where(info["target_std"] > 0, info["target_std"], 1.0)
            threshold[index::len(rows)] = (info["otsu_threshold"] - info["target_mean"]) / std
        del pair, sampler
    patches = {"signal": signal, "target": target, "threshold": threshold}
    return {**patches, "mask": mask} if with_mask else patches


class Validator:
    """Scores a model on fixed patches (:func:`fixed_patches`) with ``criterion``."""

    def __init__(self, patches: dict, criterion: Callable, batch_size: int, device: torch.device,
                 autocast: Callable = None) -> None:
        self.signal = torch.from_numpy(patches["signal"])
        self.target = torch.from_numpy(patches["target"])
        self.threshold = torch.from_numpy(patches["threshold"]).view(*patches["threshold"].shape, 1, 1, 1)
        self.mask = torch.from_numpy(patches["mask"]) if patches.get("mask") is not None else None
        foreground = self.mask if self.mask is not None else self.target > self.threshold
        self.target_fg = float(foreground.float().mean())
        self.criterion, self.batch_size, self.device = criterion, int(batch_size), device
        self.autocast = autocast

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module) -> dict:
        was_training = model.training
        model.eval()
        total_loss, above, n = 0.0, 0.0, self.signal.shape[0]
        try:
            for start in range(0, n, self.batch_size):
                chunk = slice(start, min(start + self.batch_size, n))
                x = self.signal[chunk].to(self.device)
                y = self.target[chunk].to(self.device)
                if self.autocast is not None:
                    with self.autocast():
                        p = model(x)
                else:
                    p = model(x)
                p = p.float()
                size = chunk.stop - chunk.start
                masks = {"mask": self.mask[chunk].to(self.device)} if self.mask is not None else {}
                total_loss += float(self.criterion(p, y, **masks)) * size
                above += float((p > self.threshold[chunk].to(self.device)).float().mean()) * size
        finally:
            model.train(was_training)
        return {"val_loss": total_loss / n, "val_fg_pred": above / n, "val_fg_target": self.target_fg}


def plot_losses(rows: Sequence[dict], path: Path) -> Optional[Path]:
    """``loss_curve.png``: training and validation loss against the iteration (written atomically)."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [r["iteration"] for r in rows]
    fig, (ax, ax_fg) = plt.subplots(1, 2, figsize=(10, 4))
    ax.plot(its, [r["loss"] for r in rows], lw=0.8, color="0.5", label="train (per batch)")
    val = [(r["iteration"], r[c]) for r in rows for c in ("val_loss",) if r.get(c) is not None]
    if val:
        ax.plot(*zip(*val), "o-", color="C0", label="validation")
    if all(r["loss"] > 0 for r in rows) and all(v > 0 for _, v in val):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.legend()
    fg = [(r["iteration"], r["val_fg_pred"], r["val_fg_target"]) for r in rows if r.get("val_fg_pred") is not None]
    if fg:
        i, pred, target = zip(*fg)
        ax_fg.plot(i, pred, "o-", color="C1", label="predictions")
        ax_fg.plot(i, target, "--", color="k", label="targets")
        ax_fg.legend()
    ax_fg.set_xlabel("iteration")
    ax_fg.set_ylabel("validation foreground fraction")
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())

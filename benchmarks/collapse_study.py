r"""Why Spotlight training collapses on the real Allen pair: the measurements behind docs/collapse.md.

Trains F-net on ``fnet_sample`` (train on x < 96, held out x >= 96) with the trainer's own pieces
(:class:`PatchSampler`, :class:`FNet`, Adam, the seeding of :func:`spotlight_ops.training.train`),
but with the loss written out in float64 here, so that each variant of SPEC 11 and each remedy can
be studied and its gradients split by term and by voxel class. Per iteration it records the loss
terms, the batch's predicted and target foreground fractions, where the background predictions sit
(share in the soft mask's dead zone ``P - T >= 1``, share in the band ``|P - T| < 1``), and the
gradient that reaches the background and foreground voxels from each term; every ``--eval-every``
iterations, the held-out part's predicted foreground fraction and background mean.

    python benchmarks/collapse_study.py --out /tmp/study --arm spotlight --seed 0 --iterations 300
    python benchmarks/collapse_study.py --out /tmp/study --arm spotlight --soft-mask unclamped --k -0.5

Writes ``<out>/<name>.json`` (the records; ``--name`` defaults to the arm's settings). The data
stay in ``../shared/data`` (``$SPOTLIGHT_DATA``): the script exits with a message when absent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent / "python"))  # after an installed spotlight_ops (spawned workers inherit sys.path)

from spotlight_ops import defaults  # noqa: E402
from spotlight_ops.data import PatchSampler, load_pairs  # noqa: E402
from spotlight_ops.data import preprocess as pp  # noqa: E402
from spotlight_ops.data.manifest import ManifestRow  # noqa: E402
from spotlight_ops.models import FNet  # noqa: E402
from spotlight_ops.predict import predict_volume  # noqa: E402
from spotlight_ops.training.rng import seed_everything  # noqa: E402

SPLIT_X = 96


def data_dir() -> Path | None:
    env = os.environ.get("SPOTLIGHT_DATA")
    path = Path(env) if env else HERE.parent.parent / "shared" / "data"
    path = path / "fnet_sample"
    return path if (path / "light.tif").is_file() and (path / "nuc.tif").is_file() else None


def split_volumes(source: Path, work: Path) -> dict:
    """Writes the train (x < 96) and held-out (x >= 96) crops to ``work`` (outside the product)."""
    import tifffile

    signal, target = tifffile.imread(source / "light.tif"), tifffile.imread(source / "nuc.tif")
    work.mkdir(parents=True, exist_ok=True)
    out = {}
    for part, box in (("train", np.s_[..., :SPLIT_X]), ("test", np.s_[..., SPLIT_X:])):
        for role, volume in (("signal", signal), ("target", target)):
            path = work / f"{part}_{role}.tif"
            if not path.exists():
                tifffile.imwrite(path, np.ascontiguousarray(volume[box]))
            out[f"{part}_{role}"] = path
    return out


def sigma(x: torch.Tensor, k: float) -> torch.Tensor:
    return (x - k * x) / (k - 2 * k * x.abs() + 1)


def soft_mask(x: torch.Tensor, k: float, variant: str) -> torch.Tensor:
    """SPEC 11's soft masks of ``x = P - T``."""
    if variant == "clamped":
        return 0.5 * (1 + sigma(x.clamp(-1, 1), k))
    if variant == "unclamped":
        return 0.5 * (1 + sigma(x, k))
    if variant == "viscy":
        return sigma(x, k).clamp(0, 1)
    raise ValueError(variant)


def spotlight_terms(p: torch.Tensor, y: torch.Tensor, k: float, variant: str, eps: float = 1e-6) -> tuple:
    """(MMSE, Dice) on one pool, T = 0 (Otsu-standardized targets), float64."""
    m = (y > 0).double()
    s = soft_mask(p, k, variant)
    mmse = (m * (y - p) ** 2).sum() / m.sum().clamp_min(1)
    dice = 1 - 2 * (s * m).sum() / (s.sum() + m.sum() + eps)
    return mmse, dice


def run(args: argparse.Namespace) -> dict:
    import tifffile

    source = data_dir()
    if source is None:
        raise SystemExit("fnet_sample not found (set SPOTLIGHT_DATA or put shared/data beside the checkout)")
    torch.set_num_threads(1)
    work = Path(args.work or Path(tempfile.gettempdir()) / "spotlight_fnet_split")
    files = split_volumes(source, work)
    pairs = load_pairs([ManifestRow(files["train_signal"], files["train_target"])])
    test_signal = pp.standardize(tifffile.imread(files["test_signal"]).astype(np.float32))
    test_target = pp.otsu_standardize_volume(tifffile.imread(files["test_target"]).astype(np.float32))
    test_fg = test_target > 0

    seed_everything(args.seed)
    model = FNet(depth=args.depth, base_channels=args.base_channels)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.5, 0.999))
    sampler = PatchSampler(pairs, args.patch_size, args.batch_size, seed=args.seed)
    rec = {k: [] for k in ("it", "loss", "mmse", "dice", "fg_pred", "fg_target", "bg_dead", "bg_band",
                           "fg_dead", "grad_bg_dice", "grad_fg_dice", "grad_fg_mmse", "grad_bias_dice",
                           "grad_bias_mmse", "bg_mean_batch")}
    held = {k: [] for k in ("it", "fg_pred", "bg_mean", "fg_mean")}
    start = time.monotonic()

    def evaluate(it: int) -> None:
        model.eval()
        pred = predict_volume(model, test_signal, tile_size=test_signal.shape, overlap=(0, 0, 0))
        model.train()
        held["it"].append(it)
        held["fg_pred"].append(float(np.mean(pred > 0)))
        held["bg_mean"].append(float(pred[~test_fg].mean()))
        held["fg_mean"].append(float(pred[test_fg].mean()))

    for it in range(1, args.iterations + 1):
        s_np, y_np = sampler.sample()
        s, y = torch.from_numpy(s_np), torch.from_numpy(y_np)
        optimizer.zero_grad(set_to_none=True)
        p = model(s)
        pd = p.double()
        yd = y.double()
        mse_weight = 1.0 if it <= args.warmup else args.mse_weight
        if args.arm == "mse":
            mse_weight = 1.0
        mmse, dice = spotlight_terms(pd, yd, args.k, args.soft_mask)
        # per-term gradients with respect to P (for the record only)
        g_mmse = torch.autograd.grad(mmse, pd, retain_graph=True)[0]
        g_dice = torch.autograd.grad(dice, pd, retain_graph=True)[0]
        spot = args.lam * mmse + (1 - args.lam) * dice
        mse = ((pd - yd) ** 2).mean()
        loss = mse_weight * mse + (1 - mse_weight) * spot
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            fg = yd > 0
            bg = ~fg
            n = pd.numel()
            rec["it"].append(it)
            rec["loss"].append(float(loss))
            rec["mmse"].append(float(mmse))
            rec["dice"].append(float(dice))
            rec["fg_pred"].append(float((pd > 0).double().mean()))
            rec["fg_target"].append(float(fg.double().mean()))
            rec["bg_dead"].append(float((pd[bg] >= 1).double().mean()))
            rec["bg_band"].append(float((pd[bg].abs() < 1).double().mean()))
            rec["fg_dead"].append(float((pd[fg] >= 1).double().mean()))
            # mean dL/dP per voxel of the class, in units of 1/n (n = voxels in the batch)
            rec["grad_bg_dice"].append(float((1 - args.lam) * g_dice[bg].mean() * n))
            rec["grad_fg_dice"].append(float((1 - args.lam) * g_dice[fg].mean() * n))
            rec["grad_fg_mmse"].append(float(args.lam * g_mmse[fg].mean() * n))
            # what a common shift of all outputs feels (the last layer's bias)
            rec["grad_bias_dice"].append(float((1 - args.lam) * g_dice.sum()))
            rec["grad_bias_mmse"].append(float(args.lam * g_mmse.sum()))
            rec["bg_mean_batch"].append(float(pd[bg].mean()))
        if it % args.eval_every == 0 or it == args.iterations:
            evaluate(it)
            print(f"[{args.name}] it {it} loss {float(loss):.4f} batch fg {rec['fg_pred'][-1]:.3f}/"
                  f"{rec['fg_target'][-1]:.3f} held-out fg {held['fg_pred'][-1]:.3f} (target "
                  f"{test_fg.mean():.3f}) bg mean {held['bg_mean'][-1]:.3f} ({time.monotonic() - start:.0f} s)",
                  flush=True)
    return {"args": vars(args), "train": rec, "held_out": held, "held_out_target_fg": float(test_fg.mean()),
            "held_out_target_bg_mean": float(test_target[~test_fg].mean()), "seconds": time.monotonic() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--name")
    parser.add_argument("--work", help="folder for the split crops (default: the temp folder)")
    parser.add_argument("--arm", choices=["mse", "spotlight"], default="spotlight")
    parser.add_argument("--soft-mask", choices=["clamped", "unclamped", "viscy"], default="clamped")
    parser.add_argument("--k", type=float, default=defaults.K)
    parser.add_argument("--lam", type=float, default=defaults.LAM)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--patch-size", type=int, nargs=3, default=[16, 32, 32])
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=0, help="plain MSE for the first N iterations")
    parser.add_argument("--mse-weight", type=float, default=0.0,
                        help="after the warm-up: loss = w * MSE + (1 - w) * Spotlight")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.name is None:
        args.name = (f"{args.arm}" if args.arm == "mse" else
                     f"spotlight_{args.soft_mask}_k{args.k}_lam{args.lam}_w{args.warmup}_m{args.mse_weight}") + \
                    f"_lr{args.lr}_b{args.batch_size}_p{'x'.join(map(str, args.patch_size))}_s{args.seed}"
    result = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()

r"""The README's training loop on the real Allen pair, for any criterion: does it collapse, and does it say so?

The issue's setting (docs/collapse.md): ``fnet_sample`` cut at x = 96 (train on x < 96, held out
x >= 96), targets Otsu-standardized by the data pipeline, F-net depth 2 with 8 base channels,
patches 16 x 32 x 32, batch 4, Adam lr 1e-3, betas (0.5, 0.999), one thread, seed 0. The loop is
the README's: ``loss = criterion(model(signal), target); zero_grad; backward; step``. Per iteration
it records the fractions of the batch predicted and truly above T (from the criterion's own counts),
and the iteration of every :class:`~spotlight_ops.collapse.CollapseWarning`; at the end, the
fraction of the held-out part predicted above T, by the model as ``spotlight train`` writes it (BatchNorm
statistics recomputed over 32 training batches: docs/training.md).

    python benchmarks/readme_loop.py --criterion default paper trained --iterations 200

``--criterion``: ``default`` (``SpotlightLoss()``: the paper's loss with each target sample's Otsu
threshold), ``paper`` (``SpotlightLoss(threshold=0.0)``, the paper's loss at T = 0, the issue's setting)
and ``trained`` (``SpotlightLoss.from_preset("trained")``). Prints one line per criterion (and, with
``--every``, the fractions every that many iterations). The data stay in ``../shared/data``
(``$SPOTLIGHT_DATA``): exits with a message when absent.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent / "python"))  # after an installed spotlight_ops (spawned workers inherit sys.path)
sys.path.insert(0, str(HERE))

from collapse_study import data_dir, split_volumes  # noqa: E402
from spotlight_ops import SpotlightLoss  # noqa: E402
from spotlight_ops.collapse import CollapseWarning  # noqa: E402
from spotlight_ops.data import PatchSampler, load_pairs  # noqa: E402
from spotlight_ops.data import preprocess as pp  # noqa: E402
from spotlight_ops.data.manifest import ManifestRow  # noqa: E402
from spotlight_ops.models import FNet  # noqa: E402
from spotlight_ops.training.batchnorm import inference_model  # noqa: E402
from spotlight_ops.training.rng import seed_everything  # noqa: E402

CRITERIA = {"default": lambda: SpotlightLoss(), "paper": lambda: SpotlightLoss(threshold=0.0),
            "trained": lambda: SpotlightLoss.from_preset("trained")}


def run(criterion: SpotlightLoss, iterations: int = 200, seed: int = 0, stop_at_warning: bool = False,
        work: Path | None = None) -> dict:
    """The loop; returns per-iteration fractions, the warnings with their iteration, the held-out fraction."""
    import tifffile

    source = data_dir()
    if source is None:
        raise FileNotFoundError("fnet_sample not found (set SPOTLIGHT_DATA or put shared/data beside the checkout)")
    files = split_volumes(source, work or Path(tempfile.gettempdir()) / "spotlight_fnet_split")
    pairs = load_pairs([ManifestRow(files["train_signal"], files["train_target"])])
    seed_everything(seed)
    model = FNet(depth=2, base_channels=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    sampler = PatchSampler(pairs, (16, 32, 32), 4, seed=seed)
    out = {"fg_pred": [], "fg_target": [], "warnings": [], "iterations": 0}
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CollapseWarning)
        for it in range(1, iterations + 1):
            signal, target = (torch.from_numpy(a) for a in sampler.sample())
            loss = criterion(model(signal), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            pred_fraction, target_fraction = criterion.fractions().tolist()
            out["fg_pred"].append(pred_fraction)
            out["fg_target"].append(target_fraction)
            out["iterations"] = it
            while len(out["warnings"]) < len(caught):
                out["warnings"].append((it, str(caught[len(out["warnings"])].message)))
            if stop_at_warning and out["warnings"]:
                break
    out["seconds"] = time.monotonic() - start
    test_signal = pp.standardize(tifffile.imread(files["test_signal"]).astype(np.float32))
    test_target = pp.otsu_standardize_volume(tifffile.imread(files["test_target"]).astype(np.float32))
    written = inference_model(model, pairs, (16, 32, 32), 4, 32, seed, iterations, 0.001, 1000)
    with torch.no_grad():
        held = written(torch.from_numpy(test_signal)[None, None]).numpy()
    out["held_out_pred"] = float(np.mean(held > 0))
    out["held_out_target"] = float(np.mean(test_target > 0))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--criterion", nargs="+", choices=list(CRITERIA), default=list(CRITERIA))
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=0, help="print the batch fractions every N iterations")
    args = parser.parse_args(argv)
    if data_dir() is None:
        print("skipped: fnet_sample not found (set SPOTLIGHT_DATA)")
        return 0
    torch.set_num_threads(1)
    for name in args.criterion:
        r = run(CRITERIA[name](), args.iterations, args.seed)
        if args.every:
            for it in range(args.every, r["iterations"] + 1, args.every):
                print(f"  {name} it {it}: batch {100 * r['fg_pred'][it - 1]:.0f} % above T "
                      f"(targets {100 * r['fg_target'][it - 1]:.0f} %)")
        last = slice(max(0, r["iterations"] - 50), r["iterations"])
        warned = ", ".join(f"iteration {it}" for it, _ in r["warnings"]) or "none"
        print(f"{name}: {r['iterations']} iterations in {r['seconds']:.0f} s; batch above T over the last 50: "
              f"{100 * np.mean(r['fg_pred'][last]):.1f} % (targets {100 * np.mean(r['fg_target'][last]):.1f} %); "
              f"held out {100 * r['held_out_pred']:.1f} % (target {100 * r['held_out_target']:.1f} %); "
              f"warnings: {warned}")
        for it, message in r["warnings"]:
            print(f"  [{it}] {message}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Peak memory of training with a volume buffer against the dataset's size, and the time per iteration.

Writes a dataset of ``--pairs`` synthetic pairs of ``--shape`` (float32; every second pair as
OME-Zarr, the others as uncompressed TIFF, which are memory-mapped), then runs ``spotlight train`` in
fresh processes and reads each one's peak resident set size (``getrusage(RUSAGE_CHILDREN)``):

* ``baseline``: the interpreter with torch and spotlight_ops imported, nothing else;
* ``buffer``: ``--buffer-size`` volumes in memory (validation split, augmentation on);
* ``buffer_double``: the same on a manifest of twice as many pairs (the data doubles, the buffer stays);
* ``in memory``: ``buffer_size 0`` (every volume held), for comparison (``--skip-in-memory`` to skip);
* an exact-resume check: a run stopped halfway and resumed must log the same losses;
* a prediction of one OME-Zarr volume with ``--tta yx``.

Example (18 minutes on a 2-core machine with a load average of 10-13)::

    python benchmarks/lazy_data_memory.py --out /tmp/lazy --pairs 48 --shape 32 256 256
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi


def make_pair(seed: int, shape) -> tuple:
    """Blob nuclei (target) and a blurred, noisy view of them (signal): cheap to make at any size."""
    rng = np.random.default_rng(seed)
    centres = (rng.random((max(4, int(np.prod(shape) / 60000)), 3)) * shape).astype(int)
    spots = np.zeros(shape, np.float32)
    spots[tuple(centres.T)] = 1.0
    target = ndi.gaussian_filter(spots, (2.0, 5.0, 5.0)) * 400.0 + 0.05 * rng.random(shape, np.float32)
    signal = ndi.gaussian_filter(target, 1.5) + 0.2 * rng.standard_normal(shape).astype(np.float32)
    return signal.astype(np.float32), target.astype(np.float32)


def write_dataset(folder: Path, pairs: int, shape, offset: int = 0) -> Path:
    from spotlight_ops.data import ManifestRow, write_manifest, write_volume

    rows = []
    for i in range(offset, offset + pairs):
        suffix = ".ome.zarr" if i % 2 else ".tif"
        signal, target = make_pair(i, shape)
        paths = [folder / f"pair_{i:03d}_{role}{suffix}" for role in ("signal", "target")]
        for path, volume in zip(paths, (signal, target)):
            if not path.exists():
                write_volume(path, volume, voxel_size=(0.29, 0.29, 0.29))
        rows.append(ManifestRow(*paths))
    return write_manifest(folder / f"train_{offset}_{pairs}.csv", rows)


def dataset_bytes(csv: Path) -> int:
    from spotlight_ops.data import read_manifest

    total = 0
    for row in read_manifest(csv):
        for path in (row.signal, row.target):
            total += sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size
    return total


def run(command: list[str], log: Path) -> tuple:
    """(peak RSS in MiB of the child, wall seconds); RUSAGE_CHILDREN keeps the maximum over children, so
    every measurement runs in its own wrapper process."""
    wrapper = [sys.executable, "-c",
               "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)", *command]
    start = time.monotonic()
    with open(log, "w") as handle:
        result = subprocess.run(wrapper, stdout=subprocess.PIPE, stderr=handle, text=True, env=os.environ)
    if result.returncode:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(command)}; see {log}")
    return int(result.stdout.strip().splitlines()[-1]) / 1024.0, time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--shape", type=int, nargs=3, default=[32, 256, 256])
    parser.add_argument("--buffer-size", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--skip-in-memory", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    data.mkdir(exist_ok=True)
    t0 = time.monotonic()
    csv = write_dataset(data, args.pairs, tuple(args.shape))
    csv_double = write_dataset(data, 2 * args.pairs, tuple(args.shape))
    print(f"datasets written in {time.monotonic() - t0:.0f} s", flush=True)
    cli = [sys.executable, "-m", "spotlight_ops.cli", "train"]
    common = ["--depth", "2", "--base-channels", "8", "--patch-size", "16", "64", "64", "--batch-size", "4",
              "--num-threads", "1", "--device", "cpu", "--no-progress", "--tensorboard", "false",
              "--checkpoint-every", "10", "--val-fraction", "0.1", "--val-every", "10", "--val-patches", "8",
              "--augment", "zyx"]
    lazy = ["--buffer-size", str(args.buffer_size), "--buffer-switch-every", "5"]
    results = {"pairs": args.pairs, "shape": args.shape, "buffer_size": args.buffer_size,
               "voxels_per_volume": int(np.prod(args.shape))}
    results["dataset_mib"] = dataset_bytes(csv) / 2**20
    results["dataset_double_mib"] = dataset_bytes(csv_double) / 2**20
    results["baseline_mib"], _ = run([sys.executable, "-c", "import torch, spotlight_ops.training, spotlight_ops.cli"],
                                     args.out / "baseline.log")
    runs = {"buffer": (csv, lazy), "buffer_double": (csv_double, lazy)}
    if not args.skip_in_memory:
        runs["in_memory"] = (csv, [])
    for name, (manifest, extra) in runs.items():
        out = args.out / f"run_{name}"
        command = cli + ["--train-csv", str(manifest), "--out", str(out), "--iterations", str(args.iterations),
                         *common, *extra]
        peak, wall = run(command, args.out / f"{name}.log")
        from spotlight_ops.training.log import read_log

        rows = read_log(out / "log.csv")
        per_it = (rows[-1]["seconds"] - rows[0]["seconds"]) / max(1, len(rows) - 1)
        results[name] = {"peak_rss_mib": peak, "wall_s": wall, "s_per_iteration": per_it,
                         "final_val_loss": [r["val_loss"] for r in rows if r.get("val_loss") is not None][-1]}
        print(name, json.dumps(results[name]), flush=True)
    # exact resume on the lazy run: stop at half, resume to the end, compare with the uninterrupted run
    out = args.out / "run_resumed"
    half = cli + ["--train-csv", str(csv), "--out", str(out), *common, *lazy]
    run(half + ["--iterations", str(args.iterations // 2)], args.out / "resumed_a.log")
    peak, _ = run(half + ["--iterations", str(args.iterations), "--resume"], args.out / "resumed_b.log")
    from spotlight_ops.training.log import read_log

    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    results["resume_exact"] = strip(read_log(out / "log.csv")) == strip(read_log(args.out / "run_buffer" / "log.csv"))
    results["resume_peak_rss_mib"] = peak
    stats_log = (args.out / "resumed_b.log").read_text()
    results["resume_stats_line"] = next((line for line in stats_log.splitlines() if "statistics:" in line), None)
    # prediction with TTA of an OME-Zarr volume
    from spotlight_ops.data import read_manifest

    zarr_input = next(r.signal for r in read_manifest(csv) if r.signal.suffix == ".zarr")
    predict = [sys.executable, "-m", "spotlight_ops.cli", "predict", "--model", str(args.out / "run_buffer"),
               str(zarr_input), "--out", str(args.out / "predictions"), "--tta", "yx", "--batch-tiles", "2",
               "--tile", "32", "128", "128", "--device", "cpu", "--no-progress"]
    peak, wall = run(predict, args.out / "predict.log")
    results["predict_tta"] = {"peak_rss_mib": peak, "wall_s": wall,
                              "output": sorted(p.name for p in (args.out / "predictions").iterdir())}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Seconds per training step of a small F-net at a given CPU thread count.

    python benchmarks/train_threads.py 1          # torch.set_num_threads(1)
    python benchmarks/train_threads.py default    # torch's default (all cores)
    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_threads.py 2

One Adam step of F-net (depth 2, 8 channels) on 4 patches of 16 x 32 x 32 with the Spotlight loss;
prints a JSON line with the median and the slowest of ``N`` (default 15) timed steps after one
warm-up step, and the load average. Run each setting in a fresh process: OpenMP reads
``OMP_WAIT_POLICY`` when torch is loaded. docs/training.md ("Threads") has the results.
"""

import json
import os
import sys
import time

import torch

import spotlight_ops
from spotlight_ops.models import FNet


def main() -> None:
    threads = sys.argv[1] if len(sys.argv) > 1 else "default"
    if threads != "default":
        torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    model = FNet(depth=2, base_channels=8)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    x, y = torch.randn(4, 1, 16, 32, 32), torch.randn(4, 1, 16, 32, 32)

    def step() -> None:
        optimizer.zero_grad()
        spotlight_ops.loss(model(x), y, threshold=0.0).backward()
        optimizer.step()

    step()
    times = []
    for _ in range(int(os.environ.get("N", "15"))):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    times.sort()
    print(json.dumps({"threads": threads, "torch_threads": torch.get_num_threads(),
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "median_s": times[len(times) // 2],
                      "max_s": times[-1], "load_average": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()

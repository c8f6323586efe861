#!/usr/bin/env python
"""otsu_standardize on the CPU: time of the forward and of forward+backward, and the backward's
peak extra memory, for one or more builds of the op library in one run.

    PYTHONPATH=python python benchmarks/bench_standardize.py --library A.so --library B.so=OTHER/python \
        [--shape 1,64,624,924] [--rounds 7] [--threads 1] [--memory-mib 256]

A library given as LIB=DIR runs with DIR as PYTHONPATH (the Python package of that build, for
comparing against another checkout); else with this process's PYTHONPATH.

Each library runs in its own subprocess (two builds cannot register the same operator namespace
in one process); timings alternate between the libraries round by round, so that a change of
machine load hits them alike, and the table gives medians of each round's best of 3 calls.

Peak memory: in a fresh subprocess per library, a float32 input x of --memory-mib MiB, y =
otsu_standardize(x) with grad, then torch.autograd.grad(y, x, w) with w a contiguous tensor
(the gradient a loss hands on); the extra memory is the growth of the process's peak RSS (VmHWM,
reset through /proc/self/clear_refs just before the backward) over its RSS then: the returned
gradient (one input size) plus whatever the backward allocates on the way. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

_CHILD = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
import spotlight_ops as so
mode = sys.argv[1]

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)

if mode == "time":
    shape = tuple(int(s) for s in sys.argv[3].split(","))
    x = (100 + 10 * torch.rand(shape, generator=torch.Generator().manual_seed(0))).contiguous()
    w = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    xg = x.clone().requires_grad_()

    def forward():
        so.otsu_standardize(x)

    def both():
        xg.grad = None
        (so.otsu_standardize(xg) * w).sum().backward()

    forward(); both()
    out = {}
    for name, fn in (("forward", forward), ("forward+backward", both)):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t0)
        out[name] = best
    print(json.dumps(out))
else:
    n = int(sys.argv[3]) * 2**20 // 4
    x = (100 + 10 * torch.rand(1, n)).requires_grad_()
    w = torch.randn(1, n)
    y = so.otsu_standardize(x)
    rss = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    (g,) = torch.autograd.grad(y, x, w)
    print(json.dumps({"extra_mib": (status("VmHWM:") - rss) / 2**20, "input_mib": x.numel() * 4 / 2**20}))
"""


def _run(library: str, *args: str) -> dict:
    library, _, python = library.partition("=")
    env = dict(os.environ, SPOTLIGHT_OPS_LIBRARY=library, OMP_NUM_THREADS=args[1])
    if python:
        env["PYTHONPATH"] = python
    out = subprocess.run([sys.executable, "-c", _CHILD, *args], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", action="append", required=True, help="a libspotlight_ops.so (repeatable)")
    ap.add_argument("--shape", action="append", help="comma-separated shape (repeatable)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--memory-mib", type=int, default=256, help="input size of the memory probe (0: skip)")
    args = ap.parse_args()
    shapes = args.shape or ["24,1,32,64,64", "1,1,64,624,924"]
    for shape in shapes:
        times = {lib: {"forward": [], "forward+backward": []} for lib in args.library}
        for _ in range(args.rounds):
            for lib in args.library:
                for k, v in _run(lib, "time", args.threads, shape).items():
                    times[lib][k].append(v)
        print(f"shape {shape}, {args.threads} thread(s), median of {args.rounds} rounds (ms):")
        for lib in args.library:
            row = "  ".join(f"{k} {1e3 * statistics.median(v):8.2f}" for k, v in times[lib].items())
            print(f"  {row}  {lib}")
    if args.memory_mib:
        for lib in args.library:
            m = _run(lib, "memory", args.threads, str(args.memory_mib))
            print(f"backward peak extra memory: {m['extra_mib']:.0f} MiB for a {m['input_mib']:.0f} MiB input  {lib}")


if __name__ == "__main__":
    main()

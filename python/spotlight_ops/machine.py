"""Where numbers were measured: the machine a report, a benchmark page or an experiment states.

One helper for every page that quotes timings or results (the demo's report, ``benchmarks/bench_loss.py``,
``benchmarks/real_data_experiment.py``): the CPU model, the load average, and a one-line description.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Optional


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> Optional[tuple[float, float, float]]:
    """The 1, 5 and 15 minute load averages; None where the system has none."""
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def machine_description(num_threads: Optional[int] = None) -> str:
    """Host, CPU, torch threads, GPU and load average, in one line."""
    import torch

    load = load_average()
    threads = num_threads if num_threads is not None else torch.get_num_threads()
    return (f"{platform.node() or 'unknown host'} ({platform.system()} {platform.machine()}, {cpu_model()}, "
            f"{os.cpu_count()} CPUs, torch {torch.__version__} with {threads} threads, "
            f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}); "
            f"load average {', '.join(f'{x:.2f}' for x in load) if load else 'n/a'}")

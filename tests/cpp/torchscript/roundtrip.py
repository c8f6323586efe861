"""TorchScript round trip: script a module calling torch.ops.spotlight.loss in
Python, save it, run it from the C++ runner, and compare loss and gradient.

    python roundtrip.py RUNNER LIBRARY WORKDIR
"""

import subprocess
import sys
import warnings
from pathlib import Path

import torch

runner, library, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
torch.ops.load_library(library)
work.mkdir(parents=True, exist_ok=True)


class SpotlightCriterion(torch.nn.Module):
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.ops.spotlight.loss(pred, target, reduction="mean")  # the schema's defaults


class Inputs(torch.nn.Module):
    def __init__(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        super().__init__()
        self.pred, self.target = pred, target


gen = torch.Generator().manual_seed(0)
target = torch.rand(3, 1, 8, 16, 16, generator=gen, dtype=torch.float64) ** 3
pred = torch.rand(3, 1, 8, 16, 16, generator=gen, dtype=torch.float64)

with warnings.catch_warnings():  # torch.jit.script is deprecated in recent torch, still supported
    warnings.simplefilter("ignore", FutureWarning)
    torch.jit.script(SpotlightCriterion()).save(str(work / "criterion.pt"))
    torch.jit.script(Inputs(pred, target)).save(str(work / "inputs.pt"))

p = pred.clone().requires_grad_(True)
loss = SpotlightCriterion()(p, target)
loss.backward()
expected = (loss.item(), p.grad.sum().item())

out = subprocess.run([runner, str(work / "criterion.pt"), str(work / "inputs.pt")], capture_output=True, text=True)
print(out.stdout, out.stderr)
if out.returncode != 0:
    sys.exit(f"runner failed with {out.returncode}")
got = tuple(float(v) for v in out.stdout.split())
print("python:", expected, "c++:", got)
ok = all(abs(a - b) <= 1e-12 * max(1.0, abs(a)) for a, b in zip(expected, got))
sys.exit(0 if ok and len(got) == 2 else "mismatch between Python and C++")

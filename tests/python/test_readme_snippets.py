"""The README's code is the product's first example: its C++ snippet must compile and compute the op's loss."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import spotlight_ops

REPO = Path(__file__).resolve().parents[2]

# The snippet uses pred, target, samples, voxels_per_sample, grad_out and grad_pred: the harness
# declares them on a fixed batch, runs the snippet and prints the loss and the gradient.
HARNESS = """#include <cstdio>
#include <vector>
{includes}
int main() {{
  const long samples = 2, voxels_per_sample = 60;
  std::vector<float> p(samples * voxels_per_sample), y(p.size()), g(p.size());
  for (std::size_t i = 0; i < p.size(); ++i) {{
    y[i] = static_cast<float>((i * 7) % 11) / 10.0f;
    p[i] = static_cast<float>((i * 5) % 13) / 12.0f;
  }}
  const float* pred = p.data();
  const float* target = y.data();
  float* grad_pred = g.data();
  float grad_out = 1.0f;
{body}
  std::printf("%.9g\\n", static_cast<double>(loss));
  for (float v : g) std::printf("%.9g\\n", static_cast<double>(v));
}}
"""


def readme_cpp_snippet() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Use it from C++", 1)[1]
    return re.search(r"```cpp\n(.*?)```", section, re.S).group(1)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_readme_cpp_snippet_compiles_and_matches_the_op(tmp_path):
    snippet = readme_cpp_snippet()
    includes = "\n".join(line for line in snippet.splitlines() if line.startswith("#include"))
    body = "\n".join(line for line in snippet.splitlines() if not line.startswith("#include"))
    source = tmp_path / "snippet.cpp"
    source.write_text(HARNESS.format(includes=includes, body=body))
    exe = tmp_path / "snippet"
    build = subprocess.run(["g++", "-std=c++20", "-O1", f"-I{REPO / 'include'}", str(source), "-o", str(exe),
                            "-pthread"], capture_output=True, text=True)
    assert build.returncode == 0, f"the README's C++ snippet does not compile:\n{build.stderr[-3000:]}"
    values = [float(v) for v in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]

    i = torch.arange(2 * 60)
    target = (((i * 7) % 11).float() / 10).reshape(2, 60)
    pred = (((i * 5) % 13).float() / 12).reshape(2, 60).requires_grad_()
    loss = spotlight_ops.loss(pred, target)
    loss.backward()
    assert values[0] == pytest.approx(loss.item(), rel=1e-6)
    torch.testing.assert_close(torch.tensor(values[1:]).reshape(2, 60), pred.grad, rtol=1e-5, atol=1e-7)


# The Python snippets of the README and of docs/: every ```python block runs, in a fresh namespace
# holding the names the snippets take as given (a model, a loader, an optimizer, a prediction, a
# target, a weight map), in a folder holding the files they read; a block that is not meant to run
# (it trains, or needs the user's data) says so on the line before it: <!-- not run by the tests: why -->.
NOT_RUN = "<!-- not run by the tests:"
DOCUMENTS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]


def python_blocks(document: str) -> list:
    """(line number, code, marked not to run) of every ```python block of ``document``."""
    lines = (REPO / document).read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            start = i
            i += 1
            while lines[i].strip() != "```":
                i += 1
            marked = start > 0 and lines[start - 1].strip().startswith(NOT_RUN)
            blocks.append((start + 1, "\n".join(lines[start + 1:i]), marked))
        i += 1
    return blocks


def snippet_namespace() -> dict:
    torch.manual_seed(0)
    batch = (2, 1, 8, 16, 16)
    target = torch.rand(batch)
    model = torch.nn.Conv3d(1, 1, 3, padding=1)
    return {"model": model, "optimizer": torch.optim.Adam(model.parameters()),
            "loader": [(torch.rand(batch), target)], "target": target,
            "pred": torch.rand(batch, requires_grad=True), "weight_map": target > 0.5}


CASES = [(doc, line, code) for doc in DOCUMENTS for line, code, marked in python_blocks(doc) if not marked]


def test_the_snippets_are_found():
    assert any(doc == "README.md" for doc, _, _ in CASES)
    assert sum(len(python_blocks(doc)) for doc in DOCUMENTS) > len(CASES)  # and some are marked


@pytest.mark.parametrize("document, line, code", CASES, ids=[f"{d}:{n}" for d, n, _ in CASES])
def test_python_snippet_runs(document, line, code, tmp_path, monkeypatch):
    if "ome.zarr" in code:
        pytest.importorskip("ome_zarr")
    from spotlight_ops.data import write_volume

    monkeypatch.chdir(tmp_path)
    write_volume(tmp_path / "cell_000_brightfield.tif", torch.rand(8, 16, 16).numpy(), voxel_size=(0.5, 0.2, 0.2))
    exec(compile(code, f"{document}:{line}", "exec"), snippet_namespace())  # noqa: S102  (our own docs)

"""The ops under torch.compile(fullgraph=True), torch.export and TorchScript."""

from __future__ import annotations

import warnings

import pytest
import torch

import spotlight_ops as so
from helpers import nuclei_like, pred_like


class Criterion(torch.nn.Module):
    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.ops.spotlight.loss(pred, target, None, 0.5, -0.95, 1e-6, 256, "foreground", "batch")


@pytest.mark.parametrize("threshold", [None, 0.2])
def test_compile_fullgraph_forward_and_backward(threshold):
    torch._dynamo.reset()
    y = nuclei_like(2, seed=1)
    p = pred_like(y).requires_grad_()

    def step(pred, target):
        return so.loss(pred, target, threshold) + 0.1 * so.tunable_sigmoid(pred).mean()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    got = compiled(p, y)
    (g,) = torch.autograd.grad(got, p)
    expected = step(p, y)
    (ge,) = torch.autograd.grad(expected, p)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(g, ge)


def test_compile_inductor_with_otsu_ops():
    torch._dynamo.reset()
    y = nuclei_like(2, seed=2)

    def prep(x):
        return so.otsu_standardize(x) * 2 + so.otsu_threshold(x).sum()

    torch.testing.assert_close(torch.compile(prep, fullgraph=True)(y), prep(y))


def test_export_module_calling_the_loss():
    y = nuclei_like(2, seed=3)
    p = pred_like(y)
    ep = torch.export.export(so.SpotlightLoss(reduction="none"), (p, y))
    assert "spotlight.loss" in str(ep.graph)
    torch.testing.assert_close(ep.module()(p, y), so.loss(p, y, reduction="none"))


def test_torchscript_script_save_load(tmp_path):
    y = nuclei_like(2, seed=4)
    p = pred_like(y).requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(Criterion())
        scripted.save(str(tmp_path / "c.pt"))
        loaded = torch.jit.load(str(tmp_path / "c.pt"))
    out = loaded(p, y)
    out.backward()
    torch.testing.assert_close(out, so.loss(p, y))
    assert p.grad is not None and torch.isfinite(p.grad).all()

"""SpotlightLoss's collapse guard and units check (docs/collapse.md): warns on a collapse and on targets in
other units than T assumes, stays quiet on healthy calls, reads the fused pass's counts with one host sync
per check, and leaves torch.compile, torch.export and TorchScript alone."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch

import spotlight_ops as so
from spotlight_ops.collapse import CollapseGuard, CollapseWarning
from spotlight_ops.training.monitor import foreground_fractions

from conftest import REPO, shared_data_dir


def _targets(seed: int, n: int = 4) -> torch.Tensor:
    """Otsu-standardized-like targets: about 35 % of the voxels above 0."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 4, 8, 8, generator=g) - 0.4


def _calls(criterion, count: int, prediction) -> list:
    """``count`` training calls; the CollapseWarnings they raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(count):
            y = _targets(i)
            p = prediction(y, i).requires_grad_()
            criterion(p, y).backward()
    return [w for w in caught if issubclass(w.category, CollapseWarning)]


def _collapsed(y, i):
    return y.abs() + 0.5  # every voxel above T = 0


def _healthy(y, i):
    return y + 0.3 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1000 + i))


def test_a_collapse_warns_once_with_what_to_try():
    caught = _calls(so.SpotlightLoss(threshold=0.0), 120, _collapsed)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "call 50: over the last 50 calls" in message and "collapsing above T" in message
    assert 'SpotlightLoss.from_preset("trained")' in message and "collapse_warning=False" in message
    assert "\n" not in message


def test_a_healthy_run_and_an_opted_out_one_do_not_warn():
    assert _calls(so.SpotlightLoss(threshold=0.0), 120, _healthy) == []
    quiet = so.SpotlightLoss(threshold=0.0, collapse_warning=False)
    assert _calls(quiet, 120, _collapsed) == [] and quiet._guard is None


def test_the_guard_reads_the_counts_once_per_check(monkeypatch):
    """At most one host sync every check_every calls (and one at the first): the only sync is _rows's."""
    reads = []
    rows = CollapseGuard._rows
    monkeypatch.setattr(CollapseGuard, "_rows", staticmethod(lambda pending: reads.append(len(pending))
                                                              or rows(pending)))
    _calls(so.SpotlightLoss(threshold=0.0, check_every=10), 35, _healthy)
    assert reads == [1, 10, 10, 10]  # calls 1, 11, 21, 31; 32-35 pending
    with torch.no_grad():  # calls that build no gradient (validation) are not watched
        criterion = so.SpotlightLoss(threshold=0.0)
        criterion(_targets(0).requires_grad_(), _targets(1))
        assert criterion._guard.calls == 0 and criterion.last_sums is None


def test_fractions_are_the_fused_pass_counts():
    criterion = so.SpotlightLoss(threshold=0.25)
    y = _targets(3)
    p = _healthy(y, 3).requires_grad_()
    criterion(p, y)
    got = criterion.fractions().tolist()
    assert got == pytest.approx(foreground_fractions(p, y, 0.25).tolist(), abs=1e-7)
    assert got == pytest.approx([float(np.mean(p.detach().numpy() > 0.25)), float(np.mean(y.numpy() > 0.25))])
    criterion = so.SpotlightLoss()  # Otsu per sample: each sample's own T
    criterion(p, y)
    assert criterion.fractions().tolist() == pytest.approx(foreground_fractions(p, y, None).tolist(), abs=1e-7)


def test_targets_in_raw_units_warn_once_with_the_fix():
    """uint16-like fluorescence as float with T = 0: every voxel above T, and a loss of order 1e6."""
    raw = lambda y, i: y  # noqa: E731
    criterion = so.SpotlightLoss(threshold=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(30):
            y = 100.0 + 2000.0 * torch.rand(2, 1, 4, 8, 8, generator=torch.Generator().manual_seed(i))
            criterion(torch.zeros_like(y).requires_grad_(), raw(y, i)).backward()
    messages = [str(w.message) for w in caught if issubclass(w.category, CollapseWarning)]
    units = [m for m in messages if "otsu_standardize" in m]
    assert len(units) == 2, messages  # once each rule, at the first call
    assert any("every voxel of every sample lay above the given threshold" in m and "threshold=None" in m
               for m in units)
    assert any("the loss per pool was at least" in m and "Dice term cannot steer" in m for m in units)


def test_the_scale_rule_alone_and_standardized_targets_pass():
    criterion = so.SpotlightLoss()  # Otsu thresholds: the threshold rule does not apply
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = 1000.0 * _targets(5)
        criterion(torch.zeros_like(y).requires_grad_(), y).backward()
    messages = [str(w.message) for w in caught if issubclass(w.category, CollapseWarning)]
    assert len(messages) == 1 and "the loss per pool was at least" in messages[0]
    assert _calls(so.SpotlightLoss.from_preset("trained"), 30, _healthy) == []
    # lam = 1: the Dice term has no weight, the scale rule has nothing to protect
    lone = so.SpotlightLoss(lam=1.0)
    assert not [w for w in _calls(lone, 2, lambda y, i: 1000 * y) if "loss per pool" in str(w.message)]


def test_the_module_is_plain_under_compile_export_and_script():
    y = _targets(0)
    p = _collapsed(y, 0).requires_grad_()
    criterion = so.SpotlightLoss.from_preset("trained")
    torch._dynamo.reset()
    compiled = torch.compile(lambda a, b: criterion(a, b), fullgraph=True, backend="aot_eager")
    got = compiled(p, y)
    (g,) = torch.autograd.grad(got, p)
    expected = so.loss(p, y, 0.0, mse_term="plain")
    (ge,) = torch.autograd.grad(expected, p)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(g, ge)
    assert criterion._guard.calls == 0  # compiled calls are not watched
    exported = torch.export.export(criterion, (p.detach(), y))
    torch.testing.assert_close(exported.module()(p.detach(), y), expected.detach())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(criterion)
    torch.testing.assert_close(scripted(p, y), expected)


def test_mixed_dtypes_promote_as_mse_loss_does():
    y = _targets(1)
    p = _healthy(y, 1).to(torch.bfloat16).requires_grad_()
    got = so.loss(p, y, 0.0, mse_term="plain")
    assert got.dtype == torch.nn.functional.mse_loss(p, y).dtype == torch.float32
    expected = so.loss(p.detach().float(), y, 0.0, mse_term="plain")
    assert torch.equal(got.detach(), expected)
    got.backward()
    assert p.grad.dtype == torch.bfloat16
    p64 = p.detach().double().requires_grad_()
    assert so.SpotlightLoss(threshold=0.0)(p64, y).dtype == torch.float64


def _readme_loop():
    spec = importlib.util.spec_from_file_location("readme_loop", REPO / "benchmarks" / "readme_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(shared_data_dir() is None or not (shared_data_dir() / "fnet_sample").is_dir(),
                    reason="real data fnet_sample not found")
def test_readme_loop_on_the_real_pair(tmp_path):
    """The issue's setting (docs/collapse.md): the paper's loss warns before iteration 100, the trained
    objective runs 200 iterations without a warning."""
    loop = _readme_loop()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        paper = loop.run(so.SpotlightLoss(threshold=0.0), 100, stop_at_warning=True, work=tmp_path)
        trained = loop.run(so.SpotlightLoss.from_preset("trained"), 200, work=tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert paper["warnings"] and paper["warnings"][0][0] < 100, paper["warnings"]
    assert "collapsing above T" in paper["warnings"][0][1]
    assert trained["warnings"] == [] and trained["iterations"] == 200

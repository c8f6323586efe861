"""spotlight_ops.compat.viscy.SpotlightLoss against VisCy's own SpotlightLoss (viscy_utils/losses/spotlight.py,
fetched by scripts/setup.sh; $SPOTLIGHT_VISCY_LOSS points at another copy): the constructor, its
checks, the forward signature, values and gradients (float64, 1e-6 relative). Skips without the file."""

from __future__ import annotations

import importlib
import inspect

import pytest
import torch
import yaml

from spotlight_ops.compat.viscy import SpotlightLoss

from test_presets import BATCHES, check_same, real_batches, viscy_loss_class  # noqa: F401  (a fixture)


@pytest.fixture(scope="module")
def viscy(viscy_loss_class):
    """VisCy's class, loaded from its file by test_presets' fixture (skips without the file)."""
    return viscy_loss_class


def test_signatures_are_viscys(viscy):
    """The same argument names, order, kinds and defaults (annotations are written differently)."""
    for method in ("__init__", "forward"):
        ours, theirs = (inspect.signature(getattr(cls, method)) for cls in (SpotlightLoss, viscy))
        assert [(p.name, p.default, p.kind) for p in ours.parameters.values()] == \
            [(p.name, p.default, p.kind) for p in theirs.parameters.values()]


@pytest.mark.parametrize("kwargs", [dict(sigmoid_k=0.0), dict(sigmoid_k=-1.0), dict(sigmoid_k=0.5),
                                    dict(sigmoid_k=float("nan")), dict(lambda_mse=0.0), dict(lambda_mse=1.0),
                                    dict(lambda_mse=float("nan")), dict(eps=0.0), dict(eps=-1e-6),
                                    dict(sigmoid_k=0.0, lambda_mse=2.0)])
def test_the_same_errors(viscy, kwargs):
    with pytest.raises(Exception) as theirs:
        viscy(**kwargs)
    with pytest.raises(type(theirs.value)) as ours:
        SpotlightLoss(**kwargs)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("fg_threshold", [0.0, None, 0.3, -0.25])
@pytest.mark.parametrize("name,pred,target", BATCHES, ids=[b[0] for b in BATCHES])
def test_values_and_gradients_are_viscys(viscy, fg_threshold, name, pred, target):
    kwargs = dict(lambda_mse=0.3, sigmoid_k=-0.8, eps=1e-5, fg_threshold=fg_threshold)
    ours, theirs = SpotlightLoss(**kwargs), viscy(**kwargs)
    check_same(ours, theirs, pred, target)
    mask = torch.rand(target.shape, generator=torch.Generator().manual_seed(3)) > 0.5
    for given in (mask, mask.double()):  # VisCy takes any 0/1 mask
        check_same(lambda p, y: ours(p, y, fg_mask=given), lambda p, y: theirs(p, y, fg_mask=given), pred, target)


def test_real_volumes_and_2d_batches(viscy):
    batches = real_batches()
    if not batches:
        pytest.skip("real data not found")
    for fg_threshold in (0.0, None):
        for _, pred, target in batches:
            check_same(SpotlightLoss(fg_threshold=fg_threshold), viscy(fg_threshold=fg_threshold), pred, target)
            # VisCy takes (B, C, Y, X) too: one z-plane
            check_same(SpotlightLoss(fg_threshold=fg_threshold), viscy(fg_threshold=fg_threshold),
                       pred[:, :, 5], target[:, :, 5])


def test_a_viscy_recipe_switches_by_its_class_path(viscy):
    recipe = yaml.safe_load("""
loss_function:
  class_path: spotlight_ops.compat.viscy.SpotlightLoss
  init_args: {lambda_mse: 0.4, sigmoid_k: -0.9, fg_threshold: 0.0}
""")["loss_function"]
    module, _, name = recipe["class_path"].rpartition(".")
    criterion = getattr(importlib.import_module(module), name)(**recipe["init_args"])
    _, pred, target = BATCHES[0]
    check_same(criterion, viscy(**recipe["init_args"]), pred, target)


def test_what_it_refuses():
    p, y = torch.randn(2, 1, 4, 8, 8), torch.randn(2, 1, 4, 8, 8)
    with pytest.raises(ValueError, match="fg_mask must be binary"):
        SpotlightLoss()(p, y, fg_mask=torch.full(y.shape, 0.5))
    with pytest.raises(ValueError, match="fg_mask must have the target's shape"):
        SpotlightLoss()(p, y, fg_mask=torch.ones(2, 1, 4, 8, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="pred and target must have one shape"):
        SpotlightLoss()(p[:1], y)
    with pytest.raises(TypeError, match="fg_threshold must be None or a number, got '0.5'"):
        SpotlightLoss(fg_threshold="0.5")
    assert "lambda_mse=0.5, sigmoid_k=-0.95, eps=1e-06, fg_threshold=None" in repr(SpotlightLoss())

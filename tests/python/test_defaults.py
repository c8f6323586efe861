"""spotlight_ops.defaults owns the loss's defaults and option names: checked against the SPEC's
numbers, the op schemas, the C++ checks' lists, every Python signature and the docs that state them."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch

import spotlight_ops
from spotlight_ops import defaults as D, functional, reference
from spotlight_ops.losses import SpotlightLoss
from spotlight_ops.training import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
OPS = ("otsu_threshold", "otsu_standardize", "tunable_sigmoid", "masked_mse", "soft_dice", "loss")


def test_the_module_states_the_spec():
    # independent literals: SPEC sections 1, 3, 4, 5 and 10
    assert (D.LAM, D.K, D.EPS, D.BINS) == (0.5, -0.95, 1e-6, 256)
    assert (D.REDUCTION, D.MSE_NORMALIZATION, D.SOFT_MASK, D.MASK_RULE) == ("batch", "foreground", "clamped", "greater")
    assert set(D.CHOICES["reduction"]) == {"batch", "mean", "sum", "none"}
    assert D.CHOICES["mse_term"] == ("masked", "plain") and D.MSE_TERM == "masked"  # SPEC 4, 11: the paper's first
    assert set(D.CHOICES) == {"reduction", "mse_normalization", "soft_mask", "mask_rule", "dice_denominator",
                              "empty_pools", "mse_term"}
    for name, allowed in D.CHOICES.items():
        assert D.LOSS_DEFAULTS[name] == allowed[0]


def _schema_defaults(op: str) -> dict:
    schema = getattr(torch.ops.spotlight, op).default._schema
    return {a.name: a.default_value for a in schema.arguments if a.has_default_value()}


@pytest.mark.parametrize("op", OPS)
def test_op_schemas_have_the_python_defaults(op):
    schema = _schema_defaults(op)
    assert schema, op
    for name, value in schema.items():
        assert D.LOSS_DEFAULTS[name] == value, (op, name)
    if op == "loss":
        assert schema == D.LOSS_DEFAULTS


@pytest.mark.parametrize("op", ["loss", "_loss_and_sums"])
def test_every_overload_takes_every_option_with_its_python_type(op):
    """The schemas are written from one C++ list (spotlight::for_each_option): each option once, typed as
    defaults.OPTIONS says, the same in every overload."""
    kinds = {float: "float", int: "int", bool: "bool", str: "str"}
    for overload in getattr(torch.ops.spotlight, op).overloads():
        arguments = getattr(getattr(torch.ops.spotlight, op), overload)._schema.arguments
        options = {a.name: str(a.type) for a in arguments if a.name in D.OPTIONS}
        assert options == {name: kinds[kind] for name, kind in D.OPTIONS.items()}, (op, overload)


@pytest.mark.parametrize("name", sorted(D.CHOICES))
def test_the_op_accepts_exactly_the_python_choices(name):
    """The C++ check's list of allowed strings (from its error message) is the Python one."""
    p = torch.rand(2, 1, 3, 4)
    with pytest.raises(ValueError, match=name) as info:
        torch.ops.spotlight.loss(p, p, **{name: "no such option"})
    listed = re.findall(r"'([a-z_]+)'", str(info.value).split(", got")[0])
    assert tuple(listed) == D.CHOICES[name]
    for value in D.CHOICES[name]:
        torch.ops.spotlight.loss(p, p, 0.5, **{name: value})  # every listed value runs


def test_every_option_has_its_help_line():
    assert set(D.OPTION_HELP) == set(D.OPTIONS)  # spotlight train --help


def _python_defaults(fn) -> dict:
    return {n: p.default for n, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("fn", [functional.loss, reference.loss, SpotlightLoss.__init__,
                                functional.otsu_threshold, functional.otsu_standardize, functional.tunable_sigmoid,
                                functional.masked_mse, functional.soft_dice, reference.otsu_threshold,
                                reference.tunable_sigmoid, reference.masked_mse, reference.soft_dice],
                         ids=lambda fn: f"{fn.__module__}.{fn.__qualname__}")
def test_python_signatures_have_the_defaults(fn):
    found = _python_defaults(fn)
    assert found
    for name, value in found.items():
        if name in ("collapse_warning", "check_every"):  # SpotlightLoss's guard, not an option of the loss
            continue
        assert D.LOSS_DEFAULTS[name] == value, name


def test_training_config_defaults():
    config = TrainConfig()  # the "trained" preset: the defaults but for the plain term and T = 0
    assert spotlight_ops.presets.PRESETS["trained"] == {"threshold": 0.0, "mse_term": "plain"}
    assert {name: getattr(config, name) for name in D.OPTIONS} == {**{n: D.LOSS_DEFAULTS[n] for n in D.OPTIONS},
                                                                   "mse_term": "plain"}
    assert spotlight_ops.presets.PRESETS["spotlight"] == {}  # the defaults themselves


def _number(x: float) -> str:
    """As the docs write numbers: 0.5, -0.95, 1e-6."""
    return f"{x:g}".replace("e-0", "e-")


def _text(path: str) -> str:
    return (ROOT / path).read_text()


def test_readme_states_the_defaults():
    readme = _text("README.md")
    signature = re.search(r"The functional API is `spotlight_ops\.loss\((.*?)\)`", readme, re.S).group(1)
    stated = {}
    for item in re.split(r",\s*", " ".join(signature.split())):
        if "=" in item:
            name, value = item.split("=")
            stated[name] = eval(value)  # noqa: S307  (literals of our own README)
    assert stated == {k: v for k, v in D.LOSS_DEFAULTS.items()}
    assert f"(`lam = {D.LAM}`, `k = {D.K}`)" in readme
    assert f"lam={D.LAM}, k={D.K}" in readme  # the preset "trained" spelled out
    listed = re.search(r"`reduction`: (.*?) over per-sample pools", readme, re.S).group(1)
    assert tuple(re.findall(r'`"([a-z]+)"`', listed)) == D.CHOICES["reduction"]


def test_docs_tables_state_the_defaults():
    training = _text("docs/training.md")
    assert f"| `lam`, `k` | {_number(D.LAM)}, {_number(D.K)} |" in training
    variants = _text("docs/variants.md")
    assert f"| lam, k, eps | {_number(D.LAM)}, {_number(D.K)}, {_number(D.EPS)} |" in variants


def test_fake_kernels_take_their_defaults_from_the_module():
    """The fake kernels are all named ``_`` (reachable only through the registry): read their source."""
    import ast

    from spotlight_ops import _fake

    tree = ast.parse(Path(_fake.__file__).read_text())
    fakes = [f for f in tree.body if isinstance(f, ast.FunctionDef) and any(
        isinstance(d, ast.Call) and getattr(d.func, "attr", "") == "register_fake" for d in f.decorator_list)]
    assert len(fakes) >= len(OPS)
    for function in fakes:
        arguments = function.args
        for default in [*arguments.defaults, *(d for d in arguments.kw_defaults if d is not None)]:
            if isinstance(default, ast.Constant):
                assert default.value in (None, False), (function.lineno, default.value)
            else:
                assert isinstance(default, ast.Name) and hasattr(D, default.id), (function.lineno, ast.dump(default))

"""One validator for the loss's options (include/spotlight/core/options.hpp): every front end (``loss``,
``SpotlightLoss`` at construction, ``torch.compile``, ``TrainConfig`` and ``spotlight train``) reports a bad
option with the same one line, values no schema type holds (``bins=2.5``, ``bins=2**63``) included; and
``spotlight train`` selects every preset and option."""

from __future__ import annotations

import pytest
import torch

import spotlight_ops as so
from spotlight_cli import main
from spotlight_ops.training import TrainConfig, make_criterion

P = torch.rand(2, 1, 4, 6, 6)

CASES = [
    ({"lam": 2.0}, "spotlight: lam must lie in [0, 1], got 2"),
    ({"k": -1.0}, "spotlight: k must lie in the open interval (-1, 1), got -1"),
    ({"eps": float("inf")}, "spotlight: eps must be finite and >= 0, got inf"),
    ({"bins": 2.5}, "spotlight: bins must be an integer in [2, 65536], got 2.5"),
    ({"bins": 2 ** 63}, "spotlight: bins must be an integer in [2, 65536], got 9223372036854775808"),
    ({"bins": 1 << 20}, "spotlight: bins must be an integer in [2, 65536], got 1048576"),
    ({"reduction": "max"}, "spotlight: reduction must be one of 'batch', 'mean', 'sum', 'none', got 'max'"),
    ({"mse_term": "both"}, "spotlight: mse_term must be 'masked' or 'plain', got 'both'"),
    ({"soft_mask": "viscy", "k": 0.5}, "spotlight: k must be <= 0 for soft_mask 'viscy' (the sigmoid of an "
                                       "unclamped P - T has a pole for k > 0), got 0.5"),
]
IDS = [",".join(f"{k}={v!r}" for k, v in case.items()) for case, _ in CASES]


def _message(call) -> str:
    with pytest.raises(Exception) as info:
        call()
    return str(info.value)


@pytest.mark.parametrize("options,line", CASES, ids=IDS)
def test_every_front_end_reports_the_same_line(options, line, capsys):
    assert _message(lambda: so.loss(P, P, **options)) == line
    assert _message(lambda: so.SpotlightLoss(**options)) == line
    assert _message(lambda: so.loss_preset(P, P, "viscy", **options)) == line
    assert _message(lambda: TrainConfig(**options)) == line
    torch._dynamo.reset()
    compiled = torch.compile(lambda p, y: so.loss(p, y, **options), fullgraph=True, backend="eager")
    assert line in _message(lambda: compiled(P, P))  # inside dynamo's report of the failed trace
    flags = [item for name, value in options.items() for item in ("--" + name.replace("_", "-"), str(value))]
    assert main(["train", "--train-csv", "x.csv", "--out", "unused", *flags]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"spotlight train: error: {line}"]


def test_huge_seed_and_string_threshold_are_one_line(capsys):
    assert main(["train", "--train-csv", "x.csv", "--out", "unused", "--seed", str(2 ** 64)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"spotlight train: error: seed must be an integer in [0, {2 ** 64 - 1}] (what torch.manual_seed "
                   f"takes), got {2 ** 64}"]
    with pytest.raises(ValueError, match="^seed must be an integer in"):
        TrainConfig(seed=-1)
    assert TrainConfig(seed=2 ** 64 - 1).seed == 2 ** 64 - 1
    line = "spotlight: threshold must be None, a number or a tensor of 1 or N values, got 'abc'"
    assert _message(lambda: so.loss(P, P, "abc")) == line
    assert _message(lambda: so.SpotlightLoss(threshold="abc")) == line


def test_numeric_strings_of_a_yaml_file_are_numbers(tmp_path):
    (tmp_path / "c.yaml").write_text("lam: 5e-1\nk: -9.5e-1\nbins: 128\n")
    from spotlight_ops.training.config import build_config

    config = build_config(tmp_path / "c.yaml")
    assert (config.lam, config.k, config.bins) == (0.5, -0.95, 128)
    assert type(config.lam) is float and type(config.bins) is int
    assert so.functional.loss_options(lam="0.25", per_channel="True")["lam"] == 0.25


@pytest.mark.parametrize("preset", list(so.presets.PRESETS))
def test_spotlight_train_selects_every_preset(preset):
    from spotlight_ops.cli import build_parser
    from spotlight_ops.training.cli import config_from_args

    args = build_parser().parse_args(["train", "--train-csv", "x.csv", "--preset", preset])
    config = config_from_args(args)
    criterion = make_criterion(config)
    expected = so.SpotlightLoss.from_preset(preset)
    assert criterion.options() == {**expected.options(), "threshold": criterion.threshold}
    assert criterion.threshold == so.presets.PRESETS[preset].get("threshold")  # Otsu-standardized targets


def test_spotlight_train_sets_every_option_by_flag():
    from spotlight_ops.cli import build_parser
    from spotlight_ops.training.cli import config_from_args

    flags = ["--preset", "viscy", "--soft-mask", "unclamped", "--mse-term", "plain", "--lam", "0.3", "--k", "-0.5",
             "--eps", "1e-5", "--bins", "64", "--mask-rule", "greater", "--dice-denominator", "squared",
             "--empty-pools", "spotlight", "--no-per-channel", "--mse-normalization", "all", "--reduction", "sum"]
    config = config_from_args(build_parser().parse_args(["train", "--train-csv", "x.csv", *flags]))
    assert make_criterion(config).options() == {
        "threshold": 0.0, "lam": 0.3, "k": -0.5, "eps": 1e-5, "bins": 64, "mse_normalization": "all",
        "reduction": "sum", "soft_mask": "unclamped", "mask_rule": "greater", "dice_denominator": "squared",
        "empty_pools": "spotlight", "per_channel": False, "mse_term": "plain"}
    zscored = TrainConfig(preset="viscy", target_norm="zscore")
    assert make_criterion(zscored).threshold is None  # a z-scored target's foreground does not start at 0


def test_train_help_states_the_defaults_truthfully(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Defaults are the paper's hyperparameters" not in text and "MMSE weight" not in text
    assert "the preset 'trained'" in text and "weight of the MSE term" in text
    assert "trained: plain" in text and "trained: 0.5" in text

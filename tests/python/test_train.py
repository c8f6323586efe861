"""Training: paper defaults, YAML + flags, the loss wiring, run folders, AMP selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

import spotlight_ops
from spotlight_ops.cli import build_parser, main
from spotlight_ops.predict import load_model
from spotlight_ops.training import TrainConfig, build_config, make_criterion, train
from spotlight_ops.training.cli import config_from_args
from spotlight_ops.training.log import read_log
from spotlight_ops.training.trainer import _amp_settings

from _training_helpers import tiny_config, tiny_dataset, tiny_flags


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


def test_defaults_are_the_papers():
    c = TrainConfig()
    assert (c.lr, c.betas, c.batch_size, c.patch_size, c.iterations) == (1e-3, (0.5, 0.999), 24, (32, 64, 64), 50_000)
    assert (c.lam, c.k, c.depth, c.base_channels) == (0.5, -0.95, 4, 32)
    assert (c.target_norm, c.min_foreground_fraction, c.smooth_threshold) == ("otsu", 0.001, False)


def test_yaml_then_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"loss": "mse", "lr": 0.01, "patch_size": [16, 32, 32], "iterations": 7}))
    args = build_parser().parse_args(["train", "--config", str(path), "--lr", "0.002", "--train-csv", "x.csv"])
    config = config_from_args(args)
    assert (config.loss, config.lr, config.patch_size, config.iterations) == ("mse", 0.002, (16, 32, 32), 7)
    assert config.batch_size == 24 and config.train_csv == "x.csv"


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("learning_rate: 0.1\n")
    with pytest.raises(ValueError, match="bad.yaml: unknown config key.*learning_rate"):
        build_config(path)
    with pytest.raises(ValueError, match="multiple of 2\\*\\*depth = 16"):
        TrainConfig(patch_size=(8, 64, 64))
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="l1")
    with pytest.raises(ValueError, match="k must"):
        TrainConfig(k=1.0)
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ValueError, match="mapping"):
        build_config(tmp_path / "list.yaml")


def test_spotlight_criterion_uses_threshold_zero_on_otsu_targets():
    pred, target = torch.randn(2, 1, 4, 8, 8), torch.randn(2, 1, 4, 8, 8)
    got = make_criterion(TrainConfig(loss="spotlight", mse_term="masked"))(pred, target)
    torch.testing.assert_close(got, spotlight_ops.loss(pred, target, threshold=0.0, lam=0.5, k=-0.95))
    got = make_criterion(TrainConfig(loss="spotlight", mse_term="masked", target_norm="zscore", lam=0.3))(pred, target)
    torch.testing.assert_close(got, spotlight_ops.loss(pred, target, threshold=None, lam=0.3))
    got = make_criterion(TrainConfig(loss="mse"))(pred, target)
    torch.testing.assert_close(got, torch.mean((pred - target) ** 2))


@pytest.mark.parametrize("loss", ["mse", "spotlight"])
def test_tiny_run_writes_log_checkpoints_and_model(dataset, tmp_path, loss):
    config = tiny_config(dataset["train"], tmp_path / loss, loss=loss, iterations=5, checkpoint_every=2)
    result = train(config)
    assert result.finished and result.iteration == 5
    rows = read_log(tmp_path / loss / "log.csv")
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 5] and all(np.isfinite(r["loss"]) for r in rows)
    assert (tmp_path / loss / "checkpoints" / "checkpoint_latest.pt").is_file()
    assert (tmp_path / loss / "checkpoints" / "checkpoint_last_good.pt").is_file()
    saved = yaml.safe_load((tmp_path / loss / "config.yaml").read_text())
    assert saved["loss"] == loss and saved["patch_size"] == [8, 16, 16]
    model, preprocess = load_model(tmp_path / loss)
    assert model.config()["depth"] == 1 and preprocess.target_norm == "otsu"
    assert not model.training


def test_loss_goes_down(dataset, tmp_path):
    config = tiny_config(dataset["train"], tmp_path / "run", loss="mse", iterations=30, checkpoint_every=30)
    train(config)
    losses = [r["loss"] for r in read_log(tmp_path / "run" / "log.csv")]
    assert np.mean(losses[-10:]) < np.mean(losses[:5])


def test_fresh_start_refuses_an_existing_run(dataset, tmp_path):
    config = tiny_config(dataset["train"], tmp_path / "run", iterations=2)
    train(config)
    with pytest.raises(FileExistsError, match="--resume"):
        train(config)


def test_cli_train_and_exit_codes(dataset, tmp_path, capsys):
    flags = tiny_flags(dataset["train"], tmp_path / "cli")
    assert main(["train", *flags, "--iterations", "3", "--loss", "mse"]) == 0
    assert "model written to" in capsys.readouterr().out
    assert main(["train", *flags, "--iterations", "3"]) == 2  # exists, no --resume
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "x")]) == 2
    assert "train_csv or train_plate is required" in capsys.readouterr().err


def test_amp_only_on_cuda():
    assert _amp_settings(TrainConfig(amp="auto"), torch.device("cpu")) == (False, torch.bfloat16)
    assert _amp_settings(TrainConfig(amp=True), torch.device("cpu"))[0] is False
    if torch.cuda.is_available():
        assert _amp_settings(TrainConfig(amp="auto"), torch.device("cuda"))[0] is True
        assert _amp_settings(TrainConfig(amp=False), torch.device("cuda"))[0] is False


def test_tensorboard_true_without_the_package(dataset, tmp_path):
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        from spotlight_ops.optional import MissingDependency

        with pytest.raises(MissingDependency, match="needs the tensorboard package.*pip install tensorboard"):
            train(tiny_config(dataset["train"], tmp_path / "tb", iterations=1, tensorboard=True))
    else:
        train(tiny_config(dataset["train"], tmp_path / "tb", iterations=1, tensorboard=True))
        assert (tmp_path / "tb" / "tensorboard").is_dir()

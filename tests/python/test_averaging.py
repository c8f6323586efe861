"""The weight average (spotlight_ops.training.averaging) and the models training writes with it."""

from __future__ import annotations

import math

import pytest
import torch

from spotlight_ops.cli import main
from spotlight_ops.files.checkpoint import load_checkpoint
from spotlight_ops.training import averaging as A
from spotlight_ops.training import train
from spotlight_ops.training.log import read_log

from _training_helpers import tiny_config, tiny_dataset, tiny_flags


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("ema_data"))


def _ema_reference(snapshots: list, decay: float) -> list:
    """The EMA of the module docstring in float64: the first snapshot, then d * mean + (1 - d) * w."""
    mean = [w.double() for w in snapshots[0]]
    for weights in snapshots[1:]:
        mean = [decay * m + (1 - decay) * w.double() for m, w in zip(mean, weights)]
    return mean


@pytest.fixture
def recorded_steps(monkeypatch):
    """The parameters after every Adam step of the runs in the test, in order."""
    snapshots = []
    step = torch.optim.Adam.step

    def recording(self, *args, **kwargs):
        out = step(self, *args, **kwargs)
        snapshots.append([p.detach().clone() for g in self.param_groups for p in g["params"]])
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", recording)
    return snapshots


def test_weight_average_follows_the_formula_float64():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    average = A.WeightAverage(model, 0.9)
    snapshots = []
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        average.update_parameters(model)
        snapshots.append([p.detach().clone() for p in model.parameters()])
    for got, want in zip(average.module.parameters(), _ema_reference(snapshots, 0.9)):
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-7)
    assert not any(torch.equal(a, b) for a, b in zip(average.module.parameters(), model.parameters()))


def test_the_average_is_torchs_ema_bit_for_bit():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv3d(1, 3, 3), torch.nn.BatchNorm3d(3))
    mine = A.WeightAverage(model, 0.9)
    torchs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=False)
    for _ in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(2, 1, 4, 4, 4))  # moves the running statistics
        mine.update_parameters(model)
        torchs.update_parameters(model)
    a, b = mine.state_dict(), torchs.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert mine.n_averaged.device.type == "cpu"


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, math.nan])
def test_decay_outside_the_open_interval_is_refused(decay):
    with pytest.raises(ValueError, match="decay"):
        A.WeightAverage(torch.nn.Linear(2, 2), decay)


@pytest.mark.parametrize("value", [1.0, -0.1, math.nan, "0.5x"])
def test_ema_decay_is_validated(dataset, tmp_path, value):
    with pytest.raises(ValueError, match="ema_decay"):
        tiny_config(dataset["train"], tmp_path, ema_decay=value)


def test_training_is_unchanged_and_written_models_hold_the_average(dataset, tmp_path, recorded_steps):
    last = train(tiny_config(dataset["train"], tmp_path / "off", bn_batches=0))
    del recorded_steps[:]
    averaged = train(tiny_config(dataset["train"], tmp_path / "on", bn_batches=0, ema_decay=0.8))
    # the average is never read by training: the losses are the same bits
    assert [r["loss"] for r in read_log(last.run_dir / "log.csv")] == \
        [r["loss"] for r in read_log(averaged.run_dir / "log.csv")]
    checkpoint = load_checkpoint(averaged.run_dir / "checkpoints" / "checkpoint_latest.pt")
    assert int(checkpoint["ema"]["n_averaged"]) == len(recorded_steps) == 6
    names = [n for n in checkpoint["model"] if n in dict(torch.nn.Module.named_parameters(_fnet(checkpoint)))]
    written = load_checkpoint(averaged.run_dir / "model.pt")["model"]
    for name, want in zip(names, _ema_reference(recorded_steps, 0.8)):
        torch.testing.assert_close(written[name].double(), want, rtol=1e-5, atol=1e-6, msg=name)
        torch.testing.assert_close(checkpoint["inference_model"][name], written[name], rtol=0, atol=0)
        assert not torch.equal(written[name], checkpoint["model"][name]), name  # not the last weights
    assert "ema" not in load_checkpoint(last.run_dir / "checkpoints" / "checkpoint_latest.pt")


def _fnet(checkpoint: dict):
    from spotlight_ops.models import FNet

    return FNet(**checkpoint["model_config"])


def test_the_average_is_recomputed_for_batchnorm_and_read_by_prediction(dataset, tmp_path):
    from spotlight_ops.data import load_pairs
    from spotlight_ops.models import FNet
    from spotlight_ops.predict import load_model
    from spotlight_ops.training import batchnorm as BN

    config = tiny_config(dataset["train"], tmp_path / "run", bn_batches=2, ema_decay=0.8)
    result = train(config)
    checkpoint = load_checkpoint(result.run_dir / "checkpoints" / "checkpoint_latest.pt")
    model, _ = load_model(result.run_dir / "model.pt")
    state = model.state_dict()
    average = FNet(**checkpoint["model_config"])
    average.load_state_dict({k[len("module."):]: v for k, v in checkpoint["ema"].items() if k.startswith("module.")})
    # the statistics: recomputed for the averaged weights, not training's (which the average's buffers copy)
    want = BN.inference_model(average, load_pairs(dataset["train"]), config.patch_size, config.batch_size,
                              config.bn_batches, config.seed, config.iterations, config.min_foreground_fraction,
                              config.max_retries).state_dict()
    for name, value in want.items():
        assert torch.equal(state[name], value), name
        if name.endswith("running_mean"):
            assert not torch.equal(value, checkpoint["ema"]["module." + name]), name


def test_no_recomputed_statistics_is_warned_about(dataset, tmp_path, capsys):
    train(tiny_config(dataset["train"], tmp_path / "run", iterations=2, bn_batches=0, ema_decay=0.8))
    assert "ema_decay with bn_batches 0" in capsys.readouterr().err


def test_switching_the_average_on_resume_chooses_the_best_model_afresh(dataset, tmp_path, capsys, monkeypatch):
    from spotlight_ops.training import validation as V

    out = tmp_path / "run"
    flags = dict(val_csv=str(dataset["test"]), val_every=2, val_patches=2, checkpoint_every=2)
    train(tiny_config(dataset["train"], out, iterations=2, **flags))
    assert load_checkpoint(out / "checkpoints" / "checkpoint_best.pt")["validation"]["iteration"] == 2
    capsys.readouterr()
    evaluate = V.Validator.evaluate
    # far worse than before the switch: only a fresh choice makes it the best
    monkeypatch.setattr(V.Validator, "evaluate", lambda self, model: {**evaluate(self, model), "val_loss": 1e9})
    train(tiny_config(dataset["train"], out, iterations=4, ema_decay=0.5, **flags), resume=True)
    assert "chosen afresh" in capsys.readouterr().err
    assert load_checkpoint(out / "checkpoints" / "checkpoint_best.pt")["validation"]["iteration"] == 4


class Interrupted(Exception):
    pass


def test_resume_continues_the_average_exactly(dataset, tmp_path):
    reference = train(tiny_config(dataset["train"], tmp_path / "ref", iterations=6, checkpoint_every=3,
                                  ema_decay=0.7))
    config = tiny_config(dataset["train"], tmp_path / "run", iterations=6, checkpoint_every=3, ema_decay=0.7)

    def stop(iteration: int, loss: float) -> None:
        if iteration == 4:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(config, on_iteration=stop)
    train(config, resume=True)
    a = load_checkpoint(tmp_path / "run" / "model.pt")["model"]
    b = load_checkpoint(reference.run_dir / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_a_run_without_an_average_starts_one_and_says_so(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_config(dataset["train"], out, iterations=3, checkpoint_every=3))
    capsys.readouterr()
    train(tiny_config(dataset["train"], out, iterations=6, checkpoint_every=3, ema_decay=0.9), resume=True)
    assert "holds no weight average" in capsys.readouterr().err
    assert int(load_checkpoint(out / "checkpoints" / "checkpoint_latest.pt")["ema"]["n_averaged"]) == 3


def test_cli_flag_reaches_the_run(dataset, tmp_path):
    out = tmp_path / "cli"
    assert main(["train", *tiny_flags(dataset["train"], out), "--iterations", "2", "--checkpoint-every", "2",
                 "--ema-decay", "0.5"]) == 0
    assert "ema" in load_checkpoint(out / "checkpoints" / "checkpoint_latest.pt")

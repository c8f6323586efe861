"""Training with several channels and stored masks: the F-net's channels, the model files' channel names,
the loss's mask= and per_channel, and the errors for data that disagree."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import tifffile
import torch

from spotlight_ops.cli import main
from spotlight_ops.data import DataError, ManifestRow, PatchSampler, load_pairs, read_manifest, write_manifest
from spotlight_ops.losses import SpotlightLoss
from spotlight_ops.models import FNet, model_file
from spotlight_ops.predict import load_model
from spotlight_ops.training import train
from spotlight_ops.training.cli import add_parser, config_from_args
from spotlight_ops.training.log import read_log
from spotlight_ops.training.monitor import foreground_fractions
from spotlight_ops.training.rng import seed_everything
from spotlight_ops.training.validation import fixed_patches

from _training_helpers import tiny_config, tiny_flags
from test_multichannel_data import write_rows


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    """Two pairs of 2 signal and 2 target channels, with per-channel masks and without; a one-channel one."""
    folder = tmp_path_factory.mktemp("channels")
    rows = write_rows(folder, 2, masks=True)
    for row in rows:  # masks unlike Y > T (which write_rows's are), so that using them shows
        for k, mask in enumerate(row.masks):
            volume = tifffile.imread(mask.path)
            volume[:, : 8 + 8 * k] = 1
            tifffile.imwrite(mask.path, volume)
    bare = [ManifestRow.of(r.signals, r.targets) for r in rows]
    one = [ManifestRow.of(r.signals[:1], r.targets[:1]) for r in rows]
    return {"masks": write_manifest(folder / "masks.csv", rows), "bare": write_manifest(folder / "bare.csv", bare),
            "one": write_manifest(folder / "one.csv", one)}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_cli_trains_the_data_channels_and_records_them(manifests, tmp_path, capsys):
    out = tmp_path / "run"
    flags = tiny_flags(manifests["bare"], out) + ["--val-fraction", "0.5", "--val-every", "2", "--val-patches", "3"]
    assert main(["train", *flags, "--iterations", "2"]) == 0
    assert "channels: signal 2 -> target 2" in capsys.readouterr().err
    for name in ("model.pt", "checkpoints/checkpoint_best.pt", "checkpoints/checkpoint_latest.pt"):
        meta = model_file.read_metadata(out / name)
        assert meta["model_config"]["in_channels"] == 2 and meta["model_config"]["out_channels"] == 2, name
        assert meta["channels"] == {"signal": [None, None], "target": [None, None]}, name
    rows = read_log(out / "log.csv")
    assert rows[-1]["val_loss"] is not None and np.isfinite(rows[-1]["val_loss"])
    assert 0 < rows[-1]["val_fg_target"] < 1 and 0 < rows[-1]["fg_fraction_target"] < 1
    assert main(["train", *flags, "--iterations", "4", "--resume"]) == 0  # resume rebuilds the same net
    model, _ = load_model(out)
    assert isinstance(model, FNet) and (model.in_channels, model.out_channels) == (2, 2)
    with torch.no_grad():
        assert model(torch.zeros(1, 2, 16, 32, 32)).shape == (1, 2, 16, 32, 32)
    assert model_file.read_metadata(out / "model.pt")["channels"]["target"] == [None, None]


def test_pairs_of_other_channel_counts_are_refused(manifests, tmp_path):
    with pytest.raises(DataError, match=r"this pair has 1 signal and 1 target channel\(s\), the first pair .* 2 and "
                                        r"2; every pair of a run must have the same channels"):
        train(tiny_config(manifests["bare"], tmp_path / "val", val_csv=str(manifests["one"]), iterations=1))
    train(tiny_config(manifests["bare"], tmp_path / "run", iterations=2))
    with pytest.raises(ValueError, match=r"trained with 2 signal and 2 target channel\(s\), the data given now have "
                                         r"1 and 1; resume with the run's data"):
        train(tiny_config(manifests["one"], tmp_path / "run", iterations=4), resume=True)


def test_several_zscored_targets_need_per_channel(manifests, tmp_path):
    with pytest.raises(ValueError, match="target_norm zscore with 2 target channels needs per_channel"):
        train(tiny_config(manifests["bare"], tmp_path / "a", target_norm="zscore", iterations=1))
    result = train(tiny_config(manifests["bare"], tmp_path / "b", target_norm="zscore", per_channel=True,
                               reduction="mean", iterations=1))
    assert result.finished


def _first_loss(config, with_mask: bool, **options) -> tuple:
    """The first iteration's loss and mask fraction, recomputed outside the trainer in the trainer's order
    (data, seed, model, sampler): the criterion called as documented."""
    pairs = load_pairs(read_manifest(config.train_csv), config.preprocess())
    seed_everything(config.seed)
    model = FNet(depth=config.depth, base_channels=config.base_channels, in_channels=pairs[0].signal_channels,
                 out_channels=pairs[0].target_channels)
    sampler = PatchSampler(pairs, config.patch_size, config.batch_size, seed=config.seed,
                           min_foreground_fraction=config.min_foreground_fraction, max_retries=config.max_retries)
    signal, target, mask = sampler.sample(with_mask=True)
    criterion = SpotlightLoss.from_preset(config.preset, **options, collapse_warning=False)
    given = {"mask": torch.from_numpy(mask != 0)} if with_mask else {}
    loss = criterion(model(torch.from_numpy(signal)).float(), torch.from_numpy(target), **given)
    return float(loss.detach()), float(criterion.fractions()[1])


@pytest.mark.parametrize("stored_masks,per_channel", [(True, False), (False, False), (True, True)])
def test_the_loss_gets_the_stored_masks_and_per_channel(manifests, tmp_path, one_thread, stored_masks, per_channel):
    """Several target channels: each is Otsu-standardized on its own (T = 0 is each channel's foreground), the
    pools are the preset's unless --per-channel; the stored masks are mask= unless --no-stored-masks."""
    options = {"per_channel": True, "reduction": "mean"} if per_channel else {}
    config = tiny_config(manifests["masks"], tmp_path / "run", iterations=1, stored_masks=stored_masks, **options)
    train(config)
    logged = read_log(tmp_path / "run" / "log.csv")[0]
    expected, fraction = _first_loss(config, stored_masks, **options)
    assert logged["loss"] == pytest.approx(expected, rel=1e-6)
    assert logged["fg_fraction_target"] == pytest.approx(fraction, rel=1e-6)
    other, other_fraction = _first_loss(config, not stored_masks, **options)
    assert abs(other - expected) > 1e-4 and other_fraction != pytest.approx(fraction)  # the masks matter here
    if per_channel:
        assert abs(_first_loss(config, stored_masks)[0] - expected) > 1e-4  # and so do the pools


def test_mse_runs_ignore_stored_masks(manifests, tmp_path, one_thread, capsys):
    with_masks = tiny_config(manifests["masks"], tmp_path / "a", iterations=2, loss="mse")
    train(with_masks)
    assert "stored masks unused by the MSE loss" in capsys.readouterr().err
    train(tiny_config(manifests["bare"], tmp_path / "b", iterations=2, loss="mse"))
    assert [r["loss"] for r in read_log(tmp_path / "a" / "log.csv")] == \
        [r["loss"] for r in read_log(tmp_path / "b" / "log.csv")]


def test_plate_keys_are_checked_up_front(manifests, tmp_path):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    for flags, message in (
            (["--train-plate", "p.zarr"], "a plate needs signal_channels and target_channels"),
            (["--train-csv", str(manifests["bare"]), "--train-plate", "p.zarr"], "give train_csv or train_plate"),
            (["--train-csv", str(manifests["bare"]), "--fields", "B/03/0"], r"fields name\(s\) a plate's content"),
            (["--train-csv", str(manifests["bare"]), "--signal-channels", "a"], "give train_plate too"),
            (["--train-plate", "p.zarr", "--signal-channels", "a", "a", "--target-channels", "b"],
             r"signal_channels names \['a'\] more than once")):
        with pytest.raises(ValueError, match=message):
            config_from_args(parser.parse_args(["train", *flags]))


def test_validation_scores_with_the_stored_masks(manifests, tmp_path):
    config = tiny_config(manifests["masks"], tmp_path / "run", iterations=1, val_csv=str(manifests["masks"]),
                         val_every=1, val_patches=3, stored_masks=True)
    train(config)
    logged = read_log(tmp_path / "run" / "log.csv")[0]
    patches = fixed_patches(read_manifest(manifests["masks"]), config.preprocess(), config.patch_size, 3, config.seed,
                            config.min_foreground_fraction, config.max_retries, with_mask=True)
    assert patches["mask"].shape == patches["target"].shape == (3, 2, 8, 16, 16)
    assert logged["val_fg_target"] == pytest.approx(float(patches["mask"].mean()), rel=1e-6)
    assert float((patches["target"] > 0).mean()) != pytest.approx(float(patches["mask"].mean()))


def test_foreground_fractions_threshold_each_channel():
    """MSE runs on z-scored targets: the monitor's T is each (sample, channel)'s own Otsu threshold."""
    import spotlight_ops

    generator = torch.Generator().manual_seed(0)
    target = torch.randn(2, 2, 4, 8, 8, generator=generator) * torch.tensor([1.0, 50.0]).view(1, 2, 1, 1, 1)
    target[:, 1] += 100.0
    prediction = target + 0.1 * torch.randn(target.shape, generator=generator)
    got = foreground_fractions(prediction, target, None)
    t = torch.stack([torch.stack([spotlight_ops.otsu_threshold(target[n, c][None])[0] for c in range(2)])
                     for n in range(2)]).view(2, 2, 1, 1, 1)
    expected = [float((prediction > t).double().mean()), float((target > t).double().mean())]
    assert got.tolist() == pytest.approx(expected, abs=1e-7)
    assert 0.3 < expected[1] < 0.7  # one threshold over both channels would put channel 2 all above


def test_a_run_from_before_stored_masks_resumes_without_them(manifests, tmp_path, capsys, monkeypatch):
    """A run whose config.yaml and checkpoints lack stored_masks was trained by a trainer that never passed
    masks: --resume keeps it so, though its manifest names masks."""
    from spotlight_ops.training import trainer

    written = trainer._Run.checkpoint_payload

    def without_key(self, iteration):
        payload = written(self, iteration)
        payload["config"].pop("stored_masks")
        return payload

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(trainer._Run, "checkpoint_payload", without_key)
        patch.setattr(trainer, "write_yaml", lambda config, path: path.write_text(
            "".join(line for line in __import__("yaml").safe_dump(config.to_dict(), sort_keys=False)
                    .splitlines(keepends=True) if not line.startswith("stored_masks:"))))
        assert main(["train", *tiny_flags(manifests["masks"], out), "--iterations", "2", "--no-stored-masks"]) == 0
    assert "stored_masks" not in (out / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--iterations", "3"]) == 0
    assert "stored masks ignored" in capsys.readouterr().err


def test_a_model_file_put_back_from_its_checkpoint_keeps_the_channels(manifests, tmp_path):
    config = tiny_config(manifests["bare"], tmp_path / "run", iterations=2)
    train(config)
    (tmp_path / "run" / "model.pt").unlink()
    assert train(config, resume=True).already_finished
    meta = model_file.read_metadata(tmp_path / "run" / "model.pt")
    assert meta["channels"] == {"signal": [None, None], "target": [None, None]}
    assert (meta["model_config"]["in_channels"], meta["model_config"]["out_channels"]) == (2, 2)

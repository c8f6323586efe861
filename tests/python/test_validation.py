"""Validation, augmentation and the volume buffer in training: logged, plotted, checkpointed, resumed exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spotlight_ops.cli import main
from spotlight_ops.data import DataError, PreprocessConfig, read_manifest, read_volume, write_manifest, write_volume
from spotlight_ops.data.manifest import ManifestRow
from spotlight_ops.predict import load_model
from spotlight_ops.training import load_checkpoint, train
from spotlight_ops.training.log import read_log
from spotlight_ops.training.validation import COLUMNS, fixed_patches, split_rows

from _training_helpers import record_tensorboard, tiny_config, tiny_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"), n_train=4, n_test=2)


@pytest.fixture(scope="module")
def zarr_dataset(dataset, tmp_path_factory):
    """The same pairs, every second one converted to OME-Zarr."""
    pytest.importorskip("ome_zarr")
    folder = tmp_path_factory.mktemp("zarr")
    rows = []
    for i, row in enumerate(read_manifest(dataset["train"]) + read_manifest(dataset["test"])):
        if i % 2:
            paths = [folder / f"{i}_{role}.ome.zarr" for role in ("signal", "target")]
            for source, path in zip((row.signal, row.target), paths):
                write_volume(path, read_volume(source), voxel_size=(0.29, 0.29, 0.29))
            row = ManifestRow(*paths)
        rows.append(row)
    return write_manifest(folder / "all.csv", rows)


def test_split_is_seeded_disjoint_and_complete():
    rows = [ManifestRow(f"s{i}", f"t{i}") for i in range(10)]
    train_rows, val_rows = split_rows(rows, 0.3, seed=0)
    assert len(val_rows) == 3 and sorted(map(str, train_rows + val_rows), key=str) == sorted(map(str, rows), key=str)
    assert split_rows(rows, 0.3, seed=0) == (train_rows, val_rows)
    assert split_rows(rows, 0.3, seed=1)[1] != val_rows
    assert split_rows(rows, 0.0, 0) == (rows, [])
    with pytest.raises(ValueError, match="leaves none to train on"):
        split_rows(rows[:1], 0.5, 0)


def test_fixed_patches_are_the_same_every_time(dataset):
    rows = read_manifest(dataset["test"])
    a = fixed_patches(rows, PreprocessConfig(), (8, 16, 16), 5, 0, 0.001, 1000)
    b = fixed_patches(rows, PreprocessConfig(), (8, 16, 16), 5, 0, 0.001, 1000)
    assert a["signal"].shape == (5, 1, 8, 16, 16)
    np.testing.assert_array_equal(a["signal"], b["signal"])
    np.testing.assert_array_equal(a["target"], b["target"])
    assert not np.array_equal(a["signal"][0], a["signal"][1])


def test_validation_is_logged_plotted_and_keeps_the_best_model(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    config = tiny_config(dataset["train"], out, val_csv=str(dataset["test"]), val_every=2, val_patches=3,
                         iterations=6, checkpoint_every=3, loss="mse")
    train(config)
    rows = read_log(out / "log.csv")
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 5, 6]
    val = {r["iteration"]: r for r in rows if r["val_loss"] is not None}
    assert sorted(val) == [2, 4, 6]
    assert all(set(COLUMNS) <= set(r) for r in rows)
    assert all(0.0 <= val[i]["val_fg_pred"] <= 1.0 and 0.0 < val[i]["val_fg_target"] < 1.0 for i in val)
    assert len({val[i]["val_fg_target"] for i in val}) == 1  # the same patches every time
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = load_checkpoint(out / "checkpoints" / "checkpoint_best.pt")
    best_iteration = min(val, key=lambda i: val[i]["val_loss"])
    assert best["iteration"] == best_iteration and best["validation"]["val_loss"] == val[best_iteration]["val_loss"]
    model, _ = load_model(out / "checkpoints" / "checkpoint_best.pt")
    assert model.config()["depth"] == 1
    # the held-out loss is that of the best weights on the fixed patches
    patches = fixed_patches(read_manifest(dataset["test"]), PreprocessConfig(), (8, 16, 16), 3, 0, 0.001, 1000)
    with torch.no_grad():
        prediction = model(torch.from_numpy(patches["signal"][:2]))
    first = float(torch.nn.functional.mse_loss(prediction, torch.from_numpy(patches["target"][:2])))
    with torch.no_grad():
        last = float(torch.nn.functional.mse_loss(model(torch.from_numpy(patches["signal"][2:])),
                                                  torch.from_numpy(patches["target"][2:])))
    assert (2 * first + last) / 3 == pytest.approx(val[best_iteration]["val_loss"], rel=1e-5)


def test_cli_validation_split_and_bad_values(dataset, tmp_path, capsys):
    from _training_helpers import tiny_flags

    flags = tiny_flags(dataset["train"], tmp_path / "cli")
    assert main(["train", *flags, "--iterations", "2", "--val-fraction", "0.25", "--val-every", "1",
                 "--val-patches", "2", "--augment", "zyx"]) == 0
    assert [r["val_loss"] is not None for r in read_log(tmp_path / "cli" / "log.csv")] == [True, True]
    assert main(["train", *flags, "--val-fraction", "1.5"]) == 2
    assert "val_fraction must be a number in [0, 1)" in capsys.readouterr().err
    assert main(["train", *flags, "--buffer-size", "-1"]) == 2
    assert "buffer_size must be an integer >= 0" in capsys.readouterr().err


def interrupt_at(stop: int):
    def callback(iteration: int, loss: float) -> None:
        if iteration == stop:
            raise KeyboardInterrupt
    return callback


def test_lazy_augmented_validated_run_on_zarr_resumes_exactly(zarr_dataset, tmp_path):
    """Buffer of 2 of 5 pairs (mixed TIFF and OME-Zarr), augmentation, validation split: exact resume.
    (Only the TIFF pairs have masks, their labels: a run told to use them refuses, naming a pair without;
    by default labels are not preprocess's masks and the run trains with Y > T.)"""
    overrides = dict(val_fraction=0.2, val_every=3, val_patches=2, augment="zyx", buffer_size=2,
                     buffer_switch_every=2, iterations=9, checkpoint_every=3, patch_size=(8, 16, 16))
    with pytest.raises(DataError, match=r"3_target.ome.zarr: has no stored foreground mask while \d+ of the \d+ .*"
                                        r"--no-stored-masks"):
        train(tiny_config(zarr_dataset, tmp_path / "refused", stored_masks=True, **overrides))
    reference = tmp_path / "reference"
    train(tiny_config(zarr_dataset, reference, **overrides))
    run = tmp_path / "run"
    config = tiny_config(zarr_dataset, run, **overrides)
    with pytest.raises(KeyboardInterrupt):
        train(config, on_iteration=interrupt_at(5))
    stats = (run / "preprocess_stats.json").stat().st_mtime_ns
    train(config, resume=True)
    assert (run / "preprocess_stats.json").stat().st_mtime_ns == stats  # read back, not recomputed
    assert read_log(run / "log.csv") == [dict(r, seconds=s["seconds"]) for r, s in
                                         zip(read_log(reference / "log.csv"), read_log(run / "log.csv"))]
    a, b = load_checkpoint(run / "model.pt")["model"], load_checkpoint(reference / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    best_a = load_checkpoint(run / "checkpoints" / "checkpoint_best.pt")
    best_b = load_checkpoint(reference / "checkpoints" / "checkpoint_best.pt")
    assert best_a["iteration"] == best_b["iteration"] and best_a["validation"] == best_b["validation"]


def test_validation_goes_to_tensorboard(dataset, tmp_path, monkeypatch):
    scalars = record_tensorboard(monkeypatch)
    out = tmp_path / "run"
    train(tiny_config(dataset["train"], out, val_csv=str(dataset["test"]), val_every=2, val_patches=2, iterations=3,
                      tensorboard=True))
    logged = {r["iteration"]: r for r in read_log(out / "log.csv")}
    for tag, column in (("loss/val", "val_loss"), ("foreground_fraction/val_pred", "val_fg_pred"),
                        ("foreground_fraction/val_target", "val_fg_target")):
        assert [(step, value) for t, value, step in scalars if t == tag] == \
            [(i, logged[i][column]) for i in (2, 3)]  # every val_every iterations and at the last

"""Issue 24's done-when through the ``spotlight`` command: a tiny HCS plate (2 fields of view, channels
Phase3D and Nuclei) made here trains, from the plate by name and through a manifest naming it, with the
foreground masks ``spotlight preprocess`` stored; the same pairs as TIFFs train through a manifest with
preprocess's masks, then predict and evaluate."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage

pytest.importorskip("ome_zarr")

from spotlight_ops.cli import main  # noqa: E402
from spotlight_ops.data import PatchSampler, load_pairs, read_manifest  # noqa: E402
from spotlight_ops.data.manifest import plate_rows  # noqa: E402
from spotlight_ops.models import model_file  # noqa: E402
from spotlight_ops.training.log import read_log  # noqa: E402

from plate_helpers import target_like, write_iohub_plate  # noqa: E402

FIELDS = ("B/03/0", "B/03/1")
TINY = ["--depth", "1", "--base-channels", "4", "--patch-size", "8", "16", "16", "--batch-size", "2",
        "--no-progress", "--tensorboard", "false", "--num-threads", "1", "--device", "cpu"]
FAST_EVALUATION = ["--sweep-fractions", "none", "--no-plots", "--no-morphology", "--no-progress",
                   "--no-tune-segmentation"]


def field_volumes(seed: int) -> np.ndarray:
    """``(2, Z, Y, X)``: a label-free-like signal (the target blurred, inverted, noisy) and its target."""
    target = target_like(seed)
    rng = np.random.default_rng(100 + seed)
    signal = 1.0 - ndimage.gaussian_filter(target, 1.0) + 0.05 * rng.standard_normal(target.shape)
    return np.stack([signal, target]).astype(np.float32)


@pytest.fixture
def plate(tmp_path):
    return write_iohub_plate(tmp_path / "plate.zarr", {f: field_volumes(i) for i, f in enumerate(FIELDS)},
                             ["Phase3D", "Nuclei"])


def spotlight(capsys, *args) -> str:
    """Runs ``spotlight ARGS`` and returns its stderr; a failure shows both streams."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, f"spotlight {' '.join(map(str, args))} exited {code}:\n{out}\n{err}"
    return err


def test_a_plate_trains_by_name_and_through_a_manifest_with_its_stored_masks(plate, tmp_path, capsys):
    spotlight(capsys, "preprocess", plate, "--channels", "Nuclei", "--no-progress")
    run = tmp_path / "plate_run"
    err = spotlight(capsys, "train", "--train-plate", plate, "--signal-channels", "Phase3D", "--target-channels",
                    "Nuclei", "--fields", FIELDS[0], "--val-plate", plate, "--val-fields", FIELDS[1],
                    "--val-every", "3", "--val-patches", "2", "--iterations", "3", "--out", run, *TINY)
    assert "channels: signal Phase3D -> target Nuclei; masks: the stored foreground masks" in err
    meta = model_file.read_metadata(run / "model.pt")
    assert meta["channels"] == {"signal": ["Phase3D"], "target": ["Nuclei"]}
    assert (meta["model_config"]["in_channels"], meta["model_config"]["out_channels"]) == (1, 1)
    assert read_log(run / "log.csv")[-1]["val_loss"] is not None

    manifest = tmp_path / "plate.csv"
    manifest.write_text(f"path_signal,channel_signal,path_target,channel_target\n{plate},Phase3D,{plate},Nuclei\n")
    lazy = tmp_path / "lazy_run"  # one field in memory at a time: how a plate larger than memory trains
    err = spotlight(capsys, "train", "--train-csv", manifest, "--buffer-size", "1", "--buffer-switch-every", "1",
                    "--iterations", "3", "--out", lazy, *TINY)
    assert "Volume buffer: 1 of 2 pairs in memory" in err and "masks: the stored foreground masks" in err
    assert model_file.read_metadata(lazy / "model.pt")["channels"] == {"signal": ["Phase3D"], "target": ["Nuclei"]}

    assert main(["train", "--train-plate", str(plate), "--signal-channels", "Phase3D", "--target-channels", "DAPI",
                 "--out", str(tmp_path / "x"), *TINY]) == 2
    assert "plate has no target channel(s) DAPI; its channels are Phase3D, Nuclei" in capsys.readouterr().err


def _first_target_fraction(rows) -> float:
    """The first batch's fraction of target voxels above 0, drawn as the trainer draws it (seed 0)."""
    from spotlight_ops.data import PreprocessConfig

    pairs = load_pairs(rows, PreprocessConfig())
    sampler = PatchSampler(pairs, (8, 16, 16), 2, seed=0)
    return float((sampler.sample()[1] > 0).mean())


def test_training_standardizes_targets_with_the_stored_thresholds(plate, tmp_path, capsys):
    """A stored threshold moved away from Otsu's: the trainer's targets are (x - T_stored) / std."""
    spotlight(capsys, "preprocess", plate, "--channels", "Nuclei", "--no-progress")
    rows = plate_rows(plate, ["Phase3D"], ["Nuclei"])
    computed = _first_target_fraction(rows)
    for field in FIELDS:  # the stored record, moved
        attrs_path = plate / field / ".zattrs"
        attrs = json.loads(attrs_path.read_text())
        record = attrs["normalization"]["Nuclei"]["spotlight"]
        record["otsu_threshold"] = record["otsu_threshold"] + 0.75  # between the two boxes' brightness
        attrs_path.write_text(json.dumps(attrs))
    stored = _first_target_fraction(rows)
    assert stored != pytest.approx(computed)  # the moved threshold leaves the dimmer box out
    run = tmp_path / "run"
    spotlight(capsys, "train", "--train-plate", plate, "--signal-channels", "Phase3D", "--target-channels", "Nuclei",
              "--no-stored-masks", "--iterations", "1", "--out", run, *TINY)
    assert read_log(run / "log.csv")[0]["fg_fraction_target"] == pytest.approx(stored, rel=1e-6)


def write_tiff_pairs(folder) -> tuple:
    """The plate's pairs as TIFF files and a manifest of them."""
    folder.mkdir()
    lines = ["path_signal,path_target"]
    for i in range(len(FIELDS)):
        signal, target = field_volumes(i)
        tifffile.imwrite(folder / f"light{i}.tif", signal)
        tifffile.imwrite(folder / f"nuclei{i}.tif", target)
        lines.append(f"light{i}.tif,nuclei{i}.tif")
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    return folder / "train.csv"


def test_a_tiff_manifest_with_preprocess_masks_trains_predicts_and_evaluates(tmp_path, capsys):
    manifest = write_tiff_pairs(tmp_path / "data")
    masked = tmp_path / "data" / "train_masks.csv"
    spotlight(capsys, "preprocess", manifest, "--out", masked, "--no-progress")
    rows = read_manifest(masked)
    assert all(r.mask is not None and r.stored_thresholds[0] is not None for r in rows)
    run = tmp_path / "run"
    err = spotlight(capsys, "train", "--train-csv", masked, "--iterations", "3", "--out", run, *TINY)
    assert "masks: the stored foreground masks" in err
    predictions = tmp_path / "predictions"
    spotlight(capsys, "predict", "--model", run, "--out", predictions, "--tile", "16", "32", "32", "--no-progress",
              tmp_path / "data" / "light0.tif", tmp_path / "data" / "light1.tif")
    written = sorted(p.name for p in predictions.iterdir())
    assert written == ["light0_prediction.tif", "light1_prediction.tif"]
    assert tifffile.imread(predictions / written[0]).shape == (16, 32, 32)
    report = tmp_path / "report"
    spotlight(capsys, "evaluate", "--target", f"{rows[0].target},{rows[1].target}",
              "--pred", f"fnet={predictions / written[0]},{predictions / written[1]}",
              "--masks", f"{rows[0].mask},{rows[1].mask}", "--prediction-units", "standardized", "--out", report,
              *FAST_EVALUATION)
    with open(report / "metrics.csv", newline="") as handle:
        metrics = [r for r in csv.DictReader(handle) if r["model"] == "fnet"]
    assert len(metrics) == 2


def test_a_plate_trains_predicts_into_a_plate_and_evaluates(plate, tmp_path, capsys):
    spotlight(capsys, "preprocess", plate, "--channels", "Nuclei", "--no-progress")
    run = tmp_path / "run"
    spotlight(capsys, "train", "--train-plate", plate, "--signal-channels", "Phase3D", "--target-channels", "Nuclei",
              "--iterations", "3", "--out", run, *TINY)
    predictions = tmp_path / "predictions"
    spotlight(capsys, "predict", "--model", run, "--out", predictions, "--tile", "16", "32", "32", "--no-progress",
              plate)
    predicted = predictions / "plate_prediction.ome.zarr"
    report = tmp_path / "report"
    spotlight(capsys, "evaluate", "--target", f"{plate}#Nuclei", "--pred", f"fnet={predicted}",
              "--prediction-units", "standardized", "--out", report,
              *FAST_EVALUATION)
    with open(report / "metrics.csv", newline="") as handle:
        metrics = [r for r in csv.DictReader(handle) if r["model"] == "fnet"]
    assert [r["volume_name"] for r in metrics] == [f"plate/{f}" for f in FIELDS]

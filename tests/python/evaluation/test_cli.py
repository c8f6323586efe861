"""The evaluate command: TIFF specs, CSV manifests, errors, and the subcommand hook."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest
import tifffile
from evaluation_scenes import nuclei_scene
from scipy import ndimage

from spotlight_ops.evaluation import cli
from spotlight_ops.evaluation.inputs import parse_prediction_spec, read_volumes

FAST = ["--sweep-fractions", "none", "--no-plots", "--no-morphology", "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiffs")
    labels, target = nuclei_scene(shape=(16, 48, 48), seed=5)
    tifffile.imwrite(folder / "target.tif", target.astype(np.float32))
    tifffile.imwrite(folder / "mask.tif", ((labels > 0) * 255).astype(np.uint8))  # semantic, as QCANet's
    tifffile.imwrite(folder / "mse.tif", ndimage.gaussian_filter(target, 1.5).astype(np.float32))
    tifffile.imwrite(folder / "spot.tif", target.astype(np.float32))
    return folder


def test_specs_write_the_outputs(files, tmp_path, capsys):
    code = cli.main(["--target", str(files / "target.tif"), "--masks", str(files / "mask.tif"),
                     "--pred", f"mse={files / 'mse.tif'}", "--pred", f"spotlight={files / 'spot.tif'}",
                     "--out", str(tmp_path), *FAST])
    assert code == 0
    assert (tmp_path / "report.md").is_file() and (tmp_path / "metrics.csv").is_file()
    with open(tmp_path / "metrics.csv", newline="") as handle:
        models = [row["model"] for row in csv.DictReader(handle)]
    assert models == ["target", "mse", "spotlight"]
    assert "pattern" in capsys.readouterr().out


def test_csv_manifest(files, tmp_path):
    manifest = files / "runs.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "path_prediction", "path_target", "path_mask"])
        writer.writerow(["mse", "mse.tif", "target.tif", "mask.tif"])  # relative to the CSV's folder
        writer.writerow(["spotlight", "spot.tif", "target.tif", "mask.tif"])
    assert cli.main(["--csv", str(manifest), "--out", str(tmp_path), *FAST]) == 0
    with open(tmp_path / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["model"] for r in rows] == ["target", "mse", "spotlight"]
    assert rows[2]["volume_name"] == "target" and float(rows[2]["ap_0.50"]) == 1.0


def test_errors_are_one_line_and_exit_2(files, tmp_path, capsys):
    assert cli.main(["--target", str(files / "target.tif"), "--pred", str(files / "nothing.tif"),
                     "--out", str(tmp_path)]) == 2
    assert "nothing.tif" in capsys.readouterr().err
    assert cli.main(["--target", str(files / "target.tif"), "--pred", f"a={files / 'mse.tif'},{files / 'mse.tif'}",
                     "--out", str(tmp_path)]) == 2
    assert "2 volume(s) for 1 target" in capsys.readouterr().err
    assert cli.main(["--pred", f"a={files / 'mse.tif'}", "--out", str(tmp_path)]) == 2
    assert "--target" in capsys.readouterr().err


def test_prediction_specs_and_tiff_stacks(tmp_path):
    assert parse_prediction_spec("mse=a.tif,b.tif")[0] == "mse"
    assert [p.name for p in parse_prediction_spec("a.tif")[1]] == ["a.tif"]
    with pytest.raises(ValueError, match="empty model name"):
        parse_prediction_spec("=a.tif")
    with pytest.raises(ValueError, match="empty path"):
        parse_prediction_spec("mse=a.tif,,b.tif")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 4, 5, 6), np.float32), photometric="minisblack")
    assert len(read_volumes(tmp_path / "stack.tif", "--target")) == 3
    tifffile.imwrite(tmp_path / "plane.tif", np.zeros((5, 6), np.float32))
    with pytest.raises(ValueError, match="plane.tif must hold a 3D"):
        read_volumes(tmp_path / "plane.tif", "--target")


def test_add_parser_registers_the_subcommand():
    parser = argparse.ArgumentParser(prog="spotlight")
    subparsers = parser.add_subparsers(dest="command")
    cli.add_parser(subparsers)
    args = parser.parse_args(["evaluate", "--target", "t.tif", "--pred", "mse=a.tif", "--out", "o"])
    assert args.handler is cli.run and args.command == "evaluate"
    options = cli.options_from_args(args)
    assert options["segmentation"]["clear_border"] == "xy" and options["rescale"] == "none"
    assert options["target_norm"] == "otsu" and options["tune_segmentation"] is None  # auto: on with masks
    args = parser.parse_args(["evaluate", "--target", "t.tif", "--pred", "a.tif", "--out", "o", "--no-tune-segmentation",
                              "--rescale", "range", "--target-range", "0", "7", "--downsample", "2"])
    options = cli.options_from_args(args)
    assert options["tune_segmentation"] is False and options["target_range"] == (0.0, 7.0)
    assert options["segmentation"]["downsample"] == 2

"""``spotlight evaluate`` reads TIFF, OME-TIFF, OME-Zarr images, plates' fields of view and whole plates."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
from evaluation_scenes import nuclei_scene
from scipy import ndimage

pytest.importorskip("ome_zarr")

import zarr  # noqa: E402

from spotlight_ops.data import create_plate_like, write_channels, write_volume  # noqa: E402
from spotlight_ops.evaluation import cli  # noqa: E402
from spotlight_ops.evaluation.inputs import read_all, read_volumes  # noqa: E402

FAST = ["--sweep-fractions", "none", "--no-plots", "--no-morphology", "--no-progress", "--no-tune-segmentation"]
SHAPE = (16, 48, 48)


def write_plate(path, volumes: dict) -> None:
    """An NGFF 0.4 plate (channels Phase3D, Nuclei) written by ome-zarr's own writer."""
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    fmt = FormatV04()
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    wells = sorted({f.rsplit("/", 1)[0] for f in volumes})
    write_plate_metadata(root, ["B"], ["03", "04"], wells, fmt=fmt)
    channel = {"color": "FFFFFF", "window": {"start": 0.0, "end": 1.0, "min": 0.0, "max": 1.0}}
    for well in wells:
        write_well_metadata(root.require_group(well), [f.rsplit("/", 1)[1] for f in volumes if f.startswith(well)],
                            fmt=fmt)
    for field, volume in volumes.items():
        write_image(volume[None], root.require_group(field), scale_factors=[], axes="tczyx", fmt=fmt,
                    omero={"channels": [{**channel, "label": "Phase3D"}, {**channel, "label": "Nuclei"}]})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    targets = {}
    for seed, field in zip((5, 6), ("B/03/0", "B/04/0")):
        _, target = nuclei_scene(shape=SHAPE, seed=seed)
        targets[field] = target.astype(np.float32)
    write_plate(folder / "plate.zarr", {f: np.stack([np.zeros(SHAPE, np.float32), t]) for f, t in targets.items()})
    predictions = {f: ndimage.gaussian_filter(t, 1.0).astype(np.float32) for f, t in targets.items()}
    out = create_plate_like(folder / "plate.zarr", folder / "plate_prediction.ome.zarr", ["Nuclei_prediction"])
    for field, prediction in predictions.items():
        write_channels(out.field_path(field), {"Nuclei_prediction": prediction})
    first = predictions["B/03/0"]
    write_volume(folder / "p.ome.zarr", first)
    write_volume(folder / "p.ome.tif", first)
    tifffile.imwrite(folder / "p.tif", first)
    write_volume(folder / "t.ome.tif", targets["B/03/0"])
    return folder, targets, predictions


def test_every_format_reads_the_same_volume(data):
    folder, targets, predictions = data
    for name in ("p.tif", "p.ome.tif", "p.ome.zarr", "plate_prediction.ome.zarr/B/03/0"):
        (volume,) = read_volumes(folder / name, "--pred")
        np.testing.assert_array_equal(volume, predictions["B/03/0"])
    (target,) = read_volumes(folder / "plate.zarr/B/04/0#Nuclei", "--target")
    np.testing.assert_array_equal(target, targets["B/04/0"])
    volumes, names = read_all([folder / "plate.zarr#Nuclei"], "--target")  # a whole plate: one per field
    assert names == ["plate/B/03/0", "plate/B/04/0"]
    for volume, field in zip(volumes, ("B/03/0", "B/04/0")):
        np.testing.assert_array_equal(volume, targets[field])
    with pytest.raises(ValueError, match=r"--target: .*2 channels \(Phase3D, Nuclei\); name one"):
        read_volumes(folder / "plate.zarr/B/03/0", "--target")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_volumes(folder / "absent.tif", "--target")


def test_evaluate_a_prediction_plate_against_the_input_plate(data, tmp_path):
    folder, _, _ = data
    code = cli.main(["--target", f"{folder / 'plate.zarr'}#Nuclei", "--pred",
                     f"fnet={folder / 'plate_prediction.ome.zarr'}", "--out", str(tmp_path), *FAST])
    assert code == 0
    with open(tmp_path / "metrics.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["model"] == "fnet"]
    assert [r["volume_name"] for r in rows] == ["plate/B/03/0", "plate/B/04/0"]


def test_evaluate_mixes_ome_zarr_and_ome_tiff_and_a_csv_of_fields(data, tmp_path):
    folder, _, _ = data
    assert cli.main(["--target", str(folder / "t.ome.tif"), "--pred", f"a={folder / 'p.ome.zarr'}",
                     "--pred", f"b={folder / 'plate_prediction.ome.zarr/B/03/0'}", "--out", str(tmp_path / "a"),
                     *FAST]) == 0
    manifest = folder / "runs.csv"
    manifest.write_text("model,path_prediction,path_target\n"
                        "fnet,plate_prediction.ome.zarr/B/03/0,plate.zarr/B/03/0#Nuclei\n"
                        "fnet,plate_prediction.ome.zarr/B/04/0,plate.zarr/B/04/0#Nuclei\n")
    assert cli.main(["--csv", str(manifest), "--out", str(tmp_path / "b"), *FAST]) == 0

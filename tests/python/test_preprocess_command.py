"""``spotlight preprocess``: thresholds and foreground masks stored with the data, and training's use of them."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile
from skimage.filters import threshold_otsu

pytest.importorskip("ome_zarr")

import zarr  # noqa: E402
from plate_helpers import target_like, write_iohub_plate  # noqa: E402

from spotlight_cli import main as spotlight  # noqa: E402
from spotlight_ops.data import (DataError, ManifestRow, PatchSampler, PreprocessConfig, Source, load_pair,  # noqa: E402
                                load_pair_with_stats, read_manifest, volume_stats, write_manifest)
from spotlight_ops.data import masks  # noqa: E402

SHAPE = (16, 32, 32)
FIELDS = ("B/03/0", "B/03/1")


def assert_threshold(stored: float, volume: np.ndarray, smooth: bool) -> None:
    """Stored T within one bin of scikit-image's ``threshold_otsu`` on a float64 copy (SPEC 1's agreement), of
    the median(5) + Gaussian(5) copy with ``smooth``."""
    x = np.asarray(volume, np.float32)
    if smooth:
        x = ndi.gaussian_filter(ndi.median_filter(x, size=5), sigma=5.0)
    x = x.astype(np.float64)
    assert abs(stored - threshold_otsu(x, nbins=256)) <= (x.max() - x.min()) / 256


@pytest.fixture
def plate(tmp_path):
    rng = np.random.default_rng(0)
    volumes = {f: np.stack([rng.standard_normal(SHAPE).astype(np.float32), target_like(i + 3, SHAPE)])
               for i, f in enumerate(FIELDS)}
    return write_iohub_plate(tmp_path / "plate.zarr", volumes, ["Phase3D", "Nuclei"], chunks=(1, 1, 4, 16, 16)), volumes


@pytest.mark.parametrize("smooth", [False, True])
def test_preprocess_a_plate_stores_masks_and_thresholds_in_each_field(plate, capsys, smooth):
    path, volumes = plate
    assert spotlight(["preprocess", str(path), "--channels", "Nuclei", "--no-progress"]
                     + (["--smooth-threshold"] if smooth else [])) == 0
    assert "2 field(s) of view" in capsys.readouterr().out
    for field, volume in volumes.items():
        group = zarr.open_group(str(path / field), mode="r")
        record = dict(group.attrs)["normalization"]["Nuclei"]["spotlight"]
        assert record["smooth"] is smooth and record["mask"] == "fg_mask"
        assert_threshold(record["otsu_threshold"], volume[1], smooth)
        stored = group["fg_mask"]
        assert stored.shape == (1, 2, *SHAPE) and stored.dtype == np.uint8  # VisCy's layout: the image's shape
        np.testing.assert_array_equal(stored[0, 1], volume[1] > np.float32(record["otsu_threshold"]))
        assert (stored[0, 0] == 1).all()  # a channel not preprocessed: full supervision, as VisCy fills it
        assert record["foreground_fraction"] == pytest.approx(float(stored[0, 1].mean()))
    # stored again only when asked
    assert spotlight(["preprocess", str(path), "--channels", "Nuclei", "--no-progress"]) == 2
    assert "are stored already; pass overwrite (--overwrite)" in capsys.readouterr().err
    assert spotlight(["preprocess", str(path), "--channels", "Nuclei", "--no-progress", "--overwrite"]
                     + (["--smooth-threshold"] if smooth else [])) == 0


def test_training_reads_the_stored_thresholds_and_masks(plate, tmp_path):
    """Targets standardized with the stored T (a changed T changes them), the stored mask is the pair's mask."""
    path, volumes = plate
    masks.preprocess_plate(path, ["Nuclei"])
    rows = [ManifestRow.of([Source(path / f, "Phase3D")], [Source(path / f, "Nuclei")]) for f in FIELDS]
    config = PreprocessConfig()
    pair = load_pair(rows[1], config)
    record = masks.image_records(path / FIELDS[1])["Nuclei"]
    y = volumes[FIELDS[1]][1].astype(np.float64)
    assert pair.info["otsu_threshold"] == record["otsu_threshold"] and pair.info["stored_threshold"] is True
    np.testing.assert_allclose(pair.target, (y - record["otsu_threshold"]) / y.std(), rtol=0, atol=2e-6)
    np.testing.assert_array_equal(pair.mask, zarr.open_group(str(path / FIELDS[1]))["fg_mask"][0, 1])
    lazy = load_pair_with_stats(rows[1], config, volume_stats(rows[1], config))
    np.testing.assert_allclose(lazy.target, pair.target, rtol=0, atol=2e-6)
    np.testing.assert_array_equal(lazy.mask, pair.mask)
    signal, target, mask = PatchSampler([load_pair(r, config) for r in rows], (8, 16, 16), 2).sample(with_mask=True)
    assert mask.shape == target.shape and mask.dtype == np.uint8
    # a moved stored threshold moves the standardization: the stored one is what is used
    group = zarr.open_group(str(path / FIELDS[1]), mode="r+")
    attrs = dict(group.attrs)
    attrs["normalization"]["Nuclei"]["spotlight"]["otsu_threshold"] = record["otsu_threshold"] + 0.05
    group.attrs.update(attrs)
    moved = load_pair(rows[1], config)
    np.testing.assert_allclose(moved.target, (y - record["otsu_threshold"] - 0.05) / y.std(), rtol=0, atol=2e-6)
    with pytest.raises(DataError, match="chosen without smoothing .* this run asks smooth_threshold true"):
        load_pair(rows[1], PreprocessConfig(smooth_threshold=True))


def test_a_viscy_threshold_is_used_when_no_spotlight_record_exists(plate):
    path, volumes = plate
    group = zarr.open_group(str(path / FIELDS[0]), mode="r+")
    group.attrs["normalization"] = {"Nuclei": {"fov_statistics": {"otsu_threshold": 0.4, "mean": 0.2, "std": 0.3}}}
    row = ManifestRow.of([Source(path / FIELDS[0], "Phase3D")], [Source(path / FIELDS[0], "Nuclei")])
    pair = load_pair(row, PreprocessConfig(smooth_threshold=True))  # VisCy's own smoothing: no check
    y = volumes[FIELDS[0]][1].astype(np.float64)
    np.testing.assert_allclose(pair.target, (y - 0.4) / y.std(), rtol=0, atol=2e-6)
    assert pair.mask is None  # VisCy's records do not say which channels of fg_mask were computed


def test_preprocess_a_tiff_manifest_writes_masks_and_a_manifest_naming_them(tmp_path, capsys):
    folder = tmp_path / "data"
    rows = []
    for name in ("w1", "w2"):
        (folder / name).mkdir(parents=True)
        signal, target = folder / name / "light.tif", folder / name / "nuc.tif"
        tifffile.imwrite(signal, np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32))
        tifffile.imwrite(target, target_like(int(name[1]), SHAPE), imagej=True,
                         resolution=(4.0, 4.0), metadata={"spacing": 0.5, "unit": "um"})
        rows.append(ManifestRow(signal, target))
    source = write_manifest(folder / "train.csv", rows)
    out = tmp_path / "prep" / "train_masks.csv"
    assert spotlight(["preprocess", str(source), "--out", str(out), "--no-progress"]) == 0
    with open(out, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["path_signal", "path_target", "path_mask", "otsu_threshold", "otsu_smooth"]
    assert [r["path_mask"] for r in table] == ["masks/w1_nuc_fg_mask.tif", "masks/w2_nuc_fg_mask.tif"]  # no collision
    back = read_manifest(out)
    for row, line in zip(back, table):
        target = tifffile.imread(row.target)
        assert_threshold(float(line["otsu_threshold"]), target, smooth=False)
        mask = tifffile.imread(row.mask)
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, target > np.float32(line["otsu_threshold"]))
        assert row.stored_thresholds == (float(line["otsu_threshold"]),) and row.threshold_smoothed is False
        pair = load_pair(row, PreprocessConfig())
        np.testing.assert_array_equal(pair.mask, mask)
        assert pair.info["otsu_threshold"] == float(line["otsu_threshold"])
    assert spotlight(["preprocess", str(source), "--out", str(out), "--no-progress"]) == 2
    assert "train_masks.csv: exists" in capsys.readouterr().err
    assert spotlight(["preprocess", str(out), "--out", str(tmp_path / "again.csv"), "--no-progress"]) == 2
    assert "already names masks" in capsys.readouterr().err


def test_preprocess_refuses_what_it_cannot_do_in_one_line(plate, tmp_path, capsys):
    path, _ = plate
    assert spotlight(["preprocess", str(path), "--no-progress"]) == 2
    assert "--channels: name the plate's target channel(s); it has Phase3D, Nuclei" in capsys.readouterr().err
    assert spotlight(["preprocess", str(path), "--channels", "DAPI", "--no-progress"]) == 2
    assert "channel 'DAPI' not found" in capsys.readouterr().err
    assert spotlight(["preprocess", str(tmp_path / "x.csv"), "--no-progress"]) == 2
    assert "needs --out" in capsys.readouterr().err
    (tmp_path / "x.txt").write_text("x")
    assert spotlight(["preprocess", str(tmp_path / "x.txt"), "--no-progress"]) == 2
    assert "neither an HCS plate" in capsys.readouterr().err

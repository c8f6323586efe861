"""Inputs that used to pass silently or fail obscurely: complex TIFFs, CSV files with a byte-order mark."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from spotlight_ops.data import DataError, read_manifest, read_volume
from spotlight_ops.data.io import open_volume

BOM = "\ufeff"


@pytest.mark.parametrize("compression", [None, "zlib"])  # memory-mapped, and read whole
def test_a_complex_tiff_is_refused_naming_the_file(tmp_path, compression):
    path = tmp_path / "complex.tif"
    volume = (np.ones((4, 8, 8)) + 1j * np.arange(256).reshape(4, 8, 8)).astype(np.complex64)
    tifffile.imwrite(path, volume, compression=compression, photometric="minisblack")
    for read in (lambda: read_volume(path, "target"), lambda: open_volume(path, "target")):
        with pytest.raises(DataError, match=r"complex.tif: target holds complex values \(complex64\)") as info:
            read()
        assert info.value.path == path and "\n" not in str(info.value)


def test_a_manifest_saved_as_csv_utf8_with_a_bom_is_read(tmp_path):
    for name in ("s.tif", "t.tif"):
        tifffile.imwrite(tmp_path / name, np.zeros((4, 8, 8), np.float32), photometric="minisblack")
    manifest = tmp_path / "train.csv"
    manifest.write_bytes((BOM + "path_signal,path_target\r\ns.tif,t.tif\r\n").encode("utf-8"))
    rows = read_manifest(manifest)
    assert [(r.signal.name, r.target.name) for r in rows] == [("s.tif", "t.tif")]


def test_an_evaluation_csv_with_a_bom_is_read(tmp_path):
    from spotlight_ops.evaluation.inputs import from_csv

    volume = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    for name in ("p.tif", "t.tif"):
        tifffile.imwrite(tmp_path / name, volume, photometric="minisblack")
    table = tmp_path / "runs.csv"
    table.write_bytes((BOM + "model,path_prediction,path_target\r\nmse,p.tif,t.tif\r\n").encode("utf-8"))
    inputs = from_csv(table)
    assert list(inputs.predictions) == ["mse"] and inputs.names == ["t"]

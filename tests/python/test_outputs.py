"""Output names: distinct for same-named inputs, plates' fields into one plate, collisions refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from spotlight_ops.data import Output, OutputCollision, Source, output_names, write_volume


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.zeros((2, 4, 4), np.float32), photometric="minisblack")
    return path


def test_unique_names_stay_plain_and_kinds_follow_the_input(tmp_path):
    inputs = [touch(tmp_path / "a" / "light.tif"), touch(tmp_path / "b" / "dark.ome.tif"),
              touch(tmp_path / "c" / "x.tiff")]
    assert [o.name for o in output_names(inputs)] == ["light_prediction.tif", "dark_prediction.ome.tif",
                                                      "x_prediction.tif"]
    assert output_names(inputs[:1], suffix="_fg_mask") == [Output("light_fg_mask.tif")]
    assert Output("light_prediction.tif").path(tmp_path / "out") == tmp_path / "out" / "light_prediction.tif"


def test_same_named_inputs_from_different_folders_keep_distinct_names(tmp_path):
    inputs = [touch(tmp_path / "w1" / "light.tif"), touch(tmp_path / "w2" / "light.tif"),
              touch(tmp_path / "w3" / "other.tif")]
    names = [o.name for o in output_names(inputs)]
    assert names == ["w1_light_prediction.tif", "w2_light_prediction.tif", "other_prediction.tif"]
    deep = [touch(tmp_path / "r1" / "s" / "light.tif"), touch(tmp_path / "r2" / "s" / "light.tif")]
    assert [o.name for o in output_names(deep)] == ["r1_s_light_prediction.tif", "r2_s_light_prediction.tif"]
    cased = [touch(tmp_path / "u1" / "Light.tif"), touch(tmp_path / "u2" / "light.tif")]
    assert len({o.name.lower() for o in output_names(cased)}) == 2  # distinct on case-insensitive disks too


def test_collisions_are_refused_naming_both_inputs(tmp_path):
    a, b = touch(tmp_path / "d" / "a.tif"), touch(tmp_path / "d" / "a.tiff")
    with pytest.raises(OutputCollision, match=r"a\.tif and .*a\.tiff would both be written as a_prediction\.tif"):
        output_names([a, b])
    with pytest.raises(OutputCollision, match="same input .given twice"):
        output_names([a, tmp_path / "d" / ".." / "d" / "a.tif"])
    clash = [touch(tmp_path / "w1" / "light.tif"), touch(tmp_path / "w2" / "light.tif"),
             touch(tmp_path / "x" / "w1_light.tif")]
    with pytest.raises(OutputCollision, match="w1_light_prediction.tif"):
        output_names(clash)


def test_fields_of_view_go_into_one_plate_and_never_collide(tmp_path):
    pytest.importorskip("ome_zarr")
    from plate_helpers import write_iohub_plate

    volumes = {f: np.zeros((1, 4, 8, 8)) for f in ("B/03/0", "B/03/1", "C/04/0")}
    first = write_iohub_plate(tmp_path / "e1" / "plate.zarr", volumes, ["N"])
    second = write_iohub_plate(tmp_path / "e2" / "plate.zarr", volumes, ["N"])
    image = write_volume(tmp_path / "e1" / "0.ome.zarr", np.zeros((4, 8, 8), np.float32))
    inputs = [Source(first / f, "N") for f in volumes] + [second / "B/03/0", image]
    outputs = output_names(inputs)
    assert outputs[:3] == [Output("e1_plate_prediction.ome.zarr", f) for f in volumes]
    assert outputs[3] == Output("e2_plate_prediction.ome.zarr", "B/03/0")
    assert outputs[4] == Output("0_prediction.ome.zarr")  # a standalone image named 0 is a file, not a field
    assert len({(o.name, o.field) for o in outputs}) == len(inputs)
    with pytest.raises(OutputCollision, match="given twice"):
        output_names([first / "B/03/0", Source(first / "B/03/0", "N")])

"""HCS OME-Zarr plates: iohub/VisCy plates read, fields of view in manifests, lazy chunk reads, plates written."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

pytest.importorskip("ome_zarr")

import zarr  # noqa: E402
from plate_helpers import counting_chunk_reads, target_like, write_iohub_plate  # noqa: E402

from spotlight_ops.data import (DataError, ManifestRow, PatchSampler, PreprocessConfig, Source, StatsCache,  # noqa: E402
                                VolumeBuffer, append_channels, create_plate_like, load_pair, load_pair_with_stats,
                                load_pairs, open_plate, parse_source, read_manifest, read_metadata, read_volume,
                                volume_stats, write_channels, write_manifest, write_volume)

SHAPE = (16, 32, 32)
FIELDS = ("B/03/0", "B/03/1")


def plate_volumes(seed: int = 0) -> dict:
    """Two fields of view, channels (Phase3D, Nuclei): a random signal and a nuclei-like target."""
    rng = np.random.default_rng(seed)
    return {field: np.stack([rng.standard_normal(SHAPE).astype(np.float32), target_like(seed + i + 1, SHAPE)])
            for i, field in enumerate(FIELDS)}


@pytest.fixture
def plate(tmp_path):
    volumes = plate_volumes()
    path = write_iohub_plate(tmp_path / "plate.zarr", volumes, ["Phase3D", "Nuclei"], chunks=(1, 1, 4, 16, 16))
    return path, volumes


def test_an_iohub_plate_lists_its_fields_and_channels_and_reads_each_channel(plate):
    path, volumes = plate
    opened = open_plate(path)
    assert opened.fields == FIELDS and opened.version == "0.4" and opened.wells == ("B/03",)
    assert opened.channel_names() == ["Phase3D", "Nuclei"]
    for field, volume in volumes.items():
        fov = opened.field_path(field)
        np.testing.assert_array_equal(read_volume(fov, "signal", channel="Phase3D"), volume[0])
        np.testing.assert_array_equal(read_volume(fov, "target", channel="Nuclei"), volume[1])
        np.testing.assert_array_equal(read_volume(fov, "target", channel=1), volume[1])  # by index
        np.testing.assert_array_equal(parse_source(f"{fov}#Nuclei").read("target"), volume[1])
        meta = read_metadata(fov)
        assert meta.voxel_size == pytest.approx((0.5, 0.25, 0.25)) and meta.unit == "um"


def test_plate_errors_name_the_store_and_what_to_do(plate, tmp_path):
    path, _ = plate
    fov = path / "B/03/0"
    with pytest.raises(DataError, match=r"2 channels \(Phase3D, Nuclei\); name one"):
        read_volume(fov, "target")
    with pytest.raises(DataError, match=r"channel 'DAPI' not found; the image's channels are Phase3D, Nuclei"):
        read_volume(fov, "target", channel="DAPI")
    with pytest.raises(DataError, match="plate.zarr: cannot read target OME-Zarr .*HCS plate, not an image"):
        read_volume(path, "target")
    with pytest.raises(DataError, match="plate has no field of view 'C/01/0'"):
        open_plate(path).field_path("C/01/0")
    with pytest.raises(DataError, match="is a TIFF"):
        write_volume(tmp_path / "a.tif", np.zeros((2, 4, 4), np.float32))
        read_volume(tmp_path / "a.tif", channel="x")
    timelapse = write_iohub_plate(tmp_path / "t.zarr", {"A/1/0": np.zeros((1, 4, 8, 8))}, ["N"])
    array = zarr.open_group(str(timelapse / "A/1/0"), mode="r+")["0"]
    array.resize((3, 1, 4, 8, 8))
    with pytest.raises(DataError, match="holds 3 time points"):
        read_volume(timelapse / "A/1/0", "target")


def test_reading_a_patch_reads_only_the_chunks_it_touches(plate, monkeypatch):
    """The lazy read of a box asks the store for exactly the chunks the box intersects (chunks 1x1x4x16x16)."""
    path, volumes = plate
    volume = Source(path / "B/03/1", "Nuclei").open("target")
    box = (slice(2, 9), slice(10, 20), slice(0, 16))
    with counting_chunk_reads(monkeypatch) as keys:
        patch = volume.box(box)
    np.testing.assert_array_equal(patch, volumes["B/03/1"][1][box])
    touched = {f"0/0/1/{z}/{y}/{x}" for z, y, x in itertools.product(range(0, 3), range(0, 2), range(0, 1))}
    assert set(keys) == touched and len(keys) == len(touched) == 6  # of the 16 chunks of the channel


def test_manifest_rows_name_fields_of_view_by_path_channel_column_or_whole_plate(plate, tmp_path):
    path, volumes = plate
    (tmp_path / "fov.csv").write_text("path_signal,channel_signal,path_target,channel_target\n"
                                      "plate.zarr/B/03/1,Phase3D,plate.zarr/B/03/1,Nuclei\n")
    (tmp_path / "hash.csv").write_text("path_signal,path_target\nplate.zarr/B/03/1#Phase3D,plate.zarr/B/03/1#1\n")
    (tmp_path / "whole.csv").write_text("path_signal,channel_signal,path_target,channel_target\n"
                                        "plate.zarr,Phase3D,plate.zarr,Nuclei\n")
    fov = read_manifest(tmp_path / "fov.csv")
    assert fov == [ManifestRow.of([Source(path / "B/03/1", "Phase3D")], [Source(path / "B/03/1", "Nuclei")])]
    assert read_manifest(tmp_path / "hash.csv")[0].targets == (Source(path / "B/03/1", "1"),)
    whole = read_manifest(tmp_path / "whole.csv")
    assert [r.target for r in whole] == [path / f for f in FIELDS]
    # the pairs equal those of the same volumes as single-channel TIFFs, bit for bit
    tiffs = []
    for field in FIELDS:
        name = field.replace("/", "_")
        tiffs.append(ManifestRow(write_volume(tmp_path / f"{name}_s.tif", volumes[field][0]),
                                 write_volume(tmp_path / f"{name}_t.tif", volumes[field][1])))
    for config in (PreprocessConfig(), PreprocessConfig(target_norm="zscore", smooth_threshold=True)):
        for got, want in zip(load_pairs(whole, config), load_pairs(tiffs, config)):
            np.testing.assert_array_equal(got.signal, want.signal)
            np.testing.assert_array_equal(got.target, want.target)
            assert got.info == want.info
    # written back with channel columns, read back equal
    assert read_manifest(write_manifest(tmp_path / "back.csv", whole)) == whole
    assert "channel_signal" in (tmp_path / "back.csv").read_text().splitlines()[0]
    (tmp_path / "bad.csv").write_text("path_signal,channel_signal,path_target\nplate.zarr/B/03/1#Nuclei,Phase3D,"
                                      "plate.zarr/B/03/1#Nuclei\n")
    with pytest.raises(DataError, match="line 2: path_signal: .*channel 'Nuclei' in the path and 'Phase3D'"):
        read_manifest(tmp_path / "bad.csv")


def test_a_plate_trains_lazily_through_the_volume_buffer(plate, tmp_path):
    """Fields of view through the cached-statistics path (crop box read chunk by chunk) equal the eager pairs."""
    path, _ = plate
    rows = [ManifestRow.of([Source(path / f, "Phase3D")], [Source(path / f, "Nuclei")]) for f in FIELDS]
    config = PreprocessConfig()
    for row in rows:
        lazy, eager = load_pair_with_stats(row, config, volume_stats(row, config)), load_pair(row, config)
        np.testing.assert_array_equal(lazy.signal, eager.signal)
        np.testing.assert_allclose(lazy.target, eager.target, rtol=0, atol=2e-6)
    buffer = VolumeBuffer(rows, config, size=1, switch_every=2, cache=StatsCache(tmp_path / "stats.json"), seed=3)
    sampler = PatchSampler(buffer, (8, 16, 16), 2, seed=3)
    held = set()
    for _ in range(6):
        signal, target = sampler.sample()
        assert signal.shape == target.shape == (2, 1, 8, 16, 16)
        held.add(buffer.indices[0])
    assert held == {0, 1}


def test_a_prediction_plate_has_the_input_layout_and_reads_back(plate, tmp_path):
    path, volumes = plate
    out = create_plate_like(path, tmp_path / "pred.zarr", ["Nuclei_prediction"])
    assert out.fields == FIELDS and out.version == "0.4" and (out.path / ".zgroup").is_file()  # zarr v2, as iohub
    image_meta = json.loads((out.path / "B/03/0/.zattrs").read_text())["multiscales"][0]
    assert [a["name"] for a in image_meta["axes"]] == ["T", "C", "Z", "Y", "X"]  # the input's axes, as stored
    assert image_meta["datasets"][0]["path"] == "0"  # iohub's level name, which VisCy reads
    assert zarr.open_group(str(out.path / "B/03/0"), mode="r")["0"].chunks == (1, 1, 4, 16, 16)
    assert out.channel_names() == ["Nuclei_prediction"]
    prediction = volumes["B/03/1"][1] * 2 - 1
    write_channels(out.field_path("B/03/1"), {"Nuclei_prediction": prediction})
    np.testing.assert_array_equal(read_volume(out.field_path("B/03/1"), "prediction"), prediction)
    assert read_metadata(out.field_path("B/03/1")).voxel_size == pytest.approx((0.5, 0.25, 0.25))
    unwritten = read_volume(out.field_path("B/03/0"), "prediction", check_finite=False)
    assert np.isnan(unwritten).all()  # not yet predicted: NaN, never a plausible number
    with pytest.raises(DataError, match="NaN"):
        read_volume(out.field_path("B/03/0"), "prediction")
    with pytest.raises(DataError, match="pred.zarr: exists"):
        create_plate_like(path, tmp_path / "pred.zarr", ["x"])
    with pytest.raises(DataError, match="has no channel 'other'"):
        write_channels(out.field_path("B/03/1"), {"other": prediction})
    one = create_plate_like(path, tmp_path / "one.zarr", ["a", "b"], fields=["B/03/1"])
    assert one.fields == ("B/03/1",) and one.channel_names() == ["a", "b"]


def test_a_ngff_05_plate_written_by_ome_zarr_reads_and_its_prediction_plate_is_05(tmp_path):
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    fmt = FormatV05()
    root = zarr.open_group(str(tmp_path / "p05.zarr"), mode="w", zarr_format=3)
    write_plate_metadata(root, ["A"], ["1", "2"], ["A/1", "A/2"], fmt=fmt)
    volumes = {}
    channel = {"color": "FFFFFF", "window": {"start": 0.0, "end": 1.0, "min": 0.0, "max": 1.0}}
    for k, well in enumerate(["A/1", "A/2"]):
        write_well_metadata(root.require_group(well), [{"path": "0"}], fmt=fmt)
        volumes[well] = np.stack([np.full(SHAPE, k, np.float32), target_like(k)])[None]
        write_image(volumes[well], root.require_group(f"{well}/0"), scale_factors=[], axes="tczyx", fmt=fmt,
                    omero={"channels": [{**channel, "label": "BF"}, {**channel, "label": "H2B"}]})
    plate = open_plate(tmp_path / "p05.zarr")
    assert plate.fields == ("A/1/0", "A/2/0") and plate.version == "0.5" and plate.channel_names() == ["BF", "H2B"]
    np.testing.assert_array_equal(read_volume(plate.field_path("A/2/0"), channel="H2B"), volumes["A/2"][0, 1])
    out = create_plate_like(plate, tmp_path / "out.zarr", ["H2B_prediction"])
    assert out.version == "0.5" and (out.path / "zarr.json").is_file()
    write_channels(out.field_path("A/1/0"), {"H2B_prediction": volumes["A/1"][0, 1]})
    np.testing.assert_array_equal(read_volume(out.field_path("A/1/0")), volumes["A/1"][0, 1])
    append_channels(plate, ["H2B_prediction"])  # into a 0.5 store: the channel list lives under "ome"
    assert open_plate(plate.path).channel_names() == ["BF", "H2B", "H2B_prediction"]
    write_channels(plate.field_path("A/2/0"), {"H2B_prediction": volumes["A/2"][0, 1] + 1})
    np.testing.assert_array_equal(read_volume(plate.field_path("A/2/0"), channel=2), volumes["A/2"][0, 1] + 1)


def test_predictions_written_into_the_input_store_as_a_new_channel(plate, tmp_path):
    """Every field gains the channel (HCS plates keep equal channels); every level of a pyramid is written,
    downsampled as ome-zarr's default ("resize": skimage's resize, order 1, anti-aliased) makes levels."""
    from skimage.transform import resize

    path, volumes = plate
    append_channels(path, ["Nuclei_prediction"])
    assert open_plate(path).channel_names() == ["Phase3D", "Nuclei", "Nuclei_prediction"]
    prediction = volumes["B/03/0"][1] + 0.5
    write_channels(path / "B/03/0", {"Nuclei_prediction": prediction})
    fov = path / "B/03/0"
    np.testing.assert_array_equal(read_volume(fov, channel="Nuclei_prediction"), prediction)
    for k, name in enumerate(["Phase3D", "Nuclei"]):  # the input's channels are untouched
        np.testing.assert_array_equal(read_volume(fov, channel=name), volumes["B/03/0"][k])
    with pytest.raises(DataError, match="already has channel"):
        append_channels(path, ["Nuclei"])
    # a field with a second resolution level: it is resized and written downsampled, as ome-zarr makes levels
    group = zarr.open_group(str(fov), mode="r+")
    attrs = dict(group.attrs)
    group.create_array("1", shape=(1, 3, 16, 16, 16), chunks=(1, 1, 16, 16, 16), dtype=np.float32)
    attrs["multiscales"][0]["datasets"].append(
        {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 0.5, 0.5, 0.5]}]})
    group.attrs.update(attrs)
    append_channels(path, ["second"])
    assert group["1"].shape == (1, 4, 16, 16, 16)
    write_channels(fov, {"second": prediction})
    expected = resize(prediction, (16, 16, 16), order=1, mode="reflect", anti_aliasing=True, preserve_range=True)
    np.testing.assert_allclose(group["1"][0, 3], expected, rtol=0, atol=1e-6)

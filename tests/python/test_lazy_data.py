"""Data larger than memory: lazy reading (memmap TIFF, OME-Zarr), cached statistics, the volume buffer."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from spotlight_ops.data import (DataError, ManifestRow, PatchSampler, PreprocessConfig, StatsCache, VolumeBuffer,
                                load_pair, load_pair_with_stats, open_volume, read_manifest, read_metadata,
                                read_volume, write_manifest, write_volume)
from spotlight_ops.data import buffer as buffer_module

pytest.importorskip("ome_zarr")

SHAPE = (16, 40, 40)


def target_like(seed: int, shape=SHAPE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    volume = 0.1 + 0.02 * rng.standard_normal(shape)
    z, y = rng.integers(0, shape[0] - 6), rng.integers(0, shape[1] - 12)
    volume[z:z + 6, y:y + 12, 4:30] += 1.0
    return volume.astype(np.float32)


def write_pairs(folder, n: int, kind: str = "tif") -> list[ManifestRow]:
    """``n`` pairs as plain TIFF, OME-Zarr (``zarr``) or alternating (``mixed``)."""
    rows = []
    for i in range(n):
        suffix = (".ome.zarr" if i % 2 else ".tif") if kind == "mixed" else (".ome.zarr" if kind == "zarr" else ".tif")
        signal = np.random.default_rng(100 + i).standard_normal(SHAPE).astype(np.float32)
        paths = [folder / f"p{i}_signal{suffix}", folder / f"p{i}_target{suffix}"]
        write_volume(paths[0], signal, voxel_size=(0.5, 0.25, 0.25))
        write_volume(paths[1], target_like(i), voxel_size=(0.5, 0.25, 0.25))
        rows.append(ManifestRow(*paths))
    return rows


def test_uncompressed_tiff_is_memory_mapped_and_compressed_read_whole(tmp_path):
    volume = target_like(0)
    tifffile.imwrite(tmp_path / "plain.tif", volume)
    tifffile.imwrite(tmp_path / "zlib.tif", volume, compression="zlib")
    tifffile.imwrite(tmp_path / "tczyx.ome.tif", volume[None, None], ome=True, metadata={"axes": "TCZYX"})
    lazy = open_volume(tmp_path / "plain.tif")
    assert isinstance(lazy.array, np.memmap) and lazy.shape == SHAPE
    np.testing.assert_array_equal(lazy.slab(3, 5), volume[3:5])
    packed = open_volume(tmp_path / "zlib.tif")
    assert not isinstance(packed.array, np.memmap)
    np.testing.assert_array_equal(packed.read(), volume)
    ome = open_volume(tmp_path / "tczyx.ome.tif")
    assert ome.shape == SHAPE and isinstance(ome.array, np.memmap)
    np.testing.assert_array_equal(ome.read(), volume)
    with pytest.raises(DataError, match="single-channel 3D"):
        tifffile.imwrite(tmp_path / "two.tif", np.zeros((2, 3, 8, 8), np.float32), photometric="minisblack")
        open_volume(tmp_path / "two.tif")
    with pytest.raises(DataError, match="not found"):
        open_volume(tmp_path / "none.tif")


def test_ome_zarr_roundtrip_is_lazy_and_keeps_the_voxel_size(tmp_path):
    import zarr

    volume = target_like(1)
    path = write_volume(tmp_path / "v.ome.zarr", volume, voxel_size=(0.9, 0.3, 0.3))
    assert path.is_dir()
    lazy = open_volume(path)
    assert isinstance(lazy.array, zarr.Array) and lazy.shape == SHAPE
    np.testing.assert_array_equal(lazy.slab(2, 7), volume[2:7])
    np.testing.assert_array_equal(read_volume(path), volume)
    meta = read_metadata(path)
    assert meta.voxel_size == pytest.approx((0.9, 0.3, 0.3)) and meta.unit == "um"
    # a 5D (t, c, z, y, x) store written by ome-zarr directly
    from ome_zarr.writer import write_image

    group = zarr.open_group(str(tmp_path / "tczyx.zarr"), mode="w")
    write_image(volume[None, None], group, scale_factors=[], axes="tczyx")
    assert open_volume(tmp_path / "tczyx.zarr").shape == SHAPE
    np.testing.assert_array_equal(read_volume(tmp_path / "tczyx.zarr"), volume)
    with pytest.raises(DataError, match="Zarr store not found"):
        read_volume(tmp_path / "missing.zarr", "signal")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(DataError, match="empty.zarr: cannot read target OME-Zarr"):
        read_volume(tmp_path / "empty.zarr", "target")


def test_ome_tiff_output_keeps_the_voxel_size(tmp_path):
    path = write_volume(tmp_path / "v.ome.tif", target_like(2), voxel_size=(0.9, 0.3, 0.3))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
    assert read_metadata(path).voxel_size == pytest.approx((0.9, 0.3, 0.3))


def test_manifest_accepts_zarr_stores(tmp_path):
    rows = write_pairs(tmp_path / "img", 2, "mixed")
    csv = write_manifest(tmp_path / "m.csv", rows)
    back = read_manifest(csv)
    assert [r.signal.name for r in back] == ["p0_signal.tif", "p1_signal.ome.zarr"]
    (tmp_path / "bad.csv").write_text("path_signal,path_target\nimg/none.zarr,img/p0_target.tif\n")
    with pytest.raises(DataError, match="none.zarr: file not found"):
        read_manifest(tmp_path / "bad.csv")


@pytest.mark.parametrize("config", [PreprocessConfig(crop_multiple=16), PreprocessConfig(target_norm="zscore"),
                                    PreprocessConfig(voxel_size=(0.5, 0.25, 0.25)),
                                    PreprocessConfig(smooth_threshold=True, crop_multiple=8)])
def test_cached_statistics_give_the_in_memory_pair(tmp_path, config):
    for row in write_pairs(tmp_path, 2, "mixed"):
        stats = buffer_module.volume_stats(row, config)
        lazy, eager = load_pair_with_stats(row, config, stats), load_pair(row, config)
        assert lazy.shape == eager.shape and lazy.info["crop_box"] == eager.info["crop_box"]
        np.testing.assert_array_equal(lazy.signal, eager.signal)  # the same float64 formula
        np.testing.assert_allclose(lazy.target, eager.target, rtol=0, atol=2e-6)
        if config.smooth_threshold or config.target_norm == "zscore":  # both paths: preprocess.standardize_with
            np.testing.assert_array_equal(lazy.target, eager.target)
        assert np.mean(lazy.foreground != eager.foreground) < 1e-3
        assert stats["threshold"] == pytest.approx(eager.info["otsu_threshold"])


def test_statistics_are_computed_once_and_keyed_by_file_and_options(tmp_path, monkeypatch):
    rows = write_pairs(tmp_path, 3)
    calls = []
    real = buffer_module.volume_stats
    monkeypatch.setattr(buffer_module, "volume_stats", lambda row, config: calls.append(row) or real(row, config))
    config = PreprocessConfig()
    cache_path = tmp_path / "run" / "preprocess_stats.json"
    VolumeBuffer(rows, config, 2, 0, StatsCache(cache_path))
    assert len(calls) == 3 and cache_path.is_file()
    second = StatsCache(cache_path)
    VolumeBuffer(rows, config, 2, 0, second)  # a resumed or second run
    assert len(calls) == 3 and second.hits == 3
    VolumeBuffer(rows, PreprocessConfig(smooth_threshold=True), 2, 0, StatsCache(cache_path))
    assert len(calls) == 6  # other options: other statistics
    stamp = os.stat(rows[1].target).st_mtime_ns + 10**9
    os.utime(rows[1].target, ns=(stamp, stamp))
    VolumeBuffer(rows, config, 2, 0, StatsCache(cache_path))
    assert len(calls) == 7 and calls[-1] == rows[1]  # only the changed file is read again
    cache_path.write_text("{torn")
    VolumeBuffer(rows, config, 2, 0, StatsCache(cache_path))  # an unreadable cache is recomputed
    assert len(calls) == 10


def test_buffer_holds_size_pairs_and_switches_reproducibly(tmp_path):
    rows = write_pairs(tmp_path, 6, "mixed")
    cache = StatsCache(tmp_path / "stats.json")
    buffer = VolumeBuffer(rows, PreprocessConfig(), size=2, switch_every=3, cache=cache, seed=1)
    sampler = PatchSampler(buffer, (8, 16, 16), 2, seed=1, augment="yx")
    held = [list(buffer.indices)]
    for _ in range(12):
        sampler.sample()
        held.append(list(buffer.indices))
    assert all(len(h) == 2 and len(set(h)) == 2 for h in held)
    switches = [i for i in range(1, 13) if held[i] != held[i - 1]]
    assert switches == [3, 6, 9, 12] and buffer.loads == 6
    assert len({i for h in held for i in h}) > 2
    # resume: a fresh buffer and sampler given the state continue identically
    state = sampler.state_dict()
    expected = [sampler.sample() for _ in range(5)]
    fresh = VolumeBuffer(rows, PreprocessConfig(), size=2, switch_every=3, cache=StatsCache(tmp_path / "stats.json"),
                         seed=1)
    resumed = PatchSampler(fresh, (8, 16, 16), 2, seed=1, augment="yx")
    resumed.load_state_dict(state)
    assert fresh.indices == state["buffer"]["indices"]
    for want in expected:
        got = resumed.sample()
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_buffer_reports_bad_pairs_and_sizes(tmp_path):
    rows = write_pairs(tmp_path, 2)
    flat = tmp_path / "flat_target.tif"
    tifffile.imwrite(flat, np.ones(SHAPE, np.float32))
    bad = rows + [ManifestRow(rows[0].signal, flat)]
    with pytest.raises(DataError, match="flat_target.tif: too little foreground"):
        VolumeBuffer(bad, PreprocessConfig(), 2, 1, StatsCache(tmp_path / "s.json"))
    buffer = VolumeBuffer(rows, PreprocessConfig(), 1, 1, StatsCache(tmp_path / "s.json"))
    with pytest.raises(DataError, match="smaller than the patch"):
        PatchSampler(buffer, (32, 64, 64), 2)
    with pytest.raises(ValueError, match="buffer size"):
        VolumeBuffer(rows, PreprocessConfig(), 0, 1, StatsCache(tmp_path / "s.json"))


def test_real_fnet_sample_lazily(shared_data, tmp_path):
    """The real Allen pair (a compressed TIFF: read whole), and the same pair as OME-Zarr (chunked), both
    through the cached-statistics path, equal the in-memory pair."""
    folder = shared_data / "fnet_sample"
    tiff_row = ManifestRow(folder / "light.tif", folder / "nuc.tif")
    zarr_row = ManifestRow(write_volume(tmp_path / "light.ome.zarr", read_volume(tiff_row.signal)),
                           write_volume(tmp_path / "nuc.ome.zarr", read_volume(tiff_row.target)))
    config = PreprocessConfig()
    eager = load_pair(tiff_row, config)
    for row in (tiff_row, zarr_row):
        lazy = load_pair_with_stats(row, config, buffer_module.volume_stats(row, config))
        np.testing.assert_array_equal(lazy.signal, eager.signal)
        np.testing.assert_allclose(lazy.target, eager.target, rtol=0, atol=2e-6)
        assert np.mean(lazy.foreground != eager.foreground) < 1e-4

"""Streamed prediction: the same numbers as blending the whole volume at once, statistics streamed exactly,
the signal read lazily and the output written slab by slab."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile
import torch
from predict_helpers import one_thread  # noqa: F401  (autouse: one torch thread)

from spotlight_ops.data import PreprocessConfig, read_volume, write_volume
from spotlight_ops.data.preprocess import moments, standardize
from spotlight_ops.data.sources import Source
from spotlight_ops.models import FNet
from spotlight_ops.predict import blend_window, predict_file, predict_volume, tile_starts
from spotlight_ops.prediction import reading
from spotlight_ops.prediction.reading import open_signal, open_signals, streaming_moments
from spotlight_ops.prediction.tiles import ArrayReader, predict_tiled




def fnet(in_channels=1, out_channels=1, seed=0) -> FNet:
    torch.manual_seed(seed)
    net = FNet(depth=1, base_channels=4, in_channels=in_channels, out_channels=out_channels)
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.randn(2, in_channels, 8, 16, 16))
    return net.eval()


def whole_volume_blend(model, signal: np.ndarray, tile, overlap) -> np.ndarray:
    """The blending of the whole volume at once: reflect-pad, accumulate sum_t w_t P_t and sum_t w_t over
    every tile in full-size float32 arrays, divide (``signal``: ``(C, Z, Y, X)``; ``tile``: multiples of the
    model's size multiple, no larger than the volume rounded up to one)."""
    shape = signal.shape[1:]
    padded_shape = tuple(max(s, t) for s, t in zip(shape, tile))
    padded = np.pad(signal, [(0, 0)] + [(0, p - s) for p, s in zip(padded_shape, shape)], mode="reflect")
    starts = [tile_starts(s, t, o) for s, t, o in zip(padded_shape, tile, overlap)]
    total, weight = None, np.zeros(padded_shape, np.float32)
    with torch.no_grad():
        for z in starts[0]:
            for y in starts[1]:
                for x in starts[2]:
                    box = (slice(z, z + tile[0]), slice(y, y + tile[1]), slice(x, x + tile[2]))
                    p = model(torch.from_numpy(np.ascontiguousarray(padded[(slice(None),) + box]))[None])[0].numpy()
                    if total is None:
                        total = np.zeros((p.shape[0],) + padded_shape, np.float32)
                    w = np.einsum("i,j,k->ijk", *[blend_window(t, o, c > 0, c + t < q) for c, t, o, q in
                                                  zip((z, y, x), tile, overlap, padded_shape)]).astype(np.float32)
                    total[(slice(None),) + box] += w * p
                    weight[box] += w
    return (total / weight)[(slice(None),) + tuple(slice(0, s) for s in shape)]


@pytest.mark.parametrize("shape,tile,overlap,batch", [
    ((21, 37, 45), (8, 16, 16), (2, 4, 4), 1),    # several tiles on every axis
    ((21, 37, 45), (8, 16, 16), (2, 4, 4), 5),    # batches crossing tile rows and z rows
    ((5, 37, 30), (6, 16, 16), (2, 4, 6), 3),     # z shorter than a tile: reflect-padded
    ((17, 11, 40), (16, 12, 16), (0, 4, 8), 2),   # no overlap in z, y reflect-padded
])
def test_streamed_blending_equals_whole_volume_blending(shape, tile, overlap, batch):
    model = fnet()
    signal = np.random.default_rng(1).standard_normal((1,) + shape).astype(np.float32)
    expected = whole_volume_blend(model, signal, tile, overlap)[0]
    got = predict_volume(model, signal[0], tile, overlap, batch_tiles=batch)
    assert got.shape == shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("write_bytes", [1, 4 * 20 * 20 * 3, 1 << 30])  # a plane, 3 planes, a whole z row
def test_writes_come_in_order_once_per_plane(monkeypatch, write_bytes):
    from spotlight_ops.prediction import tiles

    model = fnet()
    signal = np.random.default_rng(2).standard_normal((1, 30, 20, 20)).astype(np.float32)
    monkeypatch.setattr(tiles, "WRITE_BYTES", write_bytes)
    seen, parts = [], []
    predict_tiled(model, ArrayReader(signal), lambda z0, planes: (seen.append((z0, planes.shape[1])),
                                                                  parts.append(planes.copy())),
                  tile_size=(8, 16, 16), overlap=(2, 4, 4))
    planes = [z0 + i for z0, n in seen for i in range(n)]
    assert planes == list(range(30)) and len(seen) > 3
    assert write_bytes > 4 * 20 * 20 * 8 or max(n for _, n in seen) <= max(1, write_bytes // (4 * 20 * 20))
    np.testing.assert_allclose(np.concatenate(parts, axis=1),
                               whole_volume_blend(model, signal, (8, 16, 16), (2, 4, 4)), rtol=2e-6, atol=2e-6)


def test_multi_channel_model_in_and_out():
    model = fnet(in_channels=2, out_channels=3)
    signal = np.random.default_rng(3).standard_normal((2, 19, 33, 20)).astype(np.float32)
    got = predict_volume(model, signal, (8, 16, 16), (2, 4, 4), batch_tiles=2)
    assert got.shape == (3, 19, 33, 20)
    np.testing.assert_allclose(got, whole_volume_blend(model, signal, (8, 16, 16), (2, 4, 4)), rtol=2e-6, atol=2e-6)


def test_streamed_moments_equal_the_whole_volume_moments(tmp_path):
    rng = np.random.default_rng(4)
    volume = (1000.0 + 37.0 * rng.standard_normal((23, 31, 29))).astype(np.float32)
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, volume)
    lazy = open_signal(Source(path))
    for slab_bytes in (1, 8 * 31 * 29 * 5, 1 << 30):  # one plane, 5 planes, all at once
        mean, std = streaming_moments(lazy, slab_bytes)
        ref_mean, ref_std = moments(volume)
        assert mean == pytest.approx(ref_mean, rel=1e-13) and std == pytest.approx(ref_std, rel=1e-12)
        x = volume.astype(np.float64)
        assert mean == pytest.approx(x.sum() / x.size, rel=1e-13)
        assert std == pytest.approx(np.sqrt(((x - x.mean()) ** 2).sum() / x.size), rel=1e-12)
    box = (slice(3, 11), slice(0, 31), slice(4, 20))
    np.testing.assert_allclose(open_signals([Source(path)]).box(box)[0], standardize(volume)[box], rtol=0, atol=1e-6)


def test_lazy_signal_reads_are_remapped_and_refuse_non_finite(tmp_path):
    volume = np.random.default_rng(5).standard_normal((6, 8, 9)).astype(np.float32)
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, volume)
    lazy = open_signal(Source(path))
    assert isinstance(lazy.array, reading._Remapped)  # no map held between reads
    np.testing.assert_array_equal(lazy.read(), volume)
    volume[2, 3, 4] = np.nan
    tifffile.imwrite(path, volume)
    with pytest.raises(Exception, match="v.tif.*non-finite"):
        open_signals([Source(path)])


@pytest.mark.parametrize("suffix", [".tif", ".ome.tif"])
def test_predict_file_streams_into_a_tiff(tmp_path, suffix):
    model = fnet()
    signal = ndi.gaussian_filter(np.random.default_rng(6).standard_normal((20, 40, 36)), 1.5).astype(np.float32)
    source = write_volume(tmp_path / f"in{suffix}", 5.0 + 2.0 * signal, voxel_size=(0.9, 0.3, 0.3))
    out = predict_file(model, PreprocessConfig(),
                       source, tmp_path / f"out{suffix}", tile_size=(8, 16, 16), overlap=(2, 4, 4))
    expected = predict_volume(model, standardize(read_volume(source)), (8, 16, 16), (2, 4, 4))
    np.testing.assert_allclose(read_volume(out), expected, rtol=0, atol=1e-5)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome == (suffix == ".ome.tif")


@pytest.mark.parametrize("write_bytes", [1, 1 << 30])
def test_predict_file_streams_into_ome_zarr_chunks(tmp_path, monkeypatch, write_bytes):
    pytest.importorskip("ome_zarr")
    from spotlight_ops.data.zarr_io import open_image, write_zarr
    from spotlight_ops.prediction import tiles, writing

    monkeypatch.setattr(tiles, "WRITE_BYTES", write_bytes)
    writes = []
    real = writing.ZarrDestination.write

    def spy(self, z0, planes):
        before = self.start
        real(self, z0, planes)
        if self.start != before:
            writes.append((before, self.start))
    monkeypatch.setattr(writing.ZarrDestination, "write", spy)
    model = fnet()
    volume = np.random.default_rng(7).standard_normal((30, 20, 18)).astype(np.float32)
    source = write_zarr(tmp_path / "in.ome.zarr", volume, (1.0, 0.5, 0.5), chunk_depth=4)
    out = predict_file(model, PreprocessConfig(), source, tmp_path / "out.ome.zarr", tile_size=(8, 16, 16),
                       overlap=(2, 4, 4))
    assert open_image(out).array.chunks[-3] == 4 and open_image(out).channel_names == ["prediction"]
    np.testing.assert_allclose(read_volume(out), predict_volume(model, standardize(volume), (8, 16, 16), (2, 4, 4)),
                               rtol=0, atol=1e-5)
    assert writes[-1][1] == 30 and all(a % 4 == 0 and (b % 4 == 0 or b == 30) for a, b in writes)
    assert [a for a, _ in writes] == [0] + [b for _, b in writes[:-1]]

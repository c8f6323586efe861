"""Several signal and target channels: manifest columns, per-channel standardization, patches, F-net."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from skimage.filters import threshold_otsu

import spotlight_ops
from spotlight_ops.data import (DataError, ManifestRow, PatchSampler, PreprocessConfig, Source, load_pair,
                                load_pair_with_stats, read_manifest, volume_stats, write_manifest)
from spotlight_ops.models import FNet

SHAPE = (16, 32, 32)


def volumes(seed: int) -> dict:
    """Two signal channels and two target channels of different scales and offsets."""
    rng = np.random.default_rng(seed)
    t1 = 0.2 + 0.02 * rng.standard_normal(SHAPE)
    t1[3:9, 4:20, 6:22] += 1.0
    t2 = 100 + 5 * rng.standard_normal(SHAPE)
    t2[6:14, 10:30, 2:12] += 300
    return {"s1": rng.standard_normal(SHAPE) * 3 + 7, "s2": rng.gamma(2.0, 5.0, SHAPE), "t1": t1, "t2": t2,
            "m1": (t1 > 0.7).astype(np.uint8), "m2": (t2 > 250).astype(np.uint8)}


def write_rows(folder, count: int = 2, masks: bool = False) -> list[ManifestRow]:
    rows = []
    for i in range(count):
        paths = {}
        for name, volume in volumes(i).items():
            paths[name] = folder / f"p{i}_{name}.tif"
            tifffile.imwrite(paths[name], volume.astype(np.float32) if name[0] != "m" else volume)
        rows.append(ManifestRow.of([Source(paths["s1"]), Source(paths["s2"])], [Source(paths["t1"]), Source(paths["t2"])],
                                   [Source(paths["m1"]), Source(paths["m2"])] if masks else None))
    return rows


def test_one_manifest_column_per_channel(tmp_path):
    rows = write_rows(tmp_path, masks=True)
    csv = write_manifest(tmp_path / "m.csv", rows)
    header = csv.read_text().splitlines()[0]
    assert header == "path_signal,path_signal_2,path_target,path_target_2,path_mask,path_mask_2"
    back = read_manifest(csv)
    assert back == rows and len(back[0].signals) == 2 and back[0].masks[1].path.name == "p0_m2.tif"
    (tmp_path / "gap.csv").write_text("path_signal,path_signal_3,path_target\na,b,c\n")
    with pytest.raises(DataError, match="numbered without gaps; found path_signal, path_signal_3"):
        read_manifest(tmp_path / "gap.csv")
    (tmp_path / "half.csv").write_text(f"path_signal,path_target,path_target_2,path_mask,path_mask_2\n"
                                       f"{rows[0].signal},{rows[0].target},{rows[0].targets[1].path},{rows[0].mask},\n")
    with pytest.raises(DataError, match=r"masks are named for some target channels but not for channel\(s\) \[2\]"):
        load_pair(read_manifest(tmp_path / "half.csv")[0], PreprocessConfig())


@pytest.mark.parametrize("norm", ["otsu", "zscore"])
def test_each_channel_is_standardized_with_its_own_statistics(tmp_path, norm):
    """Against a float64 reference: signals (x - mean) / std, targets (x - T) / std with each channel's own
    Otsu T (scikit-image on a float64 copy) or (x - mean) / std; the foreground of each channel its own."""
    row = write_rows(tmp_path, 1)[0]
    pair = load_pair(row, PreprocessConfig(target_norm=norm))
    assert pair.signal.shape == pair.target.shape == pair.foreground.shape == (2,) + SHAPE
    assert pair.shape == SHAPE and pair.signal_channels == pair.target_channels == 2
    raw = volumes(0)
    for k, name in enumerate(["s1", "s2"]):
        x = raw[name].astype(np.float32).astype(np.float64)
        np.testing.assert_allclose(pair.signal[k], (x - x.mean()) / x.std(), rtol=0, atol=2e-6)
    for k, name in enumerate(["t1", "t2"]):
        y = raw[name].astype(np.float32).astype(np.float64)
        threshold = threshold_otsu(y, nbins=256)
        bin_width = (y.max() - y.min()) / 256
        assert abs(pair.info["otsu_threshold"][k] - threshold) <= bin_width  # SPEC 1: within one bin
        offset = pair.info["otsu_threshold"][k] if norm == "otsu" else y.mean()
        np.testing.assert_allclose(pair.target[k], (y - offset) / y.std(), rtol=0, atol=5e-6)
        np.testing.assert_array_equal(pair.foreground[k], y > pair.info["otsu_threshold"][k])
    # each channel equals the single-channel pipeline of that channel alone, bit for bit
    for k in range(2):
        alone = load_pair(ManifestRow(row.signals[k].path, row.targets[k].path), PreprocessConfig(target_norm=norm))
        np.testing.assert_array_equal(pair.signal[k], alone.signal)
        np.testing.assert_array_equal(pair.target[k], alone.target)


def test_patches_and_masks_carry_every_channel_and_the_lazy_path_agrees(tmp_path):
    rows = write_rows(tmp_path, 2, masks=True)
    config = PreprocessConfig()
    pairs = [load_pair(r, config) for r in rows]
    signal, target, mask = PatchSampler(pairs, (8, 16, 16), 3, seed=2).sample(with_mask=True)
    assert signal.shape == target.shape == mask.shape == (3, 2, 8, 16, 16)
    assert signal.flags.c_contiguous and target.dtype == np.float32
    for s, t, m in zip(signal, target, mask):  # each patch is one box of one pair, the same box in every channel
        boxes = [(p, (Ellipsis, slice(z, z + 8), slice(y, y + 16), slice(x, x + 16))) for p in pairs
                 for z in range(9) for y in range(17) for x in range(17)]
        pair, box = next((p, b) for p, b in boxes if np.array_equal(p.signal[b][0], s[0]))
        for got, array in ((s, pair.signal), (t, pair.target), (m, pair.mask)):
            np.testing.assert_array_equal(got, array[box])
    flipped = PatchSampler(pairs, (8, 16, 16), 3, seed=2, augment="zyx").sample(with_mask=True)
    assert all(a.shape == (3, 2, 8, 16, 16) for a in flipped)
    for row, eager in zip(rows, pairs):
        lazy = load_pair_with_stats(row, config, volume_stats(row, config))
        np.testing.assert_array_equal(lazy.signal, eager.signal)
        np.testing.assert_allclose(lazy.target, eager.target, rtol=0, atol=2e-6)
        np.testing.assert_array_equal(lazy.mask, eager.mask)
    one = load_pair(ManifestRow(rows[0].signal, rows[0].target), config)
    with pytest.raises(DataError, match=r"same number of signal and target channels.*\(1, 1\), \(2, 2\)"):
        PatchSampler([one, pairs[0]], (8, 16, 16), 2)


def test_foreground_check_pools_the_target_channels(tmp_path):
    """A patch is kept when the target channels together hold the fraction: one empty channel is allowed."""
    row = write_rows(tmp_path, 1)[0]
    pair = load_pair(row, PreprocessConfig())
    pair.foreground[1] = False
    sampler = PatchSampler([pair], (8, 16, 16), 4, seed=0, min_foreground_fraction=0.2, max_retries=10_000)
    _, target = sampler.sample()
    for patch in target:
        assert np.count_nonzero(patch[0] > 0) >= 0.2 * 2 * 8 * 16 * 16


def test_fnet_with_two_channels_in_and_out_trains_on_a_batch(tmp_path):
    """End to end on a tiny forward and backward pass: [B, 2] patches -> F-net(2 -> 2) -> Spotlight loss with
    the stored masks as mask= -> gradients in every layer."""
    rows = write_rows(tmp_path, 2, masks=True)
    sampler = PatchSampler([load_pair(r, PreprocessConfig()) for r in rows], (8, 16, 16), 2, seed=1)
    signal, target, mask = (torch.from_numpy(a) for a in sampler.sample(with_mask=True))
    torch.manual_seed(0)
    model = FNet(depth=2, base_channels=4, in_channels=2, out_channels=2)
    prediction = model(signal)
    assert prediction.shape == target.shape == (2, 2, 8, 16, 16)
    loss = spotlight_ops.loss(prediction, target, 0.0, mask=mask.bool())
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())

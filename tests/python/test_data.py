"""Data pipeline: manifests, TIFF reading, preprocessing, patch sampling, and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from skimage.filters import threshold_otsu

from spotlight_ops.data import (DataError, ManifestRow, PatchSampler, PreprocessConfig, load_pairs, read_manifest,
                                read_metadata, read_volume, write_manifest, write_volume)
from spotlight_ops.data import synthetic
from spotlight_ops.data.preprocess import otsu_threshold_volume

SHAPE = (16, 40, 40)


def blobs(shape=SHAPE, seed=0) -> np.ndarray:
    """A target-like volume: a few bright cubes on a noisy background."""
    rng = np.random.default_rng(seed)
    volume = 0.1 + 0.01 * rng.standard_normal(shape)
    volume[4:10, 5:15, 5:15] += 1.0
    volume[6:12, 20:34, 22:30] += 0.7
    return volume.astype(np.float32)


def make_pair(folder, name="a", signal=None, target=None, mask=None, relative=True):
    folder.mkdir(parents=True, exist_ok=True)
    signal = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32) if signal is None else signal
    target = blobs() if target is None else target
    tifffile.imwrite(folder / f"{name}_signal.tif", signal)
    tifffile.imwrite(folder / f"{name}_target.tif", target)
    mask_path = None
    if mask is not None:
        tifffile.imwrite(folder / f"{name}_mask.tif", mask)
        mask_path = folder / f"{name}_mask.tif"
    return ManifestRow(folder / f"{name}_signal.tif", folder / f"{name}_target.tif", mask_path)


# ---------------------------------------------------------------- manifests

def test_manifest_relative_paths_resolve_against_the_csv_folder(tmp_path, monkeypatch):
    row = make_pair(tmp_path / "data" / "img")
    csv = tmp_path / "data" / "train.csv"
    csv.write_text("path_signal,path_target\nimg/a_signal.tif,img/a_target.tif\n")
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    rows = read_manifest(csv)
    assert rows == [ManifestRow(row.signal.resolve(), row.target.resolve(), None)]


def test_manifest_roundtrip_with_masks(tmp_path):
    rows = [make_pair(tmp_path / "img", "a", mask=np.ones(SHAPE, np.uint16)), make_pair(tmp_path / "img", "b")]
    csv = write_manifest(tmp_path / "m.csv", rows)
    assert csv.read_text().splitlines()[0] == "path_signal,path_target,path_mask"
    back = read_manifest(csv)
    assert back[0].mask == rows[0].mask.resolve() and back[1].mask is None


# ---------------------------------------------------------------- loading and preprocessing

def test_load_pair_standardizes_and_crops(tmp_path):
    row = make_pair(tmp_path, mask=(blobs() > 0.5).astype(np.uint16))
    pair = load_pairs([row], PreprocessConfig(crop_multiple=8))[0]
    assert pair.shape == (16, 40, 40)
    pair = load_pairs([row], PreprocessConfig(crop_multiple=16))[0]
    assert pair.shape == (16, 32, 32) and pair.mask.shape == pair.shape
    assert pair.info["crop_box"] == [(0, 16), (4, 36), (4, 36)]  # centred
    raw_signal = read_volume(row.signal)[:, 4:36, 4:36]
    expected = (raw_signal - read_volume(row.signal).mean()) / read_volume(row.signal).std()
    np.testing.assert_allclose(pair.signal, expected, atol=1e-5)
    raw_target = read_volume(row.target)
    t = threshold_otsu(raw_target, nbins=256)
    np.testing.assert_allclose(pair.target, ((raw_target - t) / raw_target.std())[:, 4:36, 4:36], atol=1e-4)
    np.testing.assert_array_equal(pair.foreground, pair.target > 0)


def test_zscore_targets_keep_the_otsu_foreground(tmp_path):
    row = make_pair(tmp_path)
    pair = load_pairs([row], PreprocessConfig(target_norm="zscore", crop_multiple=8))[0]
    assert abs(pair.target.mean()) < 1e-4 and abs(pair.target.std() - 1) < 1e-4
    assert pair.foreground.sum() == (blobs() > threshold_otsu(blobs())).sum()


def test_smoothed_threshold_option(tmp_path):
    volume = blobs()
    smooth = otsu_threshold_volume(volume, smooth=True)
    plain = otsu_threshold_volume(volume, smooth=False)
    assert smooth != plain and volume.min() < smooth < volume.max()
    row = make_pair(tmp_path, target=volume)
    pair = load_pairs([row], PreprocessConfig(smooth_threshold=True, crop_multiple=8))[0]
    np.testing.assert_allclose(pair.target, (volume - smooth) / volume.std(), atol=1e-4)


def test_resampling_to_isotropic_voxels(tmp_path):
    row = make_pair(tmp_path, mask=(blobs() > 0.5).astype(np.uint16))
    pair = load_pairs([row], PreprocessConfig(voxel_size=(0.58, 0.29, 0.29), crop_multiple=16))[0]
    assert pair.shape == (32, 32, 32)  # z doubled to 32, xy cropped from 40 to 32
    assert set(np.unique(pair.mask)) <= {0, 1}  # nearest-neighbour for labels
    with pytest.raises(ValueError, match="voxel_size"):
        PreprocessConfig(voxel_size=(1.0, 0.0, 1.0))


def test_real_fnet_sample(shared_data, tmp_path):
    """The real Allen brightfield/Hoechst pair goes through the whole pipeline."""
    folder = shared_data / "fnet_sample"
    csv = tmp_path / "real.csv"
    csv.write_text(f"path_signal,path_target\n{folder / 'light.tif'},{folder / 'nuc.tif'}\n")
    pair = load_pairs(csv)[0]
    assert pair.shape == (32, 128, 128)
    raw = tifffile.imread(folder / "nuc.tif").astype(np.float32)
    expected_fraction = np.mean(raw > threshold_otsu(raw, nbins=256))
    assert abs(pair.foreground.mean() - expected_fraction) < 0.01
    assert 0.01 < pair.foreground.mean() < 0.9
    assert abs(pair.signal.mean()) < 1e-4 and abs(pair.signal.std() - 1) < 1e-3
    sampler = PatchSampler([pair], patch_size=(32, 64, 64), batch_size=4, seed=0)
    signal, target = sampler.sample()
    assert signal.shape == target.shape == (4, 1, 32, 64, 64) and signal.dtype == np.float32
    assert all((t > 0).mean() >= 0.001 for t in target)


# ---------------------------------------------------------------- the patch sampler

@pytest.fixture
def two_pairs(tmp_path):
    other_signal = np.random.default_rng(2).standard_normal(SHAPE).astype(np.float32)
    rows = [make_pair(tmp_path, "a"), make_pair(tmp_path, "b", signal=other_signal, target=blobs(seed=3))]
    return load_pairs(rows, PreprocessConfig(crop_multiple=8))


def test_sampler_patches_have_foreground_and_come_from_both_images(two_pairs):
    sampler = PatchSampler(two_pairs, patch_size=(8, 16, 16), batch_size=64, seed=1, min_foreground_fraction=0.05)
    signal, target = sampler.sample()
    assert signal.shape == (64, 1, 8, 16, 16)
    assert all((t > 0).mean() >= 0.05 for t in target)
    sources = {next(i for i, p in enumerate(two_pairs) if np.isin(s, p.signal).all()) for s in signal[:, 0]}
    assert sources == {0, 1}


def test_sampler_state_roundtrip_continues_the_same_sequence(two_pairs):
    a = PatchSampler(two_pairs, (8, 16, 16), 4, seed=7)
    a.sample()
    state = a.state_dict()
    expected = a.sample()
    b = PatchSampler(two_pairs, (8, 16, 16), 4, seed=999)
    b.load_state_dict(state)
    got = b.sample()
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    c = PatchSampler(two_pairs, (8, 16, 16), 4, seed=7, rank=1)
    c.sample()
    assert not np.array_equal(c.sample()[0], expected[0])  # ranks draw different streams


def test_sampler_names_the_file_without_enough_foreground(tmp_path):
    target = np.zeros(SHAPE, np.float32)
    target[:2, :2, :2] = 1.0  # a corner: enough for the volume check, not for most patches
    row = make_pair(tmp_path, target=target)
    pairs = load_pairs([row], PreprocessConfig(crop_multiple=1, min_foreground_fraction=0.0001))
    sampler = PatchSampler(pairs, (8, 16, 16), 2, min_foreground_fraction=0.5, max_retries=20)
    with pytest.raises(DataError, match="a_target.tif.*no \\(8, 16, 16\\) patch"):
        sampler.sample()


def test_too_small_volume_for_the_patch(tmp_path):
    pairs = load_pairs([make_pair(tmp_path)], PreprocessConfig(crop_multiple=8))
    with pytest.raises(DataError, match="a_signal.tif.*smaller than the patch"):
        PatchSampler(pairs, (32, 64, 64), 2)


# ---------------------------------------------------------------- bad inputs, fuzz-style

def _truncations(tmp_path):
    """A valid TIFF cut at several lengths, each a separate bad file."""
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, blobs(), compression="zlib")
    raw = good.read_bytes()
    cases = []
    for fraction in (0.0, 0.001, 0.02, 0.3, 0.5, 0.9, 0.99):
        path = tmp_path / f"cut_{fraction}.tif"
        path.write_bytes(raw[: int(len(raw) * fraction)])
        cases.append(path)
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    flipped = bytearray(raw)
    flipped[4:8] = b"\xff\xff\xff\x7f"  # first-IFD offset beyond the end of the file
    (tmp_path / "bad_ifd.tif").write_bytes(bytes(flipped))
    return cases + [garbage, tmp_path / "bad_ifd.tif"]


def test_fuzz_truncated_and_corrupt_tiffs_name_the_file(tmp_path):
    for path in _truncations(tmp_path):
        with pytest.raises(DataError) as info:
            read_volume(path, "target")
        assert str(path) in str(info.value), str(info.value)
        assert info.value.path == path


@pytest.mark.parametrize("array,problem", [
    (np.zeros((40, 40), np.float32), "3D"),
    (np.zeros((2, 3, 8, 8), np.float32), "3D"),
    (np.zeros((1, 8, 1, 8, 8), np.float32), None),  # singleton axes are fine
    (np.full((4, 8, 8), np.nan, np.float32), "non-finite"),
    (np.where(np.arange(256).reshape(4, 8, 8) == 3, np.inf, 0).astype(np.float32), "1 non-finite"),
])
def test_bad_arrays(tmp_path, array, problem):
    path = tmp_path / "v.tif"
    tifffile.imwrite(path, array, photometric="minisblack")
    if problem is None:
        assert read_volume(path).shape == (8, 8, 8)
        return
    with pytest.raises(DataError, match=problem) as info:
        read_volume(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text,problem", [
    ("", "empty"),
    ("path_signal,path_target\n", "no rows"),
    ("signal,target\na.tif,b.tif\n", "lacks column"),
    ("path_signal,path_target\n,b.tif\n", "line 2: empty path_signal"),
])
def test_bad_manifests(tmp_path, text, problem):
    csv = tmp_path / "m.csv"
    csv.write_text(text)
    with pytest.raises(DataError, match=problem) as info:
        read_manifest(csv, check_files=False)
    assert str(csv) in str(info.value)


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match="manifest CSV not found"):
        read_manifest(tmp_path / "none.csv")
    row = make_pair(tmp_path)
    csv = tmp_path / "m.csv"
    csv.write_text(f"path_signal,path_target\n{row.signal},missing_target.tif\n")
    with pytest.raises(DataError, match="missing_target.tif: file not found .path_target on line 2"):
        read_manifest(csv)
    with pytest.raises(DataError, match="signal file not found"):
        read_volume(tmp_path / "nope.tif", "signal")


def test_pair_problems_name_the_file(tmp_path):
    row = make_pair(tmp_path, "shape", target=blobs(shape=(16, 40, 32)))
    with pytest.raises(DataError, match="shape_target.tif: target shape .* differs from signal shape"):
        load_pairs([row])
    row = make_pair(tmp_path, "mask", mask=np.zeros((16, 40, 8), np.uint16))
    with pytest.raises(DataError, match="mask_mask.tif: mask shape"):
        load_pairs([row])
    row = make_pair(tmp_path, "flat", target=np.ones(SHAPE, np.float32))
    with pytest.raises(DataError, match="flat_target.tif: too little foreground"):
        load_pairs([row])
    nan_signal = np.zeros(SHAPE, np.float32)
    nan_signal[3, 3, 3] = np.nan
    row = make_pair(tmp_path, "nan", signal=nan_signal)
    with pytest.raises(DataError, match="nan_signal.tif: signal holds 1 non-finite"):
        load_pairs([row])


def test_metadata_roundtrip(tmp_path):
    path = write_volume(tmp_path / "v.tif", blobs(), voxel_size=(0.5, 0.25, 0.25))
    meta = read_metadata(path)
    assert meta.voxel_size == pytest.approx((0.5, 0.25, 0.25)) and meta.unit == "um"
    ome = tmp_path / "o.ome.tif"
    tifffile.imwrite(ome, blobs(), ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.3,
                                                       "PhysicalSizeZ": 0.9})
    assert read_metadata(ome).voxel_size == pytest.approx((0.9, 0.3, 0.3))
    assert read_volume(ome).shape == SHAPE


def test_synthetic_dataset_through_the_pipeline(tmp_path):
    result = synthetic.write_dataset(tmp_path, n_train=2, n_test=0, config=synthetic.SceneConfig(shape=(16, 48, 48)))
    pairs = load_pairs(result["train"])
    assert [p.shape for p in pairs] == [(16, 48, 48)] * 2
    overlap = [np.mean(p.foreground[p.mask > 0]) for p in pairs]
    assert min(overlap) > 0.5  # the Otsu foreground covers the nuclei

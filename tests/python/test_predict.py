"""Tiled whole-volume prediction: blending, equality with untiled prediction, files and metadata."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile
import torch

from spotlight_ops.cli import main
from spotlight_ops.data import PreprocessConfig, read_metadata, read_volume, write_volume
from spotlight_ops.models import FNet
from spotlight_ops.predict import blend_window, load_model, predict_file, predict_volume, tile_starts, tta_flips


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small convolutions run faster on one thread, above all on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> FNet:
    """A depth-2 F-net with non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    net = FNet(depth=2, base_channels=4)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(2, 1, 16, 32, 32))
    return net.eval()


def smooth_volume(shape, seed=0) -> np.ndarray:
    x = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 2.0)
    return ((x - x.mean()) / x.std()).astype(np.float32)


def untiled(model: FNet, volume: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(volume)[None, None])[0, 0].numpy()


def test_blend_window_and_tile_starts():
    w = blend_window(32, 8)
    assert np.all(w > 0) and np.allclose(w, w[::-1]) and np.all(w[8:24] == 1)
    assert np.all(np.diff(w[:8]) > 0)
    border = blend_window(32, 8, ramp_start=False)
    assert np.all(border[:24] == 1) and np.array_equal(border[24:], w[24:])
    assert tile_starts(64, 64, 16) == [0]
    assert tile_starts(100, 32, 8) == [0, 24, 48, 68]
    for size, tile, overlap in [(100, 32, 8), (33, 32, 0), (200, 48, 16)]:
        starts = tile_starts(size, tile, overlap)
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s:s + tile] = True
        assert covered.all() and starts[-1] + tile == size
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_one_tile_is_exactly_the_untiled_prediction(model):
    volume = smooth_volume((16, 32, 48))
    np.testing.assert_array_equal(predict_volume(model, volume, tile_size=(64, 64, 64)), untiled(model, volume))


def test_tiled_prediction_matches_untiled_within_tolerance(model):
    volume = smooth_volume((32, 64, 64))
    reference = untiled(model, volume)
    scale = reference.std()
    blended = predict_volume(model, volume, tile_size=(32, 32, 32), overlap=(8, 16, 16))
    seams = predict_volume(model, volume, tile_size=(32, 32, 32), overlap=(0, 0, 0))
    blended_error = np.abs(blended - reference).mean()
    assert blended_error < 0.1 * scale
    assert np.abs(blended - reference).max() < 1.0 * scale
    assert blended_error < 0.5 * np.abs(seams - reference).mean()  # blending beats hard seams


def test_any_volume_size_fits(model):
    volume = smooth_volume((13, 50, 37))  # no axis a multiple of 4, one smaller than a tile
    out = predict_volume(model, volume, tile_size=(16, 32, 32), overlap=(4, 8, 8))
    assert out.shape == volume.shape and out.dtype == np.float32 and np.isfinite(out).all()
    with pytest.raises(ValueError, match="at least 4"):
        predict_volume(model, volume, tile_size=(2, 32, 32))
    with pytest.raises(ValueError, match="3D"):
        predict_volume(model, volume[0])


def save_model(path, model, preprocess=PreprocessConfig()):
    import dataclasses

    from spotlight_ops.models import model_file
    return model_file.write_model_file(path, model_file.model_payload(model, dataclasses.asdict(preprocess), {}, 0))


def test_predict_file_keeps_shape_and_voxel_size(model, tmp_path):
    signal = smooth_volume((20, 44, 40))
    source = write_volume(tmp_path / "in.tif", signal, voxel_size=(0.9, 0.3, 0.3))
    path = save_model(tmp_path / "model.pt", model)
    loaded, preprocess = load_model(path)
    out = predict_file(loaded, preprocess, source, tmp_path / "out.tif", tile_size=(16, 32, 32), overlap=(4, 8, 8))
    prediction = read_volume(out)
    assert prediction.shape == signal.shape
    assert read_metadata(out).voxel_size == pytest.approx((0.9, 0.3, 0.3))
    standardized = (signal - signal.mean()) / signal.std()
    np.testing.assert_allclose(prediction, predict_volume(model, standardized, (16, 32, 32), (4, 8, 8)), atol=1e-5)


def test_resampled_model_predicts_on_the_input_grid(model, tmp_path):
    source = write_volume(tmp_path / "in.tif", smooth_volume((10, 32, 32)), voxel_size=(0.6, 0.3, 0.3))
    path = save_model(tmp_path / "model.pt", model, PreprocessConfig(voxel_size=(0.6, 0.3, 0.3)))
    loaded, preprocess = load_model(path)
    out = predict_file(loaded, preprocess, source, tmp_path / "out.tif", tile_size=(32, 32, 32))
    assert read_volume(out).shape == (10, 32, 32)


def test_cli_predict(model, tmp_path, capsys):
    save_model(tmp_path / "model.pt", model)
    a = write_volume(tmp_path / "a.tif", smooth_volume((16, 32, 32)))
    tifffile.imwrite(tmp_path / "b.ome.tif", smooth_volume((16, 32, 32), 1), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 0.5})
    code = main(["predict", "--model", str(tmp_path / "model.pt"), str(a), str(tmp_path / "b.ome.tif"),
                 "--out", str(tmp_path / "pred"), "--tile", "16", "32", "32", "--device", "cpu", "--no-progress"])
    assert code == 0
    assert read_volume(tmp_path / "pred" / "a_prediction.tif").shape == (16, 32, 32)
    ome_out = tmp_path / "pred" / "b_prediction.ome.tif"  # OME-TIFF in, OME-TIFF out
    with tifffile.TiffFile(ome_out) as tif:
        assert tif.is_ome
    assert read_metadata(ome_out).voxel_size == pytest.approx((0.5, 0.2, 0.2))
    code = main(["predict", "--model", str(tmp_path / "missing"), str(a), "--out", str(tmp_path / "p2")])
    assert code == 2 and "missing" in capsys.readouterr().err
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage")
    code = main(["predict", "--model", str(tmp_path / "model.pt"), str(bad), "--out", str(tmp_path / "p3"),
                 "--no-progress"])
    assert code == 2 and "bad.tif" in capsys.readouterr().err


def flip_average(model: FNet, volume: np.ndarray, flips) -> np.ndarray:
    """The TTA prediction by hand: flip the input, predict, flip back, average."""
    outputs = [np.flip(untiled(model, np.ascontiguousarray(np.flip(volume, f) if f else volume)), f) if f
               else untiled(model, volume) for f in flips]
    return np.mean(np.stack(outputs), axis=0)


@pytest.mark.parametrize("tta,count", [("yx", 4), ("zyx", 8)])
def test_tta_is_the_average_of_flipped_predictions(model, tta, count):
    flips = tta_flips(tta)
    assert len(set(flips)) == count and flips[0] == ()
    volume = smooth_volume((16, 32, 32))
    got = predict_volume(model, volume, tile_size=(16, 32, 32), tta=tta)
    np.testing.assert_allclose(got, flip_average(model, volume, flips), rtol=0, atol=2e-6)
    assert np.abs(got - untiled(model, volume)).max() > 1e-3  # F-net is not flip-equivariant: TTA changes it


def test_tta_of_an_equivariant_model_changes_nothing():
    """A 1x1x1 convolution commutes with every flip: TTA must return its plain prediction."""
    net = FNet(depth=0, base_channels=2).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.Conv3d) and module.kernel_size != (1, 1, 1):
            with torch.no_grad():  # keep only the centre tap: a pointwise, flip-equivariant network
                centre = module.weight[..., 1, 1, 1].clone()
                module.weight.zero_()
                module.weight[..., 1, 1, 1] = centre
    volume = smooth_volume((16, 24, 40))
    plain = predict_volume(net, volume, tile_size=(16, 32, 32), overlap=(0, 8, 8))
    np.testing.assert_allclose(predict_volume(net, volume, tile_size=(16, 32, 32), overlap=(0, 8, 8), tta="zyx"),
                               plain, rtol=0, atol=1e-6)


@pytest.mark.parametrize("tta", [None, "yx"])
def test_batched_tiles_give_the_same_prediction(model, tta):
    volume = smooth_volume((20, 50, 44))
    single = predict_volume(model, volume, tile_size=(16, 32, 32), overlap=(4, 8, 8), tta=tta)
    for batch in (3, 100):
        batched = predict_volume(model, volume, tile_size=(16, 32, 32), overlap=(4, 8, 8), tta=tta,
                                 batch_tiles=batch)
        np.testing.assert_allclose(batched, single, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="batch_tiles"):
        predict_volume(model, volume, batch_tiles=0)
    with pytest.raises(ValueError, match="tta"):
        predict_volume(model, volume, tta="xy")


def test_cli_predict_zarr_in_zarr_out_with_tta(model, tmp_path):
    pytest.importorskip("ome_zarr")
    save_model(tmp_path / "model.pt", model)
    source = write_volume(tmp_path / "c.ome.zarr", smooth_volume((16, 32, 32)), voxel_size=(0.5, 0.2, 0.2))
    code = main(["predict", "--model", str(tmp_path / "model.pt"), str(source), "--out", str(tmp_path / "pred"),
                 "--tile", "16", "32", "32", "--device", "cpu", "--no-progress", "--tta", "--batch-tiles", "2"])
    assert code == 0
    out = tmp_path / "pred" / "c_prediction.ome.zarr"
    assert out.is_dir() and read_metadata(out).voxel_size == pytest.approx((0.5, 0.2, 0.2))
    signal = read_volume(source)
    expected = flip_average(model, (signal - signal.mean()) / signal.std(), tta_flips("yx"))
    np.testing.assert_allclose(read_volume(out), expected, rtol=0, atol=1e-5)


def test_inference_does_not_import_training(model, tmp_path):
    """``spotlight predict`` and the library's load_model + predict_volume (the demo's prediction
    path) run without importing the trainer (spotlight_ops.training)."""
    import subprocess
    import sys

    from _training_helpers import subprocess_env

    save_model(tmp_path / "model.pt", model)
    source = write_volume(tmp_path / "a.tif", smooth_volume((16, 32, 32)))
    code = (
        "import sys\n"
        "from spotlight_cli import main\n"
        f"assert main(['predict', '--model', {str(tmp_path / 'model.pt')!r}, {str(source)!r}, '--out', "
        f"{str(tmp_path / 'pred')!r}, '--tile', '16', '32', '32', '--device', 'cpu', '--no-progress']) == 0\n"
        "import numpy as np\n"
        "from spotlight_ops.devices import resolve_device\n"
        "from spotlight_ops.predict import load_model, predict_volume\n"
        f"net, _ = load_model({str(tmp_path)!r} + '/model.pt', resolve_device('auto'))\n"
        "predict_volume(net, np.zeros((16, 32, 32), np.float32), tile_size=(16, 32, 32), overlap=(4, 8, 8))\n"
        "print('TRAINING', sorted(m for m in sys.modules if m.startswith('spotlight_ops.training')))\n")
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "TRAINING []" in done.stdout, done.stdout
    assert read_volume(tmp_path / "pred" / "a_prediction.tif").shape == (16, 32, 32)

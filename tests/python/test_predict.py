"""Tiled whole-volume prediction: blending, equality with untiled prediction, files and metadata."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile
import torch
from predict_helpers import one_thread  # noqa: F401  (autouse: one torch thread)

from spotlight_ops.cli import main
from spotlight_ops.data import PreprocessConfig, read_metadata, read_volume, write_volume
from spotlight_ops.models import FNet
from spotlight_ops import tta as T
from spotlight_ops.data.augment import Transform
from spotlight_ops.predict import blend_window, load_model, predict_file, predict_volume, tile_starts




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


def numpy_symmetry(volume: np.ndarray, turns: int, flip_y: bool, flip_z: bool) -> np.ndarray:
    """A symmetry written with numpy alone: ``turns`` quarter turns in YX, then the flips."""
    out = np.rot90(volume, turns, axes=(-2, -1))
    out = np.flip(out, -2) if flip_y else out
    return np.ascontiguousarray(np.flip(out, -3) if flip_z else out)


def numpy_inverse(volume: np.ndarray, turns: int, flip_y: bool, flip_z: bool) -> np.ndarray:
    out = np.flip(volume, -3) if flip_z else volume
    out = np.flip(out, -2) if flip_y else out
    return np.ascontiguousarray(np.rot90(out, -turns, axes=(-2, -1)))


def explicit_average(model: FNet, volume: np.ndarray, z_flips: bool) -> np.ndarray:
    """The TTA prediction by hand: every element of D4 (x Z2), predict, map back, average."""
    outputs = [numpy_inverse(untiled(model, numpy_symmetry(volume, k, fy, fz)), k, fy, fz)
               for k in range(4) for fy in (False, True) for fz in ((False, True) if z_flips else (False,))]
    return np.mean(np.stack(outputs), axis=0)


@pytest.mark.parametrize("mode,order", [("yx", 8), ("zyx", 16)])
def test_tta_symmetries_are_the_group_and_invert_exactly(mode, order):
    group = T.symmetries(mode)
    assert group[0] == Transform() and len(set(group)) == order
    x = torch.randn(2, 1, 3, 4, 5, dtype=torch.float64)  # Y != X: odd turns change the shape
    images = []
    for t in group:
        moved = T.apply(x, t)
        assert torch.equal(T.invert(moved, t), x)  # exact: a permutation of the voxels
        want = numpy_symmetry(x.numpy(), t.rotations, t.flip_y, t.flip_z)
        assert np.array_equal(moved.numpy(), want)
        assert np.array_equal(T.invert(torch.from_numpy(want), t).numpy(),
                              numpy_inverse(want, t.rotations, t.flip_y, t.flip_z))
        images.append(moved)
    cube = torch.randn(1, 1, 3, 4, 4, dtype=torch.float64)
    distinct = {T.apply(cube, t).numpy().tobytes() for t in group}
    assert len(distinct) == order  # every element acts differently
    closed = {T.apply(T.apply(cube, a), b).numpy().tobytes() for a in group for b in group}
    assert closed == distinct  # a group: the composition of two elements is an element
    assert T.symmetries(None) == T.symmetries("none") == [Transform()]
    with pytest.raises(ValueError, match="tta"):
        T.symmetries("xy")


@pytest.mark.parametrize("mode", ["yx", "zyx"])
@pytest.mark.parametrize("shape", [(16, 32, 32), (16, 32, 48)])
def test_tta_is_the_explicit_average(model, mode, shape):
    volume = smooth_volume(shape)
    got = predict_volume(model, volume, tile_size=shape, tta=mode)
    np.testing.assert_allclose(got, explicit_average(model, volume, mode == "zyx"), rtol=0, atol=2e-6)
    assert np.abs(got - untiled(model, volume)).max() > 1e-3  # F-net is not equivariant: TTA changes it
    flips_only = np.mean([np.flip(untiled(model, np.ascontiguousarray(np.flip(volume, a))), a) if a else
                          untiled(model, volume) for a in [(), (1,), (2,), (1, 2)]], axis=0)
    assert np.abs(got - flips_only).max() > 1e-4  # the rotations take part


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


def test_any_module_predicts_with_its_size_multiple(model):
    """predict_volume takes any nn.Module: F-net states its size multiple, others are given it."""
    torch.manual_seed(1)
    conv = torch.nn.Conv3d(1, 1, 3, padding=1).eval()
    volume = smooth_volume((13, 30, 27))
    with pytest.raises(ValueError, match="size_multiple: cannot infer it for a Conv3d"):
        predict_volume(conv, volume)
    with pytest.raises(ValueError, match="size_multiple must be a positive integer"):
        predict_volume(conv, volume, size_multiple=0)
    got = predict_volume(conv, volume, tile_size=(16, 32, 32), size_multiple=1)
    np.testing.assert_array_equal(got, untiled(conv, volume))  # one tile: the untiled prediction
    traced = torch.jit.trace(model, torch.zeros(1, 1, 16, 32, 32))
    with pytest.raises(ValueError, match="size_multiple"):
        predict_volume(traced, volume)
    np.testing.assert_allclose(predict_volume(traced, volume, tile_size=(16, 32, 32), size_multiple=4, tta="yx"),
                               predict_volume(model, volume, tile_size=(16, 32, 32), tta="yx"), rtol=0, atol=1e-6)
    relu = torch.nn.ReLU()  # no parameters: runs on the CPU
    np.testing.assert_array_equal(predict_volume(relu, volume, tile_size=(16, 32, 32), size_multiple=1),
                                  np.maximum(volume, 0))


@pytest.mark.parametrize("tta,tile", [(None, (16, 32, 32)), ("yx", (16, 32, 32)), ("zyx", (16, 32, 16))])
def test_batched_tiles_give_the_same_prediction(model, tta, tile):
    volume = smooth_volume((20, 50, 44))
    single = predict_volume(model, volume, tile_size=tile, overlap=(4, 8, 8), tta=tta)
    for batch in (3, 100):
        batched = predict_volume(model, volume, tile_size=tile, overlap=(4, 8, 8), tta=tta,
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
                 "--tile", "16", "32", "32", "--device", "cpu", "--no-progress", "--tta", "yx", "--batch-tiles", "2"])
    assert code == 0
    out = tmp_path / "pred" / "c_prediction.ome.zarr"
    assert out.is_dir() and read_metadata(out).voxel_size == pytest.approx((0.5, 0.2, 0.2))
    signal = read_volume(source)
    expected = explicit_average(model, (signal - signal.mean()) / signal.std(), z_flips=False)
    np.testing.assert_allclose(read_volume(out), expected, rtol=0, atol=1e-5)


def test_tta_takes_a_value_and_cannot_swallow_a_path(model, tmp_path, capsys):
    save_model(tmp_path / "model.pt", model)
    a = write_volume(tmp_path / "a.tif", smooth_volume((16, 32, 32)))
    with pytest.raises(SystemExit) as info:
        main(["predict", "--model", str(tmp_path / "model.pt"), "--tta", str(a), "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "--tta" in err[0] and "invalid choice" in err[0], err
    assert not (tmp_path / "p").exists()


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

"""``spotlight predict`` over plates, OME-Zarr images, several channels and colliding names; ``spotlight
evaluate`` reads what it writes in every format."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import tifffile
import torch
from plate_helpers import target_like, write_iohub_plate
from predict_helpers import one_thread  # noqa: F401  (autouse: one torch thread)

pytest.importorskip("ome_zarr")

from spotlight_ops.cli import main  # noqa: E402
from spotlight_ops.data import PreprocessConfig, open_plate, read_volume, write_volume  # noqa: E402
from spotlight_ops.data.preprocess import standardize  # noqa: E402
from spotlight_ops.data.zarr_io import open_image  # noqa: E402
from spotlight_ops.models import FNet, model_file  # noqa: E402
from spotlight_ops.predict import predict_volume  # noqa: E402

TILE = ["--tile", "8", "16", "16", "--overlap", "2", "4", "4", "--device", "cpu", "--no-progress"]
SHAPE = (12, 24, 20)




def save_model(path, in_channels=1, out_channels=1, channels=None):
    torch.manual_seed(in_channels * 10 + out_channels)
    net = FNet(depth=1, base_channels=4, in_channels=in_channels, out_channels=out_channels).eval()
    payload = model_file.model_payload(net, dataclasses.asdict(PreprocessConfig()), {}, 0)
    if channels is not None:
        payload["channels"] = channels
    model_file.write_model_file(path, payload)
    return path, net


def expected(net, *volumes):
    signal = np.stack([standardize(v) for v in volumes])
    return predict_volume(net, signal, (8, 16, 16), (2, 4, 4))


def plate(tmp_path, name="plate.zarr"):
    fields = {f: np.stack([5.0 + target_like(i, SHAPE), target_like(10 + i, SHAPE)])
              for i, f in enumerate(("B/03/0", "B/03/1"))}
    return write_iohub_plate(tmp_path / name, fields, ["Phase", "Nuclei"]), fields


def test_same_named_inputs_give_two_outputs_or_a_refusal(tmp_path, capsys):
    model, net = save_model(tmp_path / "m.pt")
    a = write_volume(tmp_path / "w1" / "light.tif", target_like(1, SHAPE))
    b = write_volume(tmp_path / "w2" / "light.tif", target_like(2, SHAPE))
    assert main(["predict", "--model", str(model), str(a), str(b), "--out", str(tmp_path / "p"), *TILE]) == 0
    for path, source in ((tmp_path / "p" / "w1_light_prediction.tif", a), (tmp_path / "p" / "w2_light_prediction.tif", b)):
        np.testing.assert_allclose(read_volume(path), expected(net, read_volume(source))[0], rtol=0, atol=1e-5)
    c = write_volume(tmp_path / "x" / "a.tif", target_like(3, SHAPE))
    d = write_volume(tmp_path / "x" / "a.tiff", target_like(4, SHAPE))
    capsys.readouterr()
    assert main(["predict", "--model", str(model), str(c), str(d), "--out", str(tmp_path / "q"), *TILE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a.tif" in err[0] and "a.tiff" in err[0], err
    assert not (tmp_path / "q").exists()
    # an existing output is refused, then replaced with --overwrite
    assert main(["predict", "--model", str(model), str(a), "--out", str(tmp_path / "r"), *TILE]) == 0
    assert main(["predict", "--model", str(model), str(a), "--out", str(tmp_path / "r"), *TILE]) == 2
    assert "light_prediction.tif: exists" in capsys.readouterr().err
    assert main(["predict", "--model", str(model), str(a), "--out", str(tmp_path / "r"), "--overwrite", *TILE]) == 0


def test_plate_into_a_new_plate_of_the_same_layout(tmp_path, capsys):
    source, fields = plate(tmp_path)
    model, net = save_model(tmp_path / "m.pt", channels={"signal": ["Phase"], "target": ["Nuclei"]})
    assert main(["predict", "--model", str(model), str(source), "--out", str(tmp_path / "p"), *TILE]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    out = tmp_path / "p" / "plate_prediction.ome.zarr"
    assert len(lines) == 2 and all("new plate store" in line and "Nuclei_prediction" in line for line in lines)
    made = open_plate(out)
    assert made.fields == ("B/03/0", "B/03/1") and made.version == "0.4" and made.channel_names() == ["Nuclei_prediction"]
    for field, volume in fields.items():
        image = open_image(out / field)
        assert image.axes == "tczyx" and image.voxel_size == (0.5, 0.25, 0.25)
        got = read_volume(out / field, channel="Nuclei_prediction")
        np.testing.assert_allclose(got, expected(net, volume[0])[0], rtol=0, atol=1e-5)
    # one field only
    assert main(["predict", "--model", str(model), str(source), "--fields", "B/03/1", "--out", str(tmp_path / "f"),
                 *TILE]) == 0
    assert open_plate(tmp_path / "f" / "plate_prediction.ome.zarr").fields == ("B/03/1",)
    # a field of view named directly goes to the same field of a new plate
    assert main(["predict", "--model", str(model), str(source / "B/03/0"), "--out", str(tmp_path / "g"), *TILE]) == 0
    assert open_plate(tmp_path / "g" / "plate_prediction.ome.zarr").fields == ("B/03/0",)


def test_plate_into_the_input_refuses_to_replace_without_overwrite(tmp_path, capsys):
    source, fields = plate(tmp_path)
    model, net = save_model(tmp_path / "m.pt", channels={"signal": ["Phase"], "target": ["Nuclei"]})
    args = ["predict", "--model", str(model), str(source), "--into-input", "--out", str(tmp_path / "p"), *TILE]
    assert main(args) == 0
    assert "added in the input plate" in capsys.readouterr().out
    assert open_plate(source).channel_names() == ["Phase", "Nuclei", "Nuclei_prediction"]
    for field, volume in fields.items():
        np.testing.assert_allclose(read_volume(source / field, channel="Nuclei_prediction"),
                                   expected(net, volume[0])[0], rtol=0, atol=1e-5)
        np.testing.assert_array_equal(read_volume(source / field, channel="Nuclei"), volume[1])
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Nuclei_prediction" in err[0] and "--overwrite" in err[0]
    assert main(args + ["--overwrite"]) == 0
    assert open_plate(source).channel_names() == ["Phase", "Nuclei", "Nuclei_prediction"]


def test_channels_chosen_by_name_and_multi_channel_models(tmp_path, capsys):
    source, fields = plate(tmp_path)
    model, net = save_model(tmp_path / "m.pt")  # no channel names recorded
    assert main(["predict", "--model", str(model), str(source), "--out", str(tmp_path / "p"), *TILE]) == 2
    err = capsys.readouterr().err
    assert "--channels" in err and "Phase" in err
    assert main(["predict", "--model", str(model), str(source), "--channels", "Nuclei", "--out", str(tmp_path / "p"),
                 *TILE]) == 0
    out = tmp_path / "p" / "plate_prediction.ome.zarr"
    assert open_plate(out).channel_names() == ["prediction"]
    np.testing.assert_allclose(read_volume(out / "B/03/1"), expected(net, fields["B/03/1"][1])[0], rtol=0, atol=1e-5)
    model2, net2 = save_model(tmp_path / "m2.pt", in_channels=2, out_channels=2)
    assert main(["predict", "--model", str(model2), str(source), "--channels", "Phase", "--out", str(tmp_path / "q"),
                 *TILE]) == 2
    assert "2 signal channel" in capsys.readouterr().err
    assert main(["predict", "--model", str(model2), str(source), "--channels", "Nuclei", "Phase", "--out",
                 str(tmp_path / "q"), *TILE]) == 0
    out = tmp_path / "q" / "plate_prediction.ome.zarr"
    assert open_plate(out).channel_names() == ["prediction_1", "prediction_2"]
    want = expected(net2, fields["B/03/0"][1], fields["B/03/0"][0])
    for k in range(2):
        np.testing.assert_allclose(read_volume(out / "B/03/0", channel=f"prediction_{k + 1}"), want[k], rtol=0,
                                   atol=1e-5)
    write_volume(tmp_path / "phase.ome.zarr", fields["B/03/0"][0])
    manifest = tmp_path / "m.csv"  # a manifest row: a field's channel and a standalone image
    with open(manifest, "w", newline="") as handle:
        csv.writer(handle).writerows([["path_signal", "channel_signal", "path_signal_2", "path_target"],
                                      ["plate.zarr/B/03/0", "Nuclei", "phase.ome.zarr", "plate.zarr/B/03/0#Nuclei"]])
    assert main(["predict", "--model", str(model2), "--csv", str(manifest), "--out", str(tmp_path / "r"), *TILE]) == 0
    out = tmp_path / "r" / "plate_prediction.ome.zarr"
    assert open_plate(out).fields == ("B/03/0",)
    np.testing.assert_allclose(read_volume(out / "B/03/0", channel="prediction_2"), want[1], rtol=0, atol=1e-5)


def test_multi_channel_tiff_manifest(tmp_path):
    model, net = save_model(tmp_path / "m.pt", in_channels=2, out_channels=2)
    a, b = target_like(1, SHAPE), 3.0 * target_like(2, SHAPE)
    write_volume(tmp_path / "s1.tif", a)
    write_volume(tmp_path / "s2.tif", b)
    write_volume(tmp_path / "t.tif", a)
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="") as handle:
        csv.writer(handle).writerows([["path_signal", "path_signal_2", "path_target", "path_target_2"],
                                      ["s1.tif", "s2.tif", "t.tif", "t.tif"]])
    assert main(["predict", "--model", str(model), "--csv", str(manifest), "--out", str(tmp_path / "p"), *TILE]) == 0
    want = expected(net, a, b)
    for k in range(2):
        np.testing.assert_allclose(read_volume(tmp_path / "p" / f"s1_prediction_{k + 1}.tif"), want[k], rtol=0,
                                   atol=1e-5)
    for extra in ([], ["--channels", "a", "b"], ["--into-input"]):  # one TIFF is one channel; neither flag fits TIFF
        assert main(["predict", "--model", str(model), str(tmp_path / "s1.tif"), "--out", str(tmp_path / "q"),
                     *extra, *TILE]) == 2
    assert not (tmp_path / "q").exists()


def test_ome_zarr_image_new_store_and_into_input(tmp_path, capsys):
    model, net = save_model(tmp_path / "m.pt", channels={"signal": ["Phase"], "target": ["Nuclei"]})
    volume = 5.0 + target_like(7, SHAPE)
    image = write_volume(tmp_path / "c.ome.zarr", volume, voxel_size=(0.5, 0.2, 0.2))
    assert main(["predict", "--model", str(model), str(image), "--out", str(tmp_path / "p"), *TILE]) == 0
    assert "new image store" in capsys.readouterr().out
    out = tmp_path / "p" / "c_prediction.ome.zarr"
    assert open_image(out).channel_names == ["Nuclei_prediction"] and open_image(out).voxel_size == (0.5, 0.2, 0.2)
    np.testing.assert_allclose(read_volume(out), expected(net, volume)[0], rtol=0, atol=1e-5)
    # an image without a channel axis cannot take a channel: a clear refusal
    assert main(["predict", "--model", str(model), str(image), "--into-input", "--out", str(tmp_path / "q"), *TILE]) == 2
    assert "no channel axis" in capsys.readouterr().err
    # an image with channels (a predicted one) takes the prediction as a new channel
    assert main(["predict", "--model", str(model), f"{out}#Nuclei_prediction", "--into-input", "--out",
                 str(tmp_path / "q"), *TILE]) == 2  # its name is taken by the input channel
    assert "Nuclei_prediction" in capsys.readouterr().err
    plain, plain_net = save_model(tmp_path / "plain.pt")  # no names recorded: the channel is "prediction"
    assert main(["predict", "--model", str(plain), f"{out}#Nuclei_prediction", "--into-input", "--out",
                 str(tmp_path / "q"), *TILE]) == 0
    assert open_image(out).channel_names == ["Nuclei_prediction", "prediction"]
    np.testing.assert_allclose(read_volume(out, channel="prediction"),
                               expected(plain_net, read_volume(out, channel="Nuclei_prediction"))[0], rtol=0, atol=1e-5)
    assert not (tmp_path / "q").exists()


def test_evaluate_reads_what_predict_writes_in_every_format(tmp_path):
    from spotlight_ops.evaluation import cli

    fast = ["--prediction-units", "standardized", "--sweep-fractions", "none", "--no-plots", "--no-morphology", "--no-progress", "--no-tune-segmentation"]
    source, fields = plate(tmp_path)
    model, _ = save_model(tmp_path / "m.pt", channels={"signal": ["Phase"], "target": ["Nuclei"]})
    signal, target = fields["B/03/0"]
    tiff = write_volume(tmp_path / "s.tif", signal)
    ome = tmp_path / "o.ome.tif"
    tifffile.imwrite(ome, signal, ome=True, metadata={"axes": "ZYX"})
    image = write_volume(tmp_path / "i.ome.zarr", signal)
    write_volume(tmp_path / "target.tif", target)
    out = tmp_path / "p"
    assert main(["predict", "--model", str(model), str(tiff), str(ome), str(image), str(source), "--out", str(out),
                 *TILE]) == 0
    for prediction in ("s_prediction.tif", "o_prediction.ome.tif", "i_prediction.ome.zarr"):
        assert cli.main(["--target", str(tmp_path / "target.tif"), "--pred", f"m={out / prediction}",
                         "--out", str(tmp_path / "r" / prediction), *fast]) == 0, prediction
        assert (tmp_path / "r" / prediction).is_dir()
    assert cli.main(["--target", f"{source}#Nuclei", "--pred", f"m={out / 'plate_prediction.ome.zarr'}",
                     "--out", str(tmp_path / "r" / "plate"), *fast]) == 0

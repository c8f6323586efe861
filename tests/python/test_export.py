"""spotlight export on the real pair (fnet_sample): a tiny trained F-net exported to TorchScript, ONNX and a
bioimage.io package, each predicting the volumes `spotlight predict` predicts; bioimageio.core's test passes
without the network. Skips without the real data or the [export] packages."""

from __future__ import annotations

import socket
import sys
import zipfile

import numpy as np
import pytest
import torch
import yaml

from spotlight_ops.cli import main
from spotlight_ops.data import prepare_signal, read_volume
from spotlight_ops.export import TOLERANCE, ExportError, OnnxModule, export_model, load_torchscript
from spotlight_ops.export.check import check_agreement, relative_error
from spotlight_ops.models import model_file
from spotlight_ops.optional import MissingDependency
from spotlight_ops.predict import load_model, predict_volume

from conftest import shared_data_dir

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("bioimageio.core")

PAIR = shared_data_dir() / "fnet_sample" if shared_data_dir() is not None else None
needs_pair = pytest.mark.skipif(PAIR is None or not PAIR.is_dir(), reason="real data fnet_sample not found")
TILE = ["--tile", "16", "64", "64", "--overlap", "4", "16", "16"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A depth-2 F-net trained for 8 iterations on the real pair, and `spotlight predict`'s output for it."""
    if PAIR is None or not PAIR.is_dir():
        pytest.skip("real data fnet_sample not found")
    root = tmp_path_factory.mktemp("pair")
    csv = root / "train.csv"
    csv.write_text(f"path_signal,path_target\n{PAIR / 'light.tif'},{PAIR / 'nuc.tif'}\n")
    run = root / "run"
    assert main(["train", "--train-csv", str(csv), "--out", str(run), "--depth", "2", "--base-channels", "8",
                 "--patch-size", "16", "32", "32", "--batch-size", "2", "--iterations", "8", "--checkpoint-every", "8",
                 "--bn-batches", "4", "--num-threads", "1", "--device", "cpu", "--no-progress",
                 "--tensorboard", "false"]) == 0
    predicted = {}
    for tta in ("none", "yx"):
        out = root / f"pred_{tta}"
        assert main(["predict", "--model", str(run), "--out", str(out), str(PAIR / "light.tif"), *TILE,
                     "--tta", tta, "--device", "cpu", "--no-progress"]) == 0
        predicted[tta] = read_volume(out / "light_prediction.tif")
    return {"run": run, "root": root, "predicted": predicted}


@pytest.fixture(scope="module")
def exported(trained):
    """All three exports, made with every network connection refused (and counted)."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access refused by the test")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "getaddrinfo", refuse)
        result = export_model(trained["run"], trained["root"] / "exported", sample=PAIR / "light.tif",
                              authors=["Spotlight Tests"])
    return result, attempts


def signal(trained) -> np.ndarray:
    _, preprocess = load_model(trained["run"])
    return prepare_signal(read_volume(PAIR / "light.tif", "signal"), preprocess)


def scaled_error(reference: np.ndarray, got: np.ndarray) -> float:
    return relative_error(torch.from_numpy(reference), torch.from_numpy(got))


@needs_pair
@pytest.mark.parametrize("tta", ["none", "yx"])
def test_torchscript_predicts_what_spotlight_predict_does(trained, exported, tta):
    module, metadata = load_torchscript(exported[0].files["torchscript"])
    assert metadata["size_multiple"] == 4 and metadata["kind"] == "spotlight-export"
    got = predict_volume(module, signal(trained), tile_size=(16, 64, 64), overlap=(4, 16, 16), tta=tta,
                         size_multiple=metadata["size_multiple"])
    assert scaled_error(trained["predicted"][tta], got) <= 1e-6


@needs_pair
@pytest.mark.parametrize("tta", ["none", "yx"])
def test_onnx_predicts_what_spotlight_predict_does(trained, exported, tta):
    module = OnnxModule(exported[0].files["onnx"])
    assert module.size_multiple == 4  # from the file's metadata
    got = predict_volume(module, signal(trained), tile_size=(16, 64, 64), overlap=(4, 16, 16), tta=tta)
    assert scaled_error(trained["predicted"][tta], got) <= TOLERANCE


@needs_pair
def test_bioimageio_package_passes_bioimageio_core_offline(trained, exported):
    result, attempts = exported
    assert attempts == []  # bioimageio.core's test ran without opening a connection
    summary = result.bioimageio_summary
    assert summary.status == "passed"
    names = [d.name for d in summary.details]
    for fmt in ("pytorch_state_dict", "torchscript", "onnx"):
        assert f"Reproduce test outputs from test inputs ({fmt})" in names
        assert any(n.startswith(f"Run {fmt} inference for inputs with batch_size: 2") for n in names)
    assert all(d.status == "passed" for d in summary.details)
    with zipfile.ZipFile(result.files["bioimageio"]) as package:
        rdf = yaml.safe_load(package.read("rdf.yaml"))
        assert {"test_input.npy", "test_output.npy", "weights.pt", "weights.torchscript.pt", "weights.onnx",
                "fnet.py", "README.md", "cover.png"} <= set(package.namelist())
    (step,) = [p for p in rdf["inputs"][0]["preprocessing"] if p["id"] == "zero_mean_unit_variance"]
    assert step["kwargs"]["axes"] == ["z", "y", "x"] and float(step["kwargs"]["eps"]) == 1e-6
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript", "onnx"}
    state = torch.load(trained["run"] / "model.pt", weights_only=True)
    with zipfile.ZipFile(result.files["bioimageio"]) as package:
        packaged = torch.load(package.open("weights.pt"), weights_only=True)
    assert all(torch.equal(state[k], packaged[k]) for k in state)


@needs_pair
def test_bioimageio_core_predicts_the_whole_volume_as_spotlight_does(trained, exported):
    """The package run by bioimageio.core on the whole volume, each weight format, against spotlight untiled:
    the models agree to float rounding on the same input; the spec's standardization, (x - mean) / (std + 1e-6),
    moves the input by 1e-6 / std relative (2e-5 here), the output by about 5e-5 of its range (docs/export.md)."""
    from bioimageio.core import create_prediction_pipeline, load_description, predict
    from bioimageio.core.digest_spec import create_sample_for_model

    descr = load_description(exported[0].files["bioimageio"], perform_io_checks=False)
    raw = read_volume(PAIR / "light.tif", "signal")
    net = load_model(trained["run"])[0]
    whole = predict_volume(net, signal(trained), tile_size=raw.shape)
    for weights in ("pytorch_state_dict", "torchscript", "onnx"):
        pipeline = create_prediction_pipeline(descr, weight_format=weights, devices=["cpu"])
        got = np.asarray(predict(model=pipeline, inputs={"brightfield": raw[None, None]}).members["fluorescence"].data)
        assert scaled_error(whole, got[0, 0]) <= 1e-3, weights
        sample = create_sample_for_model(descr, inputs={"brightfield": raw[None, None]})
        pipeline.apply_preprocessing(sample)
        standardized = np.asarray(sample.members["brightfield"].data)
        assert scaled_error(signal(trained), standardized[0, 0]) <= 1e-4  # the spec's standardization is spotlight's
        with pipeline:  # predict() above unloads the model when it is done
            out = pipeline.predict_sample_without_blocking(sample, skip_preprocessing=True)
        with torch.inference_mode():
            same_input = net(torch.from_numpy(standardized.astype(np.float32))).numpy()
        assert scaled_error(same_input, np.asarray(out.members["fluorescence"].data)) <= TOLERANCE, weights


@needs_pair
def test_export_refuses_what_it_cannot_reproduce(trained, tmp_path, monkeypatch, capsys):
    net, _ = load_model(trained["run"])
    x = [torch.randn(1, 1, 8, 16, 16)]
    assert check_agreement("ok", net, net, x) == 0.0
    with pytest.raises(ExportError, match="wrong: the export differs"):
        check_agreement("wrong", net, lambda t: net(t) * 1.001, x)
    from spotlight_ops.export import torchscript

    real = torchscript.load_torchscript
    monkeypatch.setattr(torchscript, "load_torchscript", lambda path: (lambda t: real(path)[0](t) + 1e-2, {}))
    capsys.readouterr()
    code = main(["export", "--model", str(trained["run"]), "--out", str(tmp_path / "x"), "--format", "torchscript",
                 "--sample", str(PAIR / "light.tif")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "model.torchscript.pt (TorchScript): the export differs" in err[-1], err
    assert not (tmp_path / "x" / "model.torchscript.pt").exists()


@needs_pair
def test_cli_export_and_its_one_line_errors(trained, tmp_path, capsys):
    assert main(["export", "--model", str(trained["run"]), "--out", str(tmp_path / "ts"), "--format", "torchscript"]) == 0
    assert (tmp_path / "ts" / "model.torchscript.pt").is_file()  # the sample: the run's own training manifest
    assert "model.torchscript.pt (torchscript; differs from PyTorch by" in capsys.readouterr().err
    for extra, expected in [(["--license", "nope"], "--license 'nope': not an SPDX license identifier"),
                            (["--name", "a/b"], "--name 'a/b': a bioimage.io model name"),
                            (["--sample", str(tmp_path / "missing.tif")], "missing.tif")]:
        code = main(["export", "--model", str(trained["run"]), "--out", str(tmp_path / "e"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0], err
    payload = model_file.read_model_payload(trained["run"] / "model.pt")
    payload["model"] = {k: v.clone() for k, v in payload["model"].items()}
    next(v for v in payload["model"].values() if v.is_floating_point()).view(-1)[0] = float("nan")
    bad = model_file.write_model_file(tmp_path / "nan.pt", payload)
    assert main(["export", "--model", str(bad), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite weights" in err[0] and str(bad) in err[0]
    with pytest.raises(SystemExit):
        main(["export", "--model", str(trained["run"]), "--out", str(tmp_path / "e"), "--format", "onx"])
    assert "did you mean onnx?" in capsys.readouterr().err


@needs_pair
def test_a_missing_export_package_gives_the_install_line(trained, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import raises ModuleNotFoundError(name="onnx")
    with pytest.raises(MissingDependency, match=r"ONNX export needs the onnx package.*spotlight-ops\[export\]"):
        export_model(trained["run"], tmp_path / "o", formats=["onnx"])
    capsys.readouterr()
    assert main(["export", "--model", str(trained["run"]), "--out", str(tmp_path / "o"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "pip install 'spotlight-ops[export]'" in err[-1] and err[-1].startswith("spotlight export: error:"), err

"""Model files and checkpoints: plain ``torch.load`` reads them, every damage is caught, files of the
earlier framed format still work, and non-finite weights are refused (issue 22, item 7)."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile

import numpy as np
import pytest
import torch

from spotlight_ops.cli import main
from spotlight_ops.data import read_manifest
from spotlight_ops.files import archive
from spotlight_ops.files.checkpoint import CheckpointError, load_checkpoint, read_digest, save_atomic
from spotlight_ops.models import FNet, model_file
from spotlight_ops.predict import load_model
from spotlight_ops.training import train
from spotlight_ops.training.log import read_log

from _training_helpers import tiny_config, tiny_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    """A finished tiny run of 6 iterations (checkpoints at 2, 4, 6)."""
    out = tmp_path_factory.mktemp("run") / "run"
    train(tiny_config(dataset["train"], out, iterations=6, checkpoint_every=2))
    return out


def losses(run_dir) -> list:
    return [(r["iteration"], r["loss"]) for r in read_log(run_dir / "log.csv")]


def framed(payload: dict) -> bytes:
    """The framed format written before the zip format: magic, SHA-256, length, torch.save payload."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    return struct.pack("<16s32sQ", b"SPOTLIGHT-CKPT01", hashlib.sha256(data).digest(), len(data)) + data


# --- plain torch.load ------------------------------------------------------------------------


def test_plain_torch_load_reads_model_files_and_checkpoints(run):
    state = torch.load(run / "model.pt", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    payload = load_checkpoint(run / "model.pt")
    assert state.keys() == payload["model"].keys()
    assert all(torch.equal(state[k], payload["model"][k]) for k in state)
    metadata = model_file.read_metadata(run / "model.pt")
    assert metadata["kind"] == "spotlight-model" and metadata["format_version"] == 3
    assert metadata["iteration"] == 6 and metadata["source"]["sha256"] == read_digest(run / "checkpoints" /
                                                                                     "checkpoint_latest.pt")
    assert metadata["preprocess"]["target_norm"] == "otsu" and metadata["config"]["iterations"] == 6
    net = FNet(**metadata["model_config"])
    net.load_state_dict(state)  # strict: every key, every shape
    with zipfile.ZipFile(run / "model.pt") as zf:  # the metadata is a plain JSON record of the archive
        assert json.loads(zf.read("archive/spotlight/metadata.json")) == metadata
    checkpoint = torch.load(run / "checkpoints" / "checkpoint_latest.pt", weights_only=True)
    assert checkpoint["iteration"] == 6 and set(checkpoint["model"]) == set(state)
    assert all(torch.equal(checkpoint["inference_model"][k], state[k]) for k in state)


# --- damage --------------------------------------------------------------------------------


def small_file(tmp_path):
    return save_atomic(tmp_path / "m.pt", {"w": torch.arange(12.0), "b": torch.tensor([1, 2])},
                       {"kind": "spotlight-model", "note": "x"})


def test_every_flipped_byte_is_caught_or_harmless(tmp_path):
    """Flipping any one byte of a file either raises CheckpointError or reads back the same content
    (bytes no reader looks at: timestamps, the alignment padding of the local headers); a flip in
    the bytes of any record is always caught."""
    path = small_file(tmp_path)
    original = path.read_bytes()
    want = load_checkpoint(path)
    reader = torch._C.PyTorchFileReader(str(path))
    record_bytes = {at for name in reader.get_all_records()
                    for at in range(reader.get_record_offset(name),
                                    reader.get_record_offset(name) + reader.get_record_size(name))}
    caught = set()
    for at in range(len(original)):
        path.write_bytes(original[:at] + bytes([original[at] ^ 0x10]) + original[at + 1:])
        try:
            got = load_checkpoint(path)
        except CheckpointError as err:
            assert str(path) in str(err) and "\n" not in str(err)
            caught.add(at)
            continue
        assert got.keys() == want.keys() and got["note"] == want["note"], at
        assert all(torch.equal(got["model"][k], want["model"][k]) for k in want["model"]), at
    assert len(record_bytes) > 200 and record_bytes <= caught, sorted(record_bytes - caught)[:10]


def test_every_truncation_is_caught(tmp_path):
    path = small_file(tmp_path)
    original = path.read_bytes()
    for length in range(len(original)):
        path.write_bytes(original[:length])
        with pytest.raises(CheckpointError, match="truncated|corrupted|not a spotlight"):
            load_checkpoint(path)


def test_a_consistent_edit_of_a_record_is_caught_by_the_digest(tmp_path):
    """A record rewritten with a valid CRC (an edit, not noise) passes zipfile's checks: the SHA-256
    record must catch it."""
    path = small_file(tmp_path)
    edited = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(edited, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("metadata.json"):
                data = data.replace(b'"x"', b'"y"')
            target.writestr(info, data)
    path.write_bytes(edited.getvalue())
    with pytest.raises(CheckpointError, match="corrupted .*SHA-256"):
        load_checkpoint(path)


def test_a_plain_torch_file_is_not_a_spotlight_file(tmp_path):
    torch.save({"w": torch.zeros(3)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a spotlight checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")


# --- the framed format of earlier runs -----------------------------------------------------


def test_framed_files_of_earlier_runs_stay_readable(run, dataset, tmp_path):
    """A run written in the framed format (model.pt and checkpoints) predicts as before and resumes
    exactly."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(run, old)
    for path in [old / "model.pt", *sorted((old / "checkpoints").glob("*.pt"))]:
        payload = load_checkpoint(path)
        if path.name == "model.pt":
            payload["format_version"] = 2  # what the framed format's model files said
        path.write_bytes(framed(payload))
        assert path.read_bytes().startswith(b"SPOTLIGHT-CKPT01")
    new_net, new_pre = load_model(run)
    old_net, old_pre = load_model(old)
    assert old_pre == new_pre
    x = torch.randn(1, 1, 8, 16, 16)
    assert torch.equal(old_net(x), new_net(x))
    assert read_digest(old / "checkpoints" / "checkpoint_latest.pt") == hashlib.sha256(
        (old / "checkpoints" / "checkpoint_latest.pt").read_bytes()[56:]).hexdigest()
    # resume the framed run to 8 iterations; the reference is the zip-format run resumed the same way
    again = tmp_path / "again"
    shutil.copytree(run, again)
    for folder in (old, again):
        train(tiny_config(dataset["train"], folder, iterations=8, checkpoint_every=2), resume=True)
    assert losses(old) == losses(again) and len(losses(old)) == 8
    a, b = load_checkpoint(old / "model.pt")["model"], load_checkpoint(again / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (old / "model.pt").read_bytes().startswith(b"SPOTLIGHT-CKPT01")  # rewritten in the zip format


@pytest.mark.parametrize("damage,message", [
    (lambda b: b[:10], "truncated"),
    (lambda b: b[:-5], "truncated or padded"),
    (lambda b: b[:80] + bytes([b[80] ^ 1]) + b[81:], "corrupted"),
])
def test_framed_files_are_still_checked(tmp_path, damage, message):
    path = tmp_path / "c.pt"
    path.write_bytes(framed({"iteration": 3, "w": torch.arange(100.0)}))
    assert load_checkpoint(path)["iteration"] == 3
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


# --- non-finite weights (issue 22, item 7) -------------------------------------------------


@pytest.mark.parametrize("where", ["weight", "running_var"])
def test_non_finite_weights_are_refused_with_one_line(run, dataset, tmp_path, capsys, where):
    payload = load_checkpoint(run / "model.pt")
    name = next(k for k in payload["model"] if k.endswith(where))
    payload["model"][name] = payload["model"][name].clone()
    payload["model"][name].view(-1)[0] = float("nan") if where == "weight" else float("inf")
    path = model_file.write_model_file(tmp_path / "nan.pt", payload)
    with pytest.raises(model_file.ModelFileError, match=f"non-finite weights .*{name}"):
        load_model(path)
    signal = read_manifest(dataset["train"])[0].signal
    capsys.readouterr()
    code = main(["predict", "--model", str(path), "--out", str(tmp_path / "p"), str(signal), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(path) in err[0] and "non-finite" in err[0], err
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())


def test_a_finite_model_file_still_predicts(run):
    net, _ = load_model(run / "model.pt")
    assert np.isfinite(net(torch.randn(1, 1, 8, 16, 16)).detach().numpy()).all()


def test_metadata_must_be_plain(tmp_path):
    with pytest.raises(TypeError, match="plain number"):
        archive.encode({"w": torch.zeros(1)}, {"bad": object()})

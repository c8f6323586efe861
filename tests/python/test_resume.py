"""Crash-safe training: exact resume, SIGKILL mid-run, corrupt checkpoints, finished runs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

from spotlight_ops.cli import main
from spotlight_ops.training import CheckpointError, CheckpointManager, load_checkpoint, save_atomic, train
from spotlight_ops.training.log import read_log

from _training_helpers import CLI, subprocess_env, tiny_config, tiny_dataset, tiny_flags


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


class Interrupted(Exception):
    pass


def interrupt_at(stop: int):
    def callback(iteration: int, loss: float) -> None:
        if iteration == stop:
            raise Interrupted
    return callback


def losses(run_dir) -> list[tuple[int, float]]:
    return [(r["iteration"], r["loss"]) for r in read_log(run_dir / "log.csv")]


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory):
    """The reference: 9 iterations in one go."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train(tiny_config(dataset["train"], out, iterations=9, checkpoint_every=3))
    return out


@pytest.mark.parametrize("stop", [4, 6, 8])
def test_resume_is_bit_exact(dataset, tmp_path, uninterrupted, stop):
    config = tiny_config(dataset["train"], tmp_path / "run", iterations=9, checkpoint_every=3)
    with pytest.raises(Interrupted):
        train(config, on_iteration=interrupt_at(stop))
    assert losses(tmp_path / "run")[-1][0] == stop  # rows after the checkpoint exist before resuming
    result = train(config, resume=True)
    assert result.finished and result.iteration == 9
    assert losses(tmp_path / "run") == losses(uninterrupted)  # equal floats, not close ones
    a = load_checkpoint(tmp_path / "run" / "model.pt")["model"]
    b = load_checkpoint(uninterrupted / "model.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_of_a_finished_run_says_so(dataset, tmp_path, capsys):
    flags = tiny_flags(dataset["train"], tmp_path / "run")
    assert main(["train", *flags, "--iterations", "2"]) == 0
    capsys.readouterr()
    assert main(["train", *flags, "--iterations", "2", "--resume"]) == 0
    assert "already finished (iteration 2 of 2)" in capsys.readouterr().out
    assert main(["train", "--out", str(tmp_path / "run"), "--resume"]) == 0  # the run's config.yaml suffices
    assert "already finished" in capsys.readouterr().out
    assert main(["train", "--out", str(tmp_path / "run"), "--resume", "--iterations", "3"]) == 0
    assert [r["iteration"] for r in read_log(tmp_path / "run" / "log.csv")] == [1, 2, 3]


def test_resume_can_extend_but_not_change_the_run(dataset, tmp_path):
    config = tiny_config(dataset["train"], tmp_path / "run", iterations=2)
    train(config)
    with pytest.raises(ValueError, match="lr: checkpoint 0.001 vs now 0.01"):
        train(tiny_config(dataset["train"], tmp_path / "run", iterations=4, lr=0.01), resume=True)
    assert train(tiny_config(dataset["train"], tmp_path / "run", iterations=4), resume=True).iteration == 4
    assert [i for i, _ in losses(tmp_path / "run")] == [1, 2, 3, 4]


def _middle_of_largest_record(raw: bytes) -> int:
    """The offset of the middle byte of the archive's largest record: bytes the digest covers (the
    zip's alignment padding around records is read by nobody, so a flip there is no damage)."""
    import io
    import struct
    import zipfile
    info = max(zipfile.ZipFile(io.BytesIO(raw)).infolist(), key=lambda i: i.compress_size)
    name_length, extra_length = struct.unpack_from("<HH", raw, info.header_offset + 26)
    return info.header_offset + 30 + name_length + extra_length + info.compress_size // 2


def test_corrupt_latest_falls_back_to_last_good(dataset, tmp_path, uninterrupted, capsys):
    config = tiny_config(dataset["train"], tmp_path / "run", iterations=9, checkpoint_every=3)
    with pytest.raises(Interrupted):
        train(config, on_iteration=interrupt_at(7))
    folder = tmp_path / "run" / "checkpoints"
    assert load_checkpoint(folder / "checkpoint_last_good.pt")["iteration"] == 3
    latest = folder / "checkpoint_latest.pt"
    data = bytearray(latest.read_bytes())
    data[_middle_of_largest_record(bytes(data))] ^= 0xFF  # one flipped bit-pattern inside the weights
    latest.write_bytes(bytes(data))
    capsys.readouterr()
    train(config, resume=True)
    err = capsys.readouterr().err
    assert "checkpoint_latest.pt: checkpoint corrupted" in err and "last-good checkpoint" in err
    assert (folder / "checkpoint_latest.pt.corrupt").is_file()  # kept for inspection
    assert losses(tmp_path / "run") == losses(uninterrupted)  # still exact, from iteration 3


def test_no_intact_checkpoint_is_a_clear_error(dataset, tmp_path, capsys):
    config = tiny_config(dataset["train"], tmp_path / "run", iterations=4, checkpoint_every=2)
    train(config)
    for name in ("checkpoint_latest.pt", "checkpoint_last_good.pt"):
        path = tmp_path / "run" / "checkpoints" / name
        path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(CheckpointError, match="(?s)no intact checkpoint.*checkpoint_latest.pt: checkpoint truncated"):
        train(tiny_config(dataset["train"], tmp_path / "run", iterations=6), resume=True)
    flags = tiny_flags(dataset["train"], tmp_path / "run")
    assert main(["train", *flags, "--iterations", "6", "--resume"]) == 1
    assert "no intact checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("damage,message", [
    (lambda b: b[:10], "truncated"),
    (lambda b: b[:-5], "truncated"),
    (lambda b: b"NOT-A-CHECKPOINT" + b[16:], "not a spotlight checkpoint"),
    (lambda b: b[:80] + bytes([b[80] ^ 1]) + b[81:], "corrupted"),  # a byte of the pickle (records start at 64)
])
def test_load_checkpoint_detects_damage(tmp_path, damage, message):
    path = save_atomic(tmp_path / "c.pt", {"iteration": 3, "w": torch.arange(100.0)})
    assert load_checkpoint(path)["iteration"] == 3
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = save_atomic(tmp_path / "c.pt", {"iteration": 1})

    def broken_fsync(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        save_atomic(path, {"iteration": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["iteration"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temporary left behind


def test_manager_never_promotes_an_unverified_latest(tmp_path):
    manager = CheckpointManager(tmp_path)
    manager.save({"iteration": 1})
    manager.save({"iteration": 2})
    assert load_checkpoint(manager.last_good)["iteration"] == 1
    (tmp_path / "checkpoint_latest.pt").write_bytes(b"garbage")
    fresh = CheckpointManager(tmp_path)
    payload, path = fresh.load_for_resume()
    assert payload["iteration"] == 1 and path == manager.last_good
    fresh.save({"iteration": 3})
    assert load_checkpoint(manager.last_good)["iteration"] == 1  # garbage was not rotated in
    assert load_checkpoint(manager.latest)["iteration"] == 3


def test_sigkill_loses_at_most_the_iterations_since_the_last_checkpoint(dataset, tmp_path):
    """kill -9 a training process at a random moment after its first checkpoint, then resume."""
    run = tmp_path / "run"
    every = 10
    flags = tiny_flags(dataset["train"], run) + ["--checkpoint-every", str(every), "--loss", "spotlight"]
    process = subprocess.Popen([*CLI, "train", *flags, "--iterations", "100000"], env=subprocess_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = run / "checkpoints" / "checkpoint_latest.pt"
    try:
        deadline = time.monotonic() + 120
        while not latest.exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        time.sleep(random.Random().uniform(0.0, 1.5))
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL

    checkpoint = load_checkpoint(latest)  # intact, whenever the kill came
    saved = checkpoint["iteration"]
    logged = read_log(run / "log.csv")[-1]["iteration"]
    assert saved % every == 0 and saved >= every
    assert 0 <= logged - saved <= every  # at most the iterations since the last checkpoint are lost

    total = logged + 5
    resumed = subprocess.run([*CLI, "train", *flags, "--iterations", str(total), "--resume"], env=subprocess_env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at iteration {saved}" in resumed.stderr
    rows = losses(run)
    assert [i for i, _ in rows] == list(range(1, total + 1))
    assert not list((run / "checkpoints").glob(".*tmp*"))
    assert load_checkpoint(latest)["iteration"] == total

    reference = tmp_path / "reference"
    train(tiny_config(dataset["train"], reference, iterations=total, checkpoint_every=every))
    assert rows == losses(reference)  # the kill changed nothing but the wall time


def test_learning_rate_schedule_formula():
    from spotlight_ops.training.schedule import learning_rate

    assert [learning_rate(i, 1e-3) for i in (1, 7, 50_000)] == [1e-3] * 3  # the paper's constant rate
    assert [learning_rate(i, 1e-3, "constant", 4) for i in (1, 2, 4, 5)] == [2.5e-4, 5e-4, 1e-3, 1e-3]
    for i in range(1, 13):  # an independent float64 evaluation of the documented formula
        expected = 1e-3 * i / 4 if i <= 4 else 1e-4 + 9e-4 * 0.5 * (1 + np.cos(np.pi * (i - 4) / 8))
        assert learning_rate(i, 1e-3, "cosine", 4, 12, 1e-4) == pytest.approx(expected, rel=1e-12)
    assert learning_rate(12, 1e-3, "cosine", 4, 12, 1e-4) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="lr_schedule"):
        tiny_config("x.csv", "out", lr_schedule="linear")
    with pytest.raises(ValueError, match="min_lr"):
        tiny_config("x.csv", "out", lr_schedule="cosine", min_lr=0.1)


def test_cosine_schedule_resumes_exactly(dataset, tmp_path, capsys):
    from spotlight_ops.training.schedule import learning_rate

    settings = dict(iterations=9, checkpoint_every=3, lr_schedule="cosine", warmup_iterations=2, min_lr=1e-4)
    reference = tmp_path / "reference"
    train(tiny_config(dataset["train"], reference, **settings))
    config = tiny_config(dataset["train"], tmp_path / "run", **settings)
    with pytest.raises(Interrupted):
        train(config, on_iteration=interrupt_at(5))
    train(config, resume=True)
    assert losses(tmp_path / "run") == losses(reference)
    optimizer = load_checkpoint(tmp_path / "run" / "checkpoints" / "checkpoint_latest.pt")["optimizer"]
    assert optimizer["param_groups"][0]["lr"] == learning_rate(9, 1e-3, "cosine", 2, 9, 1e-4)  # the rate used last
    constant = tmp_path / "constant"
    train(tiny_config(dataset["train"], constant, iterations=9, checkpoint_every=3))
    assert losses(constant)[0] == losses(reference)[0]  # the same start
    assert losses(constant)[1] != losses(reference)[1]  # warm-up: a smaller first step changes the second loss
    err = capsys.readouterr().err
    assert "lr 0.001 (cosine after 2 warm-up)" in err


def test_start_line_and_time_estimate(dataset, tmp_path, capsys):
    train(tiny_config(dataset["train"], tmp_path / "run", iterations=8, checkpoint_every=8))
    err = capsys.readouterr().err
    assert "train: device cpu, 1 CPU thread(s) of" in err and "iterations 1..8" in err
    assert "s/iteration; about" in err and "for the remaining 2 iterations" in err


@pytest.mark.parametrize("lazy", [False, True])
def test_resume_with_stored_masks_is_bit_exact(dataset, tmp_path, lazy, capsys):
    """The tiny dataset's manifest names masks (path_mask, its labels): with stored_masks true the loss gets
    them as mask=, and a resumed run, in memory or buffered (masks read box by box), repeats the
    uninterrupted losses exactly."""
    options = dict(iterations=7, checkpoint_every=3, augment="yx", stored_masks=True,
                   **({"buffer_size": 2, "buffer_switch_every": 2} if lazy else {}))
    train(tiny_config(dataset["train"], tmp_path / "reference", **options))
    assert "masks: the stored foreground masks" in capsys.readouterr().err
    config = tiny_config(dataset["train"], tmp_path / "run", **options)
    with pytest.raises(Interrupted):
        train(config, on_iteration=interrupt_at(5))
    train(config, resume=True)
    assert losses(tmp_path / "run") == losses(tmp_path / "reference")
    train(tiny_config(dataset["train"], tmp_path / "unmasked", **dict(options, stored_masks=False)))
    assert "stored masks ignored (--no-stored-masks)" in capsys.readouterr().err
    assert losses(tmp_path / "unmasked")[0] != losses(tmp_path / "reference")[0]  # the masks were used
    train(tiny_config(dataset["train"], tmp_path / "default", **dict(options, stored_masks=None)))
    assert "path_mask was not written by spotlight preprocess" in capsys.readouterr().err
    assert losses(tmp_path / "default") == losses(tmp_path / "unmasked")  # labels are not preprocess's masks

"""Fault injection: kills at every write of the final phase, full disks, read-only folders, torn files,
two trainers on one folder, SIGTERM/SIGHUP. No case may lose a checkpoint, mix two runs or leave a
stale model.pt.

Kills are deterministic: ``SPOTLIGHT_FAULT=kill@N`` makes the training SIGKILL itself at its N-th fault
point (:mod:`spotlight_ops.files.runfiles`); a trace run lists the points first. Killed trainings
run in a forked child (no interpreter start-up); resumes run in this process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from spotlight_ops.cli import main
from spotlight_ops.data import read_manifest
from spotlight_ops.models import model_file
from spotlight_ops.predict import load_model
from spotlight_ops.training import load_checkpoint, train
from spotlight_ops.files.checkpoint import read_digest
from spotlight_ops.training.log import read_log
from spotlight_ops.files.runfiles import reset_fault_points

from _training_helpers import CLI, subprocess_env, tiny_config, tiny_dataset, tiny_flags

ITERATIONS, EVERY = 4, 2


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """An uninterrupted run: its losses and final weights are what every faulty run must end with."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train(tiny_config(dataset["train"], out, iterations=ITERATIONS, checkpoint_every=EVERY))
    return {"losses": losses(out), "model": load_checkpoint(out / "model.pt")["model"], "dir": out}


def losses(run: Path) -> list:
    return [(r["iteration"], r["loss"]) for r in read_log(run / "log.csv")]


def leftovers(run: Path) -> list:
    return sorted(str(p.relative_to(run)) for p in run.rglob(".*.tmp-*"))


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_complete_and_exact(run: Path, reference: dict) -> None:
    """model.pt is the latest checkpoint's weights, which are the uninterrupted run's; log identical."""
    latest = run / "checkpoints" / "checkpoint_latest.pt"
    assert load_checkpoint(latest)["iteration"] == ITERATIONS
    model = load_checkpoint(run / "model.pt")
    assert model["source"]["sha256"] == read_digest(latest)  # not stale
    assert same_weights(model["model"], reference["model"])
    assert same_weights(load_model(run)[0].state_dict(), reference["model"])  # what predict uses
    assert losses(run) == reference["losses"]
    assert leftovers(run) == []


def fault_points(config, tmp_path: Path, monkeypatch, prepare=None) -> list[str]:
    """The labels of the fault points a training passes (a clean run with a trace)."""
    trace = tmp_path / "trace.txt"
    run = Path(config.out_dir)
    if prepare:
        prepare(run)
    monkeypatch.setenv("SPOTLIGHT_FAULT_TRACE", str(trace))
    reset_fault_points()
    train(config, resume=prepare is not None)
    monkeypatch.delenv("SPOTLIGHT_FAULT_TRACE")
    shutil.rmtree(run)
    return [line.split(" ", 1)[1] for line in trace.read_text().splitlines()]


def killed_at(point: int, config, resume: bool) -> int:
    """Trains in a forked child that SIGKILLs itself at fault point ``point``; returns the wait status."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            os.environ["SPOTLIGHT_FAULT"] = f"kill@{point}"
            reset_fault_points()
            train(config, resume=resume)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def final_phase(labels: list[str]) -> list[int]:
    """1-based fault points from the start of the last checkpoint save to the end (model.pt written)."""
    saves = [i for i, label in enumerate(labels) if label.startswith("partial:") and "checkpoint_latest" in label]
    return list(range(saves[-1] + 1, len(labels) + 1))


def test_sigkill_at_every_write_of_the_final_phase(dataset, tmp_path, monkeypatch, reference):
    """A finished run of 2 iterations, extended to 4 by --resume, is killed at each write from its last
    checkpoint save on (the checkpoint, its rotation, model.pt): the model.pt of iteration 2 must not
    survive, and a resume always ends with the uninterrupted run's model. (A fresh run's final phase
    is the same sequence of writes without an old model.pt.)"""
    run = tmp_path / "run"
    config = tiny_config(dataset["train"], run, iterations=ITERATIONS, checkpoint_every=EVERY)
    first = tiny_config(dataset["train"], run, iterations=EVERY, checkpoint_every=EVERY)
    labels = fault_points(config, tmp_path, monkeypatch, prepare=lambda _: train(first))
    points = final_phase(labels)
    assert {label.split(":")[0] for label in (labels[p - 1] for p in points)} >= {"partial", "synced", "renamed",
                                                                                  "rotated"}
    assert any("model.pt" in labels[p - 1] for p in points)
    for point in points:
        if run.exists():
            shutil.rmtree(run)
        train(first)
        status = killed_at(point, config, resume=True)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (point, labels[point - 1], status)
        latest = load_checkpoint(run / "checkpoints" / "checkpoint_latest.pt")  # present and intact at every kill
        assert latest["iteration"] in (EVERY, ITERATIONS)
        result = train(config, resume=True)
        assert result.finished, labels[point - 1]
        assert_complete_and_exact(run, reference)
        assert result.model_path == run / "model.pt"


def test_stale_model_is_repaired_and_flagged(dataset, tmp_path, reference, capsys):
    """A finished run whose model.pt is missing, stale (an older run's) or torn gets it rewritten on resume."""
    run = tmp_path / "run"
    config = tiny_config(dataset["train"], run, iterations=ITERATIONS, checkpoint_every=EVERY)
    train(tiny_config(dataset["train"], run, iterations=EVERY, checkpoint_every=EVERY))
    stale = (run / "model.pt").read_bytes()  # iteration 2's model
    train(config, resume=True)
    for damage in ("missing", "stale", "torn"):
        model = run / "model.pt"
        if damage == "missing":
            model.unlink()
        elif damage == "stale":
            model.write_bytes(stale)
            capsys.readouterr()
            load_model(run)  # predict warns about a model.pt that is not the latest checkpoint's
            assert "was not written from the run's latest checkpoint" in capsys.readouterr().err
        else:
            model.write_bytes(model.read_bytes()[:500])
        capsys.readouterr()
        assert train(config, resume=True).already_finished
        assert f"{model} was {'missing' if damage == 'missing' else 'stale'}; rewritten" in capsys.readouterr().err
        assert_complete_and_exact(run, reference)


def cli_train(dataset, run: Path, *extra: str) -> list[str]:
    return ["train", *tiny_flags(dataset["train"], run), "--checkpoint-every", str(EVERY), *extra]


def one_error_line(err: str, command: str = "train") -> str:
    lines = [line for line in err.splitlines() if line.startswith(f"spotlight {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_enospc_injected_at_the_final_model_write(dataset, tmp_path, monkeypatch, reference, capsys):
    """A full disk at model.pt after an extended resume: one line, no temporary, the old model.pt flagged
    as stale and rewritten by the next resume."""
    run = tmp_path / "run"
    labels = fault_points(tiny_config(dataset["train"], run, iterations=ITERATIONS, checkpoint_every=EVERY),
                          tmp_path, monkeypatch,
                          prepare=lambda r: main(cli_train(dataset, r, "--iterations", str(EVERY))))
    assert main(cli_train(dataset, run, "--iterations", str(EVERY))) == 0
    point = 1 + next(i for i, label in enumerate(labels) if label.startswith("partial:") and "model.pt" in label)
    monkeypatch.setenv("SPOTLIGHT_FAULT", f"enospc@{point}")
    reset_fault_points()
    capsys.readouterr()
    assert main(cli_train(dataset, run, "--iterations", str(ITERATIONS), "--resume")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{run / 'model.pt'}: no space left on the device" in line and "--resume" in line
    assert leftovers(run) == []
    monkeypatch.delenv("SPOTLIGHT_FAULT")
    assert main(cli_train(dataset, run, "--iterations", str(ITERATIONS), "--resume")) == 0
    assert "model.pt was stale; rewritten" in capsys.readouterr().err
    assert_complete_and_exact(run, reference)


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs (root only): the real thing for disk-full and read-only cases."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def free_bytes(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def test_real_disk_full_on_a_tmpfs(dataset, tmpfs, reference, capsys):
    """ENOSPC from the kernel while extending a run: the checkpoints survive, model.pt is repaired later."""
    run = tmpfs / "run"
    assert main(cli_train(dataset, run, "--iterations", str(EVERY))) == 0
    checkpoint = (run / "checkpoints" / "checkpoint_latest.pt").stat().st_size
    model = (run / "model.pt").stat().st_size
    page = os.statvfs(tmpfs).f_frsize
    # room for the new checkpoint and the temporaries of log.csv and config.yaml, not for model.pt
    room = (-(-checkpoint // page) + 3) * page + min(model // 2, 2 * page)
    filler = tmpfs / "filler"
    filler.write_bytes(b"\0" * max(0, free_bytes(tmpfs) - room))
    capsys.readouterr()
    code = main(cli_train(dataset, run, "--iterations", str(ITERATIONS), "--resume"))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "no space left on the device" in one_error_line(err)
    assert leftovers(run) == []
    assert load_checkpoint(run / "checkpoints" / "checkpoint_latest.pt")["iteration"] in (EVERY, ITERATIONS)
    filler.unlink()
    assert main(cli_train(dataset, run, "--iterations", str(ITERATIONS), "--resume")) == 0
    assert_complete_and_exact(run, reference)


def test_read_only_out_is_one_line(dataset, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    readonly = None
    if os.geteuid() == 0:  # root writes through permission bits: a read-only mount instead
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip("cannot mount a read-only tmpfs here")
        readonly = "mount"
    else:
        folder.chmod(0o555)
    try:
        assert main(cli_train(dataset, folder / "run", "--iterations", "2")) == 2
        line = one_error_line(capsys.readouterr().err)
        assert str(folder / "run") in line
        assert ("read-only file system" if readonly else "permission denied") in line and "--out" in line
    finally:
        if readonly:
            subprocess.run(["umount", "-l", str(folder)], check=False)
        else:
            folder.chmod(0o755)


@pytest.mark.parametrize("damage", [b"train_csv: /data/a.csv\nloss: spot", b"train_csv: /data/tr",
                                    b"\x00\x9f\xffPK\x03\x04 binary", b"- a list\n- not a mapping\n", b"lr: abc\n"],
                         ids=["torn", "torn-but-valid-yaml", "binary", "list", "bad-value"])
def test_damaged_config_yaml_resumes_from_the_checkpoint(dataset, tmp_path, reference, capsys, damage):
    run = tmp_path / "run"
    assert main(cli_train(dataset, run, "--iterations", str(EVERY))) == 0
    (run / "config.yaml").write_bytes(damage)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--iterations", str(ITERATIONS)]) == 0
    err = capsys.readouterr().err
    assert "using the config stored in the run's checkpoint" in err and "config.yaml" in err
    assert "iterations: 4" in (run / "config.yaml").read_text()  # rewritten whole, with the new length
    assert_complete_and_exact(run, reference)


def test_torn_log_csv_is_repaired_on_resume(dataset, tmp_path, reference):
    run = tmp_path / "run"
    config = tiny_config(dataset["train"], run, iterations=ITERATIONS, checkpoint_every=EVERY)

    def stop_at_3(iteration, loss):
        if iteration == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(config, on_iteration=stop_at_3)
    log = run / "log.csv"
    text = log.read_bytes()
    log.write_bytes(text[:-7])  # the last row torn mid-number, no newline
    train(config, resume=True)
    assert_complete_and_exact(run, reference)
    log.write_bytes(log.read_bytes() + b"4,0.1")  # garbage appended after a finished run: left alone
    assert train(config, resume=True).already_finished


def wait_for(predicate, process, timeout=300.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_second_trainer_is_refused_and_sigterm_saves_the_iteration(dataset, tmp_path, capsys):
    """Two trainings on one --out: the second fails at once, naming the first; SIGTERM stops the first
    with a checkpoint of its current iteration (nothing lost), and the lock goes with the process."""
    run = tmp_path / "run"
    flags = cli_train(dataset, run, "--iterations", "100000", "--checkpoint-every", "1000", "--no-progress")
    process = subprocess.Popen([*CLI, *flags], env=subprocess_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(read_log(run / "log.csv")) >= 3, process)
        capsys.readouterr()
        assert main(cli_train(dataset, run, "--iterations", "5", "--seed", "1")) == 2  # not even --resume
        line = one_error_line(capsys.readouterr().err)
        assert f"{run}: another training is running in this folder (pid {process.pid}" in line
        assert main(cli_train(dataset, run, "--iterations", "5", "--resume")) == 2
        assert "another training is running" in one_error_line(capsys.readouterr().err)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM, err.decode()
    saved = load_checkpoint(run / "checkpoints" / "checkpoint_latest.pt")["iteration"]
    logged = read_log(run / "log.csv")[-1]["iteration"]
    assert saved == logged >= 3  # the checkpoint is at the iteration reached: no iteration lost
    assert f"stopped by SIGTERM at iteration {saved}; checkpoint saved to" in err.decode()
    assert "Traceback" not in err.decode()
    assert config_seed(run) == 0 and not (run / "model.pt").exists()  # the refused run wrote nothing
    total = saved + 2
    assert main(cli_train(dataset, run, "--iterations", str(total), "--resume")) == 0  # the lock was freed
    reference = tmp_path / "reference"
    train(tiny_config(dataset["train"], reference, iterations=total, checkpoint_every=1000))
    assert losses(run) == losses(reference)


def config_seed(run: Path) -> int:
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())["seed"]


def test_sighup_in_process_saves_and_stops(dataset, tmp_path, reference):
    run = tmp_path / "run"
    config = tiny_config(dataset["train"], run, iterations=ITERATIONS, checkpoint_every=1000)

    def hang_up(iteration, loss):
        if iteration == 3:
            os.kill(os.getpid(), signal.SIGHUP)  # noted by the handler, acted on after iteration 4's step
    from spotlight_ops.training.trainer import Stopped

    before = signal.getsignal(signal.SIGHUP)
    with pytest.raises(Stopped) as info:
        train(tiny_config(dataset["train"], run, iterations=ITERATIONS + 2, checkpoint_every=1000),
              on_iteration=hang_up)
    assert info.value.exit_code == 129 and info.value.iteration == 4
    assert load_checkpoint(run / "checkpoints" / "checkpoint_latest.pt")["iteration"] == 4
    assert signal.getsignal(signal.SIGHUP) is before  # handlers restored
    assert train(config, resume=True).already_finished
    assert_complete_and_exact(run, reference)


def test_user_errors_are_one_line_and_debug_shows_the_traceback(dataset, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: abc\n")
    cases = [
        (cli_train(dataset, run, "--config", str(bad)), f"{bad}: lr must be a number, got 'abc'"),
        (cli_train(dataset, run, "--device", "cuda"), "--device cuda: CUDA is not available"),
    ]
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    cases.append((cli_train(dataset, run, "--config", str(binary)), f"{binary}: not a YAML text file"))
    if torch.cuda.is_available():
        cases.pop(1)
    for argv, expected in cases:
        capsys.readouterr()
        assert main(argv) == 2
        assert expected in one_error_line(capsys.readouterr().err)
    with pytest.raises(ValueError, match="lr must be a number"):
        main(["--debug", *cases[0][0]])
    monkeypatch.setenv("SPOTLIGHT_DEBUG", "1")
    with pytest.raises(ValueError, match="lr must be a number"):
        main(cases[0][0])


def test_inf_loss_does_not_claim_a_checkpoint(dataset, tmp_path, capsys):
    """A loss that overflows says whether a checkpoint exists. (Targets scaled by 3e38 once did this; they
    are standardized in float64 now, so an absurd learning rate makes the weights overflow instead.)"""
    flags = tiny_flags(dataset["train"], tmp_path / "run") + ["--iterations", "6", "--lr", "1e30"]
    capsys.readouterr()
    assert main(["train", *flags, "--checkpoint-every", "5"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "loss became" in line and "no checkpoint was written yet (the first is due at iteration 5)" in line
    assert "intact" not in line
    flags = tiny_flags(dataset["train"], tmp_path / "run2") + ["--iterations", "6", "--lr", "1e30"]
    assert main(["train", *flags, "--checkpoint-every", "1"]) == 1
    line = one_error_line(capsys.readouterr().err)
    saved = load_checkpoint(tmp_path / "run2" / "checkpoints" / "checkpoint_latest.pt")["iteration"]
    assert f"the checkpoint of iteration {saved} in" in line and "is intact" in line


def test_huge_targets_are_standardized_and_train(dataset, tmp_path, capsys):
    """Targets scaled by 3e38 (once an inf loss): Otsu standardization brings them to the usual scale."""
    folder = tmp_path / "huge"
    shutil.copytree(Path(dataset["train"]).parent, folder)
    csv = folder / Path(dataset["train"]).name
    for row in read_manifest(csv):
        target = tifffile.imread(row.target).astype(np.float64)
        tifffile.imwrite(row.target, (target / target.max() * 3e38).astype(np.float32))
    capsys.readouterr()
    code = main(["train", *tiny_flags(csv, tmp_path / "run"), "--iterations", "4", "--checkpoint-every", "3"])
    assert code == 0, capsys.readouterr().err
    assert all(np.isfinite(loss) for _, loss in losses(tmp_path / "run"))


def test_model_files_of_another_format_or_architecture(dataset, tmp_path, reference, capsys):
    from spotlight_ops.files.checkpoint import save_atomic

    payload = load_checkpoint(reference["dir"] / "model.pt")
    cases = {
        "future.pt": (dict(payload, format_version=99), "model format version 99", "update spotlight"),
        "unet.pt": (dict(payload, architecture="unet"), "architecture 'unet'", "'fnet' models only"),
        "deeper.pt": (dict(payload, model_config=dict(payload["model_config"], depth=2)),
                      "the weights do not fit FNet", "another architecture"),
    }
    signal_tif = read_manifest(dataset["train"])[0].signal
    for name, (content, *expected) in cases.items():
        path = save_atomic(tmp_path / name, content)
        with pytest.raises(model_file.ModelFileError):
            load_model(path)
        capsys.readouterr()
        code = main(["predict", "--model", str(path), "--out", str(tmp_path / "p"), str(signal_tif), "--no-progress"])
        line = one_error_line(capsys.readouterr().err, "predict")
        assert code == 2 and str(path) in line and all(e in line for e in expected), line
    (tmp_path / "garbage.pt").write_bytes(b"not a model")
    assert main(["predict", "--model", str(tmp_path / "garbage.pt"), "--out", str(tmp_path / "p"),
                 str(signal_tif)]) == 2
    assert "not a spotlight checkpoint" in one_error_line(capsys.readouterr().err, "predict")


def test_help_imports_no_command_module():
    """``spotlight --help`` (spotlight_cli) imports neither torch nor spotlight_ops; a command's
    ``--help`` imports that command's module only."""
    code = ("import sys, spotlight_cli as c\n"
            "try:\n    c.main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'numpy', 'spotlight_ops', 'spotlight_ops.training', 'spotlight_ops.predict',"
            " 'spotlight_ops.demo', 'spotlight_ops.evaluation', 'matplotlib', 'scipy') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    done = subprocess.run([CLI[0], "-c", code, "--help"], env=subprocess_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "train" in done.stdout and "evaluate" in done.stdout and "HEAVY []" in done.stdout, done.stdout
    done = subprocess.run([CLI[0], "-c", code, "predict", "--help"], env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--model" in done.stdout and "'spotlight_ops.predict'" in done.stdout, done.stdout
    assert "'spotlight_ops.training'" not in done.stdout and "'spotlight_ops.demo'" not in done.stdout


def test_progress_flags_are_the_same_everywhere(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    base = tiny_flags(dataset["train"], run)
    base.remove("--no-progress")
    assert main(["train", *base, "--iterations", "1", "--no-progress"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:  # the old "--progress false" is refused, with the way to write it
        main(["train", *base, "--iterations", "2", "--resume", "--progress", "false"])
    assert info.value.code == 2
    assert "--progress takes no value: write --progress or --no-progress" in capsys.readouterr().err


def test_temporaries_of_a_killed_first_run_are_removed(dataset, tmp_path, reference):
    """A kill during the very first checkpoint leaves a folder without checkpoints: a fresh start (no
    --resume needed) cleans up what the killed writes left."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / ".checkpoint_latest.pt.tmp-999").write_bytes(b"half a checkpoint")
    (run / ".config.yaml.tmp-999").write_text("train_csv: x")
    train(tiny_config(dataset["train"], run, iterations=ITERATIONS, checkpoint_every=EVERY))
    assert_complete_and_exact(run, reference)

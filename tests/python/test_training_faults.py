"""The fault paths of issue 22: a run folder removed or taken while training, a damaged or torn log.csv,
the log durable with its checkpoint, Ctrl-C, a checkpoint of another run, a full disk during a log append.

Each test is the issue's reproducer on the tiny model of the tests; the "reference" is an uninterrupted
run, whose losses every faulty run must end with (exact resume).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from spotlight_ops.cli import main
from spotlight_ops.errors import describe, exit_code
from spotlight_ops.files.checkpoint import save_atomic
from spotlight_ops.files.runfiles import RunFolderLost, RunLock
from spotlight_ops.training import Stopped, load_checkpoint, train
from spotlight_ops.training.log import read_log

from _training_helpers import CLI, subprocess_env, tiny_config, tiny_dataset, tiny_flags
from test_faults import tmpfs  # noqa: F401  (a fixture: a small tmpfs, root only)

EVERY = 2


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


def losses(run: Path) -> list:
    return [(r["iteration"], r["loss"]) for r in read_log(run / "log.csv")]


def reference_losses(dataset, folder: Path, iterations: int) -> list:
    train(tiny_config(dataset["train"], folder, iterations=iterations, checkpoint_every=1000))
    return losses(folder)


def cli_train(dataset, run: Path, *extra: str) -> list[str]:
    return ["train", *tiny_flags(dataset["train"], run), "--checkpoint-every", str(EVERY), *extra]


def error_lines(err: str, command: str = "train") -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"spotlight {command}: error:")]


def start_trainer(dataset, run: Path, every: int) -> subprocess.Popen:
    flags = cli_train(dataset, run, "--iterations", "100000", "--checkpoint-every", str(every), "--no-progress")
    return subprocess.Popen([*CLI, *flags], env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_rows(run: Path, rows: int, process: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while len(read_log(run / "log.csv")) < rows:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def finish(process: subprocess.Popen, timeout: float = 120.0) -> tuple[int, str, str]:
    """The process's exit code, stdout and stderr; killed (and the test failed) if it does not end."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the first trainer went on training (killed after {timeout} s): {err.decode()[-2000:]}")
    return process.returncode, out.decode(), err.decode()


# 1. the run folder removed, or its lock taken, while training


def test_lock_check_follows_the_folder_and_the_lock_file(tmp_path):
    run = tmp_path / "run"
    lock = RunLock(run).acquire()
    try:
        lock.check("a write")  # the folder it locked
        (run / ".lock").unlink()
        with pytest.raises(RunFolderLost, match="run folder's .lock was removed while training"):
            lock.check("a write")
        (run / ".lock").write_text("another trainer")
        with pytest.raises(RunFolderLost, match="run folder's .lock was removed while training"):
            lock.check("a write")
        shutil.rmtree(run)
        with pytest.raises(RunFolderLost, match="removed or moved.*stopped at a write"):
            lock.check("a write")
        run.mkdir()
        (run / ".lock").write_text("")
        with pytest.raises(RunFolderLost, match="the run folder was replaced while training"):
            lock.check("a write")
    finally:
        lock.release()
    assert exit_code(RunFolderLost("x")) == 3


def test_run_folder_removed_while_training_stops_the_trainer(dataset, tmp_path, capsys):
    """Issue 22.1: ``rm -rf RUN`` while training, then the same command with --resume. The first trainer
    stops (exit 3, one line) instead of writing on into a ghost folder or into the second one's; the
    second's log holds every row, with the uninterrupted run's losses."""
    run = tmp_path / "run"
    first = start_trainer(dataset, run, every=5)
    try:
        wait_for_rows(run, 8, first)
        while run.exists():  # rm -rf, retried while the trainer creates a file in it
            shutil.rmtree(run, ignore_errors=True)
        capsys.readouterr()
        assert main(cli_train(dataset, run, "--iterations", "12", "--resume", "--checkpoint-every", "5")) == 0
        second_out = capsys.readouterr().out
    finally:
        code, out, err = finish(first)
    assert code == 3, err[-2000:]
    lines = error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    # removed, or replaced by the second trainer's, or (seen between rm's steps) without its lock
    assert lines[0].startswith(f"spotlight train: error: {run}: the run folder") \
        and "while training" in lines[0] and "writing nothing more" in lines[0], lines[0]
    assert "Finished" not in out and "Finished 12 iterations" in second_out
    assert [i for i, _ in losses(run)] == list(range(1, 13))
    assert losses(run) == reference_losses(dataset, tmp_path / "reference", 12)


def test_lock_taken_by_a_second_trainer_stops_the_first(dataset, tmp_path, capsys):
    """The lock file removed and taken by a second trainer with --resume: the first stops (exit 3) and the
    second continues the run exactly from its last checkpoint."""
    run = tmp_path / "run"
    first = start_trainer(dataset, run, every=5)
    try:
        wait_for_rows(run, 8, first)
        total = len(read_log(run / "log.csv")) + 30
        (run / ".lock").unlink()
        capsys.readouterr()
        code_second = main(cli_train(dataset, run, "--iterations", str(total), "--resume", "--checkpoint-every", "5"))
        second_err = capsys.readouterr().err
    finally:
        code, out, err = finish(first)
    assert code_second == 0, second_err
    assert code == 3 and "Finished" not in out, err[-2000:]
    assert f"{run}: the run folder's .lock was removed while training" in error_lines(err)[0]
    assert losses(run) == reference_losses(dataset, tmp_path / "reference", total)


def test_log_removed_while_training_stops_the_trainer(dataset, tmp_path):
    run = tmp_path / "run"

    def remove_log(iteration, loss):
        if iteration == 3:
            (run / "log.csv").unlink()
    with pytest.raises(RunFolderLost, match="log.csv: the log was removed or replaced while training; stopped "
                                            "before writing the row of iteration 4"):
        train(tiny_config(dataset["train"], run, iterations=6, checkpoint_every=EVERY), on_iteration=remove_log)
    assert not (run / "log.csv").exists()
    assert train(tiny_config(dataset["train"], run, iterations=6, checkpoint_every=EVERY), resume=True).finished
    assert losses(run) == reference_losses(dataset, tmp_path / "reference", 6)  # rows 1-2 from the checkpoint


# 2. one bad byte in log.csv


@pytest.mark.parametrize("offset", [100, 5], ids=["row", "header"])
def test_bad_byte_in_log_is_reported_and_the_resume_restores_the_rows(dataset, tmp_path, capsys, offset):
    """Issue 22.2: ``printf '\\xff' | dd of=RUN/log.csv bs=1 seek=100 conv=notrunc`` blocked every resume."""
    run = tmp_path / "run"
    assert main(cli_train(dataset, run, "--iterations", "4")) == 0
    log = run / "log.csv"
    data = bytearray(log.read_bytes())
    data[offset] = 0xFF
    log.write_bytes(bytes(data))
    line = data[:offset].count(b"\n") + 1
    capsys.readouterr()
    assert main(cli_train(dataset, run, "--iterations", "6", "--resume")) == 0
    err = capsys.readouterr().err
    warning = next(w for w in err.splitlines() if w.startswith(f"WARNING: {log}:"))
    assert f"line {line}: " in warning and "0xff" in warning, warning
    assert "restored from the checkpoint" in warning or "are intact" in warning
    assert losses(run) == reference_losses(dataset, tmp_path / "reference", 6)


# 3. log.csv durable with its checkpoint; a log without its header; a torn row


def test_log_without_its_header_resumes_with_its_rows(dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(cli_train(dataset, run, "--iterations", "4")) == 0
    log = run / "log.csv"
    log.write_bytes(log.read_bytes().split(b"\n", 1)[1])
    capsys.readouterr()
    assert main(cli_train(dataset, run, "--iterations", "6", "--resume")) == 0
    assert f"WARNING: {log}: line 1: a row where the header belongs" in capsys.readouterr().err
    assert losses(run) == reference_losses(dataset, tmp_path / "reference", 6)


class Interrupted(Exception):
    pass


def stop_at(stop: int):
    def callback(iteration, loss):
        if iteration == stop:
            raise Interrupted
    return callback


def test_torn_row_of_the_checkpoint_iteration_is_restored(dataset, tmp_path, capsys):
    """A power loss tearing the row of the checkpoint's own iteration (the row was not yet on disk): the
    resume puts it back from the checkpoint's copy of the log, and says so."""
    run = tmp_path / "run"
    config = tiny_config(dataset["train"], run, iterations=6, checkpoint_every=EVERY)
    with pytest.raises(Interrupted):
        train(config, on_iteration=stop_at(4))  # after the checkpoint of iteration 4
    log = run / "log.csv"
    log.write_bytes(log.read_bytes()[:-9])  # row 4 cut mid-number, no line end
    capsys.readouterr()
    train(config, resume=True)
    warning = capsys.readouterr().err
    assert f"WARNING: {log}: line 5: torn (no line end); iteration(s) 4 missing; its rows up to iteration 4 " \
           f"were restored from the checkpoint's copy" in warning
    assert losses(run) == reference_losses(dataset, tmp_path / "reference", 6)


def test_log_rows_are_on_disk_before_each_checkpoint_is_published(dataset, tmp_path, monkeypatch):
    """log.csv is fsynced after its last row and before every checkpoint_latest.pt is renamed into place."""
    run = tmp_path / "run"
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        events.append(("replace", str(dst)))
        return real_replace(src, dst, *args, **kwargs)
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to name a file descriptor")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    train(tiny_config(dataset["train"], run, iterations=6, checkpoint_every=EVERY))
    monkeypatch.undo()
    latest, log = str(run / "checkpoints" / "checkpoint_latest.pt"), str((run / "log.csv").resolve())
    published = [i for i, event in enumerate(events) if event == ("replace", latest)]
    assert len(published) == 3
    for before, at in zip([0] + published, published):
        assert ("fsync", log) in events[before:at], events[before:at]


def test_resume_from_a_checkpoint_without_a_log_copy_reports_damaged_lines(dataset, tmp_path, capsys):
    """Checkpoints of older versions hold no copy of the log: its intact rows are kept and each damaged
    line is named, never dropped silently."""
    run = tmp_path / "run"
    config = tiny_config(dataset["train"], run, iterations=6, checkpoint_every=EVERY)
    with pytest.raises(Interrupted):
        train(config, on_iteration=stop_at(4))
    for name in ("checkpoint_latest.pt", "checkpoint_last_good.pt"):
        path = run / "checkpoints" / name
        payload = load_checkpoint(path)
        del payload["log"]
        save_atomic(path, payload)
    log = run / "log.csv"
    lines = log.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b",", b";", 1)  # row 2 damaged
    log.write_bytes(b"\n".join(lines))
    capsys.readouterr()
    train(config, resume=True)
    warning = capsys.readouterr().err
    assert f"WARNING: {log}: line 3: 4 cells where the header has 5; kept its 3 intact rows up to iteration 4" \
           in warning and "holds no copy of the log" in warning
    assert [i for i, _ in losses(run)] == [1, 3, 4, 5, 6]


# 4. Ctrl-C


def test_ctrl_c_saves_a_checkpoint_and_exits_130(dataset, tmp_path):
    """Issue 22.4: SIGINT exited 130 with no checkpoint; now it saves the iteration reached, as SIGTERM does."""
    run = tmp_path / "run"
    process = start_trainer(dataset, run, every=1000)
    try:
        wait_for_rows(run, 3, process)
        process.send_signal(signal.SIGINT)
    finally:
        code, _, err = finish(process)
    assert code == 130, err[-2000:]
    saved = load_checkpoint(run / "checkpoints" / "checkpoint_latest.pt")["iteration"]
    assert saved == read_log(run / "log.csv")[-1]["iteration"] >= 3
    assert "press Ctrl-C again to stop at once" in err
    assert f"stopped by SIGINT at iteration {saved}; checkpoint saved to" in err and "Traceback" not in err


def test_ctrl_c_in_process_saves_and_a_second_one_stops_at_once(dataset, tmp_path):
    config = tiny_config(dataset["train"], tmp_path / "once", iterations=8, checkpoint_every=1000)

    def interrupt(times):
        def callback(iteration, loss):
            if iteration == 3:
                for _ in range(times):
                    os.kill(os.getpid(), signal.SIGINT)
        return callback
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises((Stopped, KeyboardInterrupt)) as info:  # KeyboardInterrupt: Ctrl-C not handled
        train(config, on_iteration=interrupt(1))
    assert isinstance(info.value, Stopped) and info.value.exit_code == 130 and info.value.iteration == 4
    assert load_checkpoint(tmp_path / "once" / "checkpoints" / "checkpoint_latest.pt")["iteration"] == 4
    twice = tmp_path / "twice"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(dataset["train"], twice, iterations=8, checkpoint_every=1000), on_iteration=interrupt(2))
    assert not (twice / "checkpoints").exists()  # stopped at once, in iteration 3, nothing saved
    assert signal.getsignal(signal.SIGINT) is before


# 5. a checkpoint of another run


def test_checkpoint_of_another_run_is_refused(dataset, tmp_path, capsys):
    """Issue 22.7: a valid checkpoint of another run copied into the folder was adopted on resume
    ("already finished (iteration 4 of 2)") and model.pt rewritten from it."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    assert main(cli_train(dataset, ours, "--iterations", "2")) == 0
    assert main(cli_train(dataset, theirs, "--iterations", "4")) == 0
    model = (ours / "model.pt").read_bytes()
    shutil.copy(theirs / "checkpoints" / "checkpoint_latest.pt", ours / "checkpoints" / "checkpoint_latest.pt")
    for extra in ([], ["--iterations", "6"]):
        capsys.readouterr()
        assert main(["train", "--out", str(ours), "--resume", *extra]) == 2
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and "checkpoint_latest.pt: a checkpoint of another run" in lines[0], lines
        assert (ours / "run_id").read_text().strip() in lines[0]
    assert (ours / "model.pt").read_bytes() == model


def test_a_copied_run_folder_resumes_and_a_lost_run_id_is_taken_back(dataset, tmp_path, capsys):
    run, copy = tmp_path / "run", tmp_path / "copy"
    assert main(cli_train(dataset, run, "--iterations", "2")) == 0
    run_id = (run / "run_id").read_text().strip()
    assert load_checkpoint(run / "checkpoints" / "checkpoint_latest.pt")["run_id"] == run_id
    shutil.copytree(run, copy)
    assert main(["train", "--out", str(copy), "--resume", "--iterations", "4"]) == 0
    (run / "run_id").unlink()
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--iterations", "4"]) == 0
    assert f"{run / 'run_id'} is missing or damaged" in capsys.readouterr().err
    assert (run / "run_id").read_text().strip() == run_id
    assert losses(run) == losses(copy) == reference_losses(dataset, tmp_path / "reference", 4)


# 6. a full disk during a log.csv append


def test_full_disk_during_a_log_append_names_the_log(dataset, tmpfs):
    """Issue 22.6: a full disk at a log.csv append said "(file unknown): no space left". The disk is
    filled at iteration 3; the append that needs the log's next page fails."""
    run = tmpfs / "run"
    filler = tmpfs / "filler"

    def fill(iteration, loss):
        if iteration == 3:
            with open(filler, "wb") as handle:
                try:
                    while True:
                        handle.write(b"\0" * 65536)
                        handle.flush()
                except OSError:
                    pass
    with pytest.raises(OSError) as info:
        train(tiny_config(dataset["train"], run, iterations=300, checkpoint_every=1000), on_iteration=fill)
    assert info.value.filename == str(run / "log.csv")
    line = describe(info.value)
    assert line.startswith(f"{run / 'log.csv'}: no space left on the device") and "--resume" in line
    assert exit_code(info.value) == 2
    filler.unlink()
    rows = read_log(run / "log.csv")
    assert len(rows) > 3 and [r["iteration"] for r in rows] == list(range(1, len(rows) + 1))

"""log.csv: extra metric columns (fixed at run start, exact read-back, resume-safe), torn lines."""

from __future__ import annotations

import math

import pytest

from spotlight_ops.training.log import COLUMNS, LossLog, read_log

from _training_helpers import record_tensorboard


def test_extra_columns_read_back_exactly(tmp_path):
    values = [(1, 0.1 + 0.2, 1 / 3, 2 / 3), (2, math.pi, None, 1e-300), (3, 0.5, 0.25, None)]
    with LossLog(tmp_path, tensorboard=False, columns=["fg_pred", "fg_target"]) as log:
        for it, loss, a, b in values:
            log.log(it, loss, {"fg_pred": a, "fg_target": b})
    header = (tmp_path / "log.csv").read_text().splitlines()[0]
    assert header == ",".join(COLUMNS + ("fg_pred", "fg_target"))
    rows = read_log(tmp_path / "log.csv")
    assert [(r["iteration"], r["loss"], r["fg_pred"], r["fg_target"]) for r in rows] == values


def test_no_extra_columns_is_the_old_format(tmp_path):
    with LossLog(tmp_path, tensorboard=False) as log:
        log.log(1, 0.75)
    assert (tmp_path / "log.csv").read_text().splitlines()[0] == "iteration,loss,seconds"
    assert set(read_log(tmp_path / "log.csv")[0]) == set(COLUMNS)


def test_resume_keeps_rows_up_to_the_checkpoint_with_their_metrics(tmp_path):
    with LossLog(tmp_path, tensorboard=False, columns=["a"]) as log:
        for it in range(1, 6):
            log.log(it, it / 7, {"a": it / 11})
    with LossLog(tmp_path, resume_from_iteration=3, tensorboard=False, columns=["a", "b"]) as log:
        log.log(4, 4 / 7 + 1, {"a": 0.5, "b": 0.25})
    rows = read_log(tmp_path / "log.csv")
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    assert [r["a"] for r in rows] == [1 / 11, 2 / 11, 3 / 11, 0.5]
    assert [r["b"] for r in rows] == [None, None, None, 0.25]  # a column the old file lacked: empty


def test_torn_last_line_is_dropped(tmp_path):
    with LossLog(tmp_path, tensorboard=False, columns=["a"]) as log:
        log.log(1, 0.5, {"a": 0.123456})
        log.log(2, 0.25, {"a": 0.654321})
    path = tmp_path / "log.csv"
    text = path.read_text()
    path.write_text(text[:-5])  # a crash mid-write: the last number cut short, no line end
    assert [r["iteration"] for r in read_log(path)] == [1]
    path.write_text(text + "3,0.1\r\n")  # a row with too few cells
    assert [r["iteration"] for r in read_log(path)] == [1, 2]


def test_bad_columns_and_unknown_metrics_are_errors(tmp_path):
    with pytest.raises(ValueError, match="built-in"):
        LossLog(tmp_path, tensorboard=False, columns=["loss"])
    with pytest.raises(ValueError, match="duplicate"):
        LossLog(tmp_path, tensorboard=False, columns=["a", "a"])
    with pytest.raises(ValueError, match="commas"):
        LossLog(tmp_path, tensorboard=False, columns=["a,b"])
    with LossLog(tmp_path, tensorboard=False, columns=["a"]) as log:
        with pytest.raises(ValueError, match="unknown column.*zz.*fixed when the run starts"):
            log.log(1, 0.5, {"zz": 1.0})


def test_tensorboard_gets_each_metric_under_its_tag(tmp_path, monkeypatch):
    scalars = record_tensorboard(monkeypatch)
    with LossLog(tmp_path, columns={"fg_pred": "foreground_fraction/train_pred", "b": "b"}) as log:
        log.log(7, 0.5, {"fg_pred": 0.25, "b": None})
    assert scalars == [("loss/train", 0.5, 7), ("foreground_fraction/train_pred", 0.25, 7)]


def five_rows(folder) -> list:
    with LossLog(folder, tensorboard=False, columns=["a"]) as log:
        for it in range(1, 6):
            log.log(it, it / 7, {"a": it / 11})
        saved = log.text()
    return saved


def test_a_damaged_line_costs_only_itself(tmp_path):
    """A bad byte, a lost comma or a missing header damage one line: the others read back exactly."""
    five_rows(tmp_path)
    path = tmp_path / "log.csv"
    rows = read_log(path)
    lines = path.read_bytes().split(b"\n")
    damaged = list(lines)
    damaged[2] = damaged[2][:6] + b"\xff" + damaged[2][7:]  # row 2: a byte that is not UTF-8
    damaged[4] = damaged[4].replace(b",", b"", 1)  # row 4: a cell short
    path.write_bytes(b"\n".join(damaged))
    assert read_log(path) == [rows[0], rows[2], rows[4]]
    path.write_bytes(b"\n".join(lines[1:]))  # no header
    assert read_log(path, columns=["a"]) == rows
    assert read_log(path) == [{k: r[k] for k in COLUMNS} for r in rows]  # metric names unknown


def test_resume_restores_rows_from_the_saved_copy_and_names_the_damage(tmp_path, capsys):
    saved = five_rows(tmp_path)
    path = tmp_path / "log.csv"
    rows = read_log(path)
    lines = path.read_bytes().split(b"\n")
    lines[3] = b"\xff" + lines[3][1:]  # row 3's iteration unreadable
    path.write_bytes(b"\n".join(lines))
    with LossLog(tmp_path, resume_from_iteration=4, tensorboard=False, columns=["a"], saved=saved):
        pass
    assert read_log(path) == rows[:4]
    assert capsys.readouterr().err.strip() == (
        f"WARNING: {path}: line 4: byte 0xff at column 1 is not UTF-8 text; iteration(s) 3 missing; its rows up "
        f"to iteration 4 were restored from the checkpoint's copy")
    with LossLog(tmp_path, resume_from_iteration=4, tensorboard=False, columns=["a"], saved=saved):
        pass
    assert capsys.readouterr().err == ""  # nothing to report: no warning
    path.unlink()
    with LossLog(tmp_path, resume_from_iteration=2, tensorboard=False, columns=["a"], saved=saved):
        pass
    assert read_log(path) == rows[:2]
    assert f"WARNING: {path}: missing; its rows up to iteration 2 were restored" in capsys.readouterr().err


def test_rows_after_the_checkpoint_are_dropped_without_a_warning(tmp_path, capsys):
    """The rows a crash left after the checkpoint (and a torn one among them) are recomputed: no report."""
    saved = five_rows(tmp_path)
    path = tmp_path / "log.csv"
    path.write_bytes(path.read_bytes()[:-4])  # row 5 torn
    up_to_3 = saved[:saved.index("\r\n4,") + 2]
    with LossLog(tmp_path, resume_from_iteration=3, tensorboard=False, columns=["a"], saved=up_to_3):
        pass
    assert [r["iteration"] for r in read_log(path)] == [1, 2, 3] and capsys.readouterr().err == ""


def test_a_failed_append_names_the_log(tmp_path):
    """A write that fails (a full device) names log.csv; the error of a buffered write names no file."""
    log = LossLog(tmp_path, tensorboard=False)
    log._handle.close()
    log._handle = open("/dev/full", "a")  # the kernel's ENOSPC when an appended row is flushed
    with pytest.raises(OSError, match="No space left") as info:
        log.log(1, 0.5)
    log.close()  # the row that failed is not reported a second time
    assert info.value.filename == str(tmp_path / "log.csv")

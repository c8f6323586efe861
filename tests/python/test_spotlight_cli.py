"""The ``spotlight`` command line without traps, for every command: no abbreviations, a suggestion for a
mistyped flag, command or choice, one-line errors for bad values, ``--version``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import spotlight_cli
import spotlight_ops
from spotlight_cli import COMMANDS, main

from conftest import REPO
from _training_helpers import subprocess_env

# per command: a real flag, a prefix of it, a typo of it, and a flag with a typed value and a bad value
CASES = {
    "train": ("--iterations", "--iteration", "--iteratons", ["--lr", "fast"]),
    "predict": ("--batch-tiles", "--batch", "--bach-tiles", ["--batch-tiles", "two"]),
    "evaluate": ("--pixel-size", "--pixel", "--pixle-size", ["--frc-bin-delta", "x"]),
    "demo": ("--n-train", "--n-tr", "--n-trian", ["--seed", "zero"]),
    "export": ("--license", "--lic", "--licence", ["--format", "pdf"]),
    "preprocess": ("--smooth-threshold", "--smooth", "--smoth-threshold", ["--fields", "B/03"]),
}
REQUIRED = {"predict": ["--model", "m", "--out", "o"], "preprocess": ["plate.zarr"], "evaluate": ["--out", "o"], "export": ["--model", "m", "--out", "o"]}


@pytest.fixture(autouse=True)
def no_command_runs(monkeypatch):
    """A parse that wrongly succeeds fails at once instead of running a training or the demo."""
    import importlib

    def ran(args):
        raise AssertionError(f"the command ran with {args}")
    for module, _ in COMMANDS.values():
        monkeypatch.setattr(importlib.import_module(module), "run", ran)


def error_line(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1, err  # one line, no usage block
    return err[0]


def test_every_command_is_covered():
    assert set(CASES) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(CASES))
def test_no_abbreviations_and_suggestions(command, capsys):
    flag, prefix, typo, bad_value = CASES[command]
    required = REQUIRED.get(command, [])
    line = error_line(capsys, [command, *required, f"{prefix}=1"])
    assert line.startswith(f"spotlight {command}: error: unrecognized argument: {prefix}=1")
    assert f"did you mean {flag}" in line and "never abbreviated" in line
    line = error_line(capsys, [command, *required, f"{typo}=1"])
    assert f"did you mean {flag}?" in line
    line = error_line(capsys, [command, *required, *bad_value])
    assert line.startswith(f"spotlight {command}: error: argument {bad_value[0]}:") and bad_value[1] in line


def test_a_mistyped_command_and_choice_get_a_suggestion(capsys):
    assert "invalid choice: 'trian'" in (line := error_line(capsys, ["trian"])) and "did you mean train?" in line
    line = error_line(capsys, ["train", "--loss", "spotligt"])
    assert "choose from mse, spotlight" in line and "did you mean spotlight?" in line
    line = error_line(capsys, ["train", "--progress", "false"])  # switches take no value
    assert "--progress takes no value: write --progress or --no-progress" in line


def test_the_one_line_names_the_command_and_points_to_help(capsys):
    line = error_line(capsys, ["predict", "--tile", "1", "2"])
    assert line.startswith("spotlight predict: error: argument --tile: expected 3 arguments")
    assert line.endswith("(see spotlight predict --help)")


def test_version_is_one_number_everywhere(capsys):
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert spotlight_cli.__version__ == spotlight_ops.__version__ == version
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"spotlight {version}"
    done = subprocess.run([sys.executable, "-m", "spotlight_cli", "--version"], env=subprocess_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"spotlight {version}"


def test_ci_installs_every_extra():
    """The optional extras' packages are in requirements/ci.txt, so CI runs their tests rather than skipping."""
    import re
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    listed = {line.strip().lower() for line in (REPO / "requirements" / "ci.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    for name in ("zarr", "export"):
        for requirement in extras[name]:
            assert re.split(r"[<>=!~\[ ]", requirement)[0].lower() in listed, (name, requirement)

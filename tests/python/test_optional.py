"""spotlight_ops.optional: a missing optional package is None or a clear "install X"; a broken one is an error."""

from __future__ import annotations

import sys

import pytest

from spotlight_ops.errors import describe, exit_code
from spotlight_ops.optional import MissingDependency, optional_import


@pytest.fixture
def packages(tmp_path, monkeypatch):
    """A folder on sys.path to write throwaway packages into."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("spotlight_test_optional")]:
        del sys.modules[name]


def test_a_missing_module_is_none_or_the_install_message():
    assert optional_import("spotlight_test_optional_absent") is None
    assert optional_import("spotlight_test_optional_absent.sub") is None
    with pytest.raises(MissingDependency, match=r"^the demo needs the spotlight_test_optional_absent package, "
                                                r"which is not installed: pip install it$"):
        optional_import("spotlight_test_optional_absent", install="pip install it", purpose="the demo")
    # a user error for the command line: exit code 2, the message as it is
    try:
        optional_import("spotlight_test_optional_absent", install="pip install it")
    except MissingDependency as err:
        assert exit_code(err) == 2 and describe(err).endswith("pip install it")


def test_a_missing_named_dependency_counts_as_missing(packages):
    (packages / "spotlight_test_optional_wrapper.py").write_text("import spotlight_test_optional_backend\n")
    assert optional_import("spotlight_test_optional_wrapper", needs=("spotlight_test_optional_backend",)) is None
    # not named: a dependency of the module that is missing is the module's problem, not "not installed"
    with pytest.raises(ModuleNotFoundError, match="spotlight_test_optional_backend"):
        optional_import("spotlight_test_optional_wrapper")


def test_a_real_import_bug_inside_an_optional_module_propagates(packages):
    (packages / "spotlight_test_optional_buggy.py").write_text("from math import no_such_name\n")
    with pytest.raises(ImportError, match="no_such_name"):
        optional_import("spotlight_test_optional_buggy")
    with pytest.raises(ImportError, match="no_such_name"):
        optional_import("spotlight_test_optional_buggy", install="pip install buggy")
    broken = packages / "spotlight_test_optional_pkg"
    broken.mkdir()
    (broken / "__init__.py").write_text("")
    (broken / "models.py").write_text("from . import helpers_that_are_not_there\n")
    with pytest.raises(ImportError, match="helpers_that_are_not_there"):
        optional_import("spotlight_test_optional_pkg.models")
    assert optional_import("spotlight_test_optional_pkg").__name__ == "spotlight_test_optional_pkg"


def test_the_optional_parts_use_it(monkeypatch, tmp_path):
    """TensorBoard asked for but absent: the install message; not asked for: no writer. The same
    for OME-Zarr; Cellpose absent: skipped, saying why."""
    from spotlight_ops.data import zarr_io
    from spotlight_ops.evaluation.cellpose_backend import cellpose_status
    from spotlight_ops.training.log import LossLog

    for name in ("tensorboard", "zarr", "ome_zarr", "cellpose"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ModuleNotFoundError(name=name)
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    with pytest.raises(MissingDependency, match="tensorboard: true needs the tensorboard package"):
        LossLog._open_tensorboard(tmp_path / "tb", True)
    assert LossLog._open_tensorboard(tmp_path / "tb", "auto") is None
    with pytest.raises(MissingDependency, match=r"OME-Zarr needs the zarr package.*spotlight-ops\[zarr\]"):
        zarr_io._modules()
    model = tmp_path / "model.bin"
    model.write_bytes(b"x")
    runnable, message = cellpose_status(model)
    assert not runnable and "not installed" in message

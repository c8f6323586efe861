"""Shared helpers for the training tests: a tiny synthetic dataset and a tiny run config."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from spotlight_ops.data import synthetic
from spotlight_ops.training import TrainConfig

REPO = Path(__file__).resolve().parents[2]
TINY_SCENE = synthetic.SceneConfig(shape=(16, 32, 32))


def tiny_dataset(folder: Path, n_train: int = 3, n_test: int = 1) -> dict:
    return synthetic.write_dataset(folder, n_train=n_train, n_test=n_test, config=TINY_SCENE, seed=1)


def tiny_config(csv: Path, out: Path, **overrides) -> TrainConfig:
    """A model and batch small enough for a few milliseconds per iteration."""
    values = dict(train_csv=str(csv), out_dir=str(out), loss="spotlight", depth=1, base_channels=4,
                  patch_size=(8, 16, 16), batch_size=2, iterations=6, checkpoint_every=2, progress=False,
                  tensorboard=False, device="cpu", num_threads=1)
    values.update(overrides)
    return TrainConfig(**values)


def tiny_flags(csv: Path, out: Path) -> list[str]:
    return ["--train-csv", str(csv), "--out", str(out), "--depth", "1", "--base-channels", "4",
            "--patch-size", "8", "16", "16", "--batch-size", "2", "--no-progress", "--tensorboard", "false", "--num-threads", "1",
            "--device", "cpu"]


def subprocess_env() -> dict:
    """The environment for ``python -m spotlight_ops.cli`` in a subprocess: the
    same ``spotlight_ops`` the tests imported (the installed package, or a source
    tree on PYTHONPATH with SPOTLIGHT_OPS_LIBRARY), and so the same op library."""
    import spotlight_ops

    env = dict(os.environ)
    package_parent = str(Path(spotlight_ops.__file__).resolve().parents[1])
    env["PYTHONPATH"] = package_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


CLI = [sys.executable, "-m", "spotlight_ops.cli"]


def record_tensorboard(monkeypatch) -> list:
    """Every TensorBoard scalar a LossLog writes, as ``(tag, value, step)`` (with or without tensorboard)."""
    import spotlight_ops.training.log as log_module

    scalars = []

    class Writer:
        def add_scalar(self, tag, value, step):
            scalars.append((tag, value, step))

        def close(self):
            pass

    monkeypatch.setattr(log_module.LossLog, "_open_tensorboard", staticmethod(lambda folder, wanted: Writer()))
    return scalars

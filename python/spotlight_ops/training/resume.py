"""Resuming a run: its newest intact checkpoint, checked to be this run's, with a compatible config.

A run has an id, created with it (a random UUID): ``RUN/run_id`` holds it and every checkpoint carries
it (``run_id``), so a resume refuses a checkpoint of another run copied into the folder, whose
iteration, weights and log would otherwise be adopted. A folder whose ``run_id`` file is missing takes
the checkpoint's id back (with a warning); a checkpoint without one (written before run ids) is this
run's. A copied or moved run folder keeps its id and resumes.
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path
from typing import Optional

from ..files.checkpoint import CheckpointError, CheckpointManager, load_checkpoint, read_digest
from ..files.runfiles import atomic_write_text
from ..models import FNet, model_file
from . import distributed as D
from .config import RESUMABLE_CHANGES, TrainConfig, older_run_defaults

FORMAT_VERSION = 1
RUN_ID_FILE = "run_id"


def new_run_id() -> str:
    return uuid.uuid4().hex  # from os.urandom: no draw from the seeded generators


def read_run_id(run_dir: Path) -> Optional[str]:
    """The id in ``RUN/run_id``; None when the file is missing or does not hold one."""
    try:
        text = (Path(run_dir) / RUN_ID_FILE).read_text(encoding="ascii", errors="replace").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return text if re.fullmatch(r"[0-9a-f]{32}", text) else None


def write_run_id(run_dir: Path, run_id: str) -> None:
    atomic_write_text(Path(run_dir) / RUN_ID_FILE, run_id + "\n")


def resume_payload(config: TrainConfig, manager: CheckpointManager, ctx: D.DistContext, run_dir: Path
                   ) -> Optional[dict]:
    """The payload of the newest intact checkpoint (``_path``: its file), or None without one. Rank 0
    picks the file; every rank loads that same file and checks it: its format, its run id against the
    folder's, its config against ``config``."""
    path = None
    if ctx.is_main:
        try:
            payload, path = manager.load_for_resume()
        except CheckpointError as err:
            path = err
        else:
            path = str(path) if path is not None else None
    path = D.broadcast_object(path, ctx)
    if isinstance(path, CheckpointError):
        raise path
    if path is None:
        return None
    if not ctx.is_main:
        payload = load_checkpoint(path)
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {payload.get('format_version')} is not the supported "
                              f"{FORMAT_VERSION}")
    _check_run_id(path, payload.get("run_id"), read_run_id(run_dir), run_dir)
    saved = TrainConfig.from_dict(older_run_defaults(payload["config"]), f"{path} (config)")
    changed = config.differences(saved)
    if changed:
        details = ", ".join(f"{k}: checkpoint {saved.to_dict()[k]!r} vs now {config.to_dict()[k]!r}" for k in changed)
        raise ValueError(f"cannot resume {path} with a different config ({details}); only "
                         f"{', '.join(sorted(RESUMABLE_CHANGES))} may change")
    payload["_path"] = path
    return payload


def _check_run_id(path, checkpoint_id: Optional[str], folder_id: Optional[str], run_dir: Path) -> None:
    if checkpoint_id is not None and folder_id is not None and checkpoint_id != folder_id:
        raise ValueError(f"{path}: a checkpoint of another run (run id {checkpoint_id}; this folder's run is "
                         f"{folder_id}, in {Path(run_dir) / RUN_ID_FILE}); move that file out of "
                         f"{Path(path).parent} to resume this run, or resume the run it belongs to in its own "
                         f"folder")


def run_id_to_continue(run_dir: Path, payload: Optional[dict], ctx: D.DistContext) -> str:
    """The id of the run being started (a new one) or resumed (the folder's, or its checkpoint's when
    the folder lost its ``run_id`` file), the same on every rank; rank 0 writes it to ``RUN/run_id``."""
    run_id = None
    if ctx.is_main:
        folder_id = read_run_id(run_dir)
        run_id = new_run_id() if payload is None else (folder_id or payload.get("run_id") or new_run_id())
        if payload is not None and folder_id is None and payload.get("run_id") is not None:
            print(f"WARNING: {Path(run_dir) / RUN_ID_FILE} is missing or damaged: this folder's run is taken to be "
                  f"that of {payload['_path']} (run id {run_id}); the file is rewritten", file=sys.stderr)
        if run_id != folder_id:
            write_run_id(run_dir, run_id)
    return D.broadcast_object(run_id, ctx)


def repair_model(run_dir: Path, payload: dict) -> Path:
    """A finished run's model.pt, rewritten from the checkpoint it resumed from when missing or not copied from it."""
    model_path = run_dir / model_file.MODEL_NAME
    source = Path(payload["_path"])
    if model_file.is_current(model_path, source):
        return model_path
    state = model_file.model_payload(FNet(**payload["model_config"]), payload["preprocess"], payload["config"],
                                     payload["iteration"], {"checkpoint": f"checkpoints/{source.name}",
                                                            "iteration": payload["iteration"],
                                                            "sha256": read_digest(source)})
    state["model"] = payload.get("inference_model", payload["model"])
    if "channels" in payload:
        state["channels"] = payload["channels"]
    print(f"Run {run_dir}: {model_path} was {'stale' if model_path.exists() else 'missing'}; rewritten from "
          f"{source} (iteration {payload['iteration']}).", file=sys.stderr)
    return model_file.write_model_file(model_path, state)

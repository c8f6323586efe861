"""DistributedDataParallel on CPU: two processes over gloo, started as torchrun starts them."""

from __future__ import annotations

import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from spotlight_ops.training import load_checkpoint, train
from spotlight_ops.training.log import read_log

from _training_helpers import tiny_config, tiny_dataset

WORLD = 2
DEADLINE_S = 300  # the whole test takes about 15 s: past this the processes hang, and CI must not


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Interrupted(Exception):
    pass


def _worker(rank: int, ports: list, csv: str, root: str, ema_decay: float) -> None:
    """One of two processes, set up as torchrun sets them up: train() joins the group itself."""
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD))
    os.environ["MASTER_PORT"] = str(ports[0])
    # run A: 6 iterations in one go
    train(tiny_config(csv, os.path.join(root, "a"), iterations=6, checkpoint_every=3, ema_decay=ema_decay))

    def stop(iteration: int, loss: float) -> None:
        if iteration == 4:
            raise Interrupted
    # run B: interrupted after iteration 4 (checkpoint at 3), then resumed to 6
    os.environ["MASTER_PORT"] = str(ports[1])
    try:
        train(tiny_config(csv, os.path.join(root, "b"), iterations=6, checkpoint_every=3, ema_decay=ema_decay),
              on_iteration=stop)
    except Interrupted:
        pass
    os.environ["MASTER_PORT"] = str(ports[2])
    train(tiny_config(csv, os.path.join(root, "b"), iterations=6, checkpoint_every=3, ema_decay=ema_decay), resume=True)
    assert not dist.is_initialized()  # train() left the group it joined


@pytest.mark.parametrize("ema_decay", [0.0, 0.8], ids=["last-weights", "weight-average"])
def test_two_processes_over_gloo_train_and_resume_exactly(tmp_path, ema_decay):
    dataset = tiny_dataset(tmp_path / "data")
    ports = [free_port() for _ in range(3)]
    context = mp.start_processes(_worker, args=(ports, str(dataset["train"]), str(tmp_path), ema_decay), nprocs=WORLD,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + DEADLINE_S
    while not context.join(timeout=5):  # raises if a worker failed
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the two DDP processes did not finish within {DEADLINE_S} s (a hang): killed")
    a, b = read_log(tmp_path / "a" / "log.csv"), read_log(tmp_path / "b" / "log.csv")
    assert [r["iteration"] for r in a] == list(range(1, 7))
    assert [(r["iteration"], r["loss"]) for r in a] == [(r["iteration"], r["loss"]) for r in b]
    checkpoint = load_checkpoint(tmp_path / "b" / "checkpoints" / "checkpoint_latest.pt")
    assert checkpoint["world_size"] == WORLD and len(checkpoint["sampler"]) == WORLD == len(checkpoint["rng"])
    assert checkpoint["sampler"][0]["bit_generator"] != checkpoint["sampler"][1]["bit_generator"]
    weights_a = load_checkpoint(tmp_path / "a" / "model.pt")["model"]
    weights_b = load_checkpoint(tmp_path / "b" / "model.pt")["model"]
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert ("ema" in checkpoint) == bool(ema_decay)
    if ema_decay:  # the written model holds the average, not the last weights
        assert any(not torch.equal(weights_b[k], checkpoint["model"][k]) for k in weights_b
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))

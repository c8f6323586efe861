"""torch.library.opcheck on every op: schema, autograd registration, fake
tensors and AOT dispatch agree with the real kernels."""

from __future__ import annotations

import pytest
import torch

import spotlight_ops  # noqa: F401
from conftest import DEVICES
from helpers import opcheck_cases


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_every_op(device):
    n = 0
    for op, args, *kwargs in opcheck_cases(device):
        torch.library.opcheck(op, args, *kwargs)
        n += 1
    assert n == 30

"""Property tests (hypothesis): for random shapes, dtypes and values (huge,
tiny, denormal, ties on bin edges, constant and single-voxel samples) the ops
agree with the reference, and NaN/Inf poison exactly their pools (SPEC 8)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spotlight_ops as so

DTYPE_LIMIT = {torch.float64: 1e100, torch.float32: 1e15, torch.float16: 6e4, torch.bfloat16: 1e15}
RTOL = {torch.float64: 1e-9, torch.float32: 2e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2}
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def batches(draw, finite=True):
    """(pred, target) of one dtype and shape [N, V] with values of one of several kinds."""
    dtype = draw(st.sampled_from(list(DTYPE_LIMIT)))
    n = draw(st.integers(1, 4))
    v = draw(st.integers(1, 300))
    kind = draw(st.sampled_from(["normal", "huge", "tiny", "denormal", "ties", "constant"]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    limit = DTYPE_LIMIT[dtype]
    if kind == "normal":
        y, p = rng.normal(0, 1, (n, v)), rng.normal(0, 1, (n, v))
    elif kind == "huge":
        scale = limit ** 0.5 * 0.1  # squares stay finite in the accumulation type
        y, p = rng.normal(0, scale, (n, v)), rng.normal(0, scale, (n, v))
    elif kind == "tiny":
        y, p = rng.normal(0, 1e-3, (n, v)), rng.normal(0, 1e-3, (n, v))
    elif kind == "denormal":
        tiny = {torch.float64: 1e-310, torch.float32: 1e-40, torch.float16: 1e-7, torch.bfloat16: 1e-40}[dtype]
        y, p = rng.integers(0, 5, (n, v)) * tiny, rng.integers(0, 5, (n, v)) * tiny
    elif kind == "ties":  # values on bin edges of [0, 4] with 256 bins
        y, p = rng.integers(0, 5, (n, v)).astype(float), rng.integers(0, 5, (n, v)).astype(float)
    else:
        y, p = np.full((n, v), rng.normal()), rng.normal(0, 1, (n, v))
    return torch.from_numpy(p).to(dtype), torch.from_numpy(y).to(dtype)


@SETTINGS
@given(batches(), st.sampled_from(["batch", "mean", "none"]), st.sampled_from(["foreground", "all"]))
def test_loss_agrees_with_reference(batch, reduction, norm):
    p, y = batch
    thresholds = so.otsu_threshold(y)
    got = so.loss(p, y, reduction=reduction, mse_normalization=norm)
    expected = so.reference.loss(p.double(), y.double(), thresholds.double(), reduction=reduction,
                                 mse_normalization=norm)
    scale = expected.abs().clamp_min(1.0)
    assert torch.all((got.double() - expected).abs() <= RTOL[p.dtype] * scale + 1e-12), (got, expected)


def _criteria(v: np.ndarray, bins: int) -> np.ndarray:
    """Otsu's criterion after each bin, in bin-index units, from exact integer
    counts (affine-invariant, so no underflow on tiny ranges)."""
    lo, hi = v.min(), v.max()
    idx = np.clip(np.floor((v - lo) / (hi - lo) * bins), 0, bins - 1).astype(np.int64)
    counts = np.bincount(idx, minlength=bins).astype(np.float64)
    w1 = np.cumsum(counts)[:-1]
    s1 = np.cumsum(counts * (2 * np.arange(bins) + 1))[:-1]
    w2 = counts.sum() - w1
    s2 = (counts * (2 * np.arange(bins) + 1)).sum() - s1
    with np.errstate(divide="ignore", invalid="ignore"):
        crit = w1 * w2 * (s1 / w1 - s2 / w2) ** 2
    return np.nan_to_num(crit, nan=-1.0)


@SETTINGS
@given(batches(), st.integers(2, 300))
def test_otsu_within_one_bin_of_reference_or_an_exact_tie(batch, bins):
    _, y = batch
    got = so.otsu_threshold(y, bins).double()
    expected = so.reference.otsu_threshold(y.double(), bins).double()
    v = y.double()
    lo, hi = v.min(1).values, v.max(1).values
    width = (hi - lo) / bins
    rounding = got.abs() * (8e-3 if y.dtype in (torch.float16, torch.bfloat16) else 1e-6)
    close = (got - expected).abs() <= width * 1.001 + rounding
    for s in torch.nonzero(~close).flatten().tolist():
        # Far apart: only an exact tie of the criterion may separate them (the
        # kernel takes the first maximum; the reference's rounding may not).
        crit = _criteria(v[s].numpy(), bins)
        chosen = int(round(((got[s] - lo[s]) / width[s]).item() - 0.5))
        assert crit[chosen] >= crit.max() * (1 - 1e-12), (got[s], expected[s], chosen, crit.argmax())


@SETTINGS
@given(batches(), st.sampled_from(["batch", "mean", "none"]), st.data())
def test_non_finite_poisons_exactly_its_pool(batch, reduction, data):
    p, y = batch
    n, v = p.shape
    bad_sample = data.draw(st.integers(0, n - 1))
    where = data.draw(st.integers(0, v - 1))
    value = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    in_target = data.draw(st.booleans())
    (y if in_target else p)[bad_sample, where] = value
    got = so.loss(p, y, reduction=reduction)
    if in_target:
        assert torch.isnan(so.otsu_threshold(y)[bad_sample])
    if reduction == "none":
        expected_nan = torch.zeros(n, dtype=torch.bool)
        expected_nan[bad_sample] = True
        assert torch.equal(torch.isnan(got), expected_nan), got
    else:
        assert torch.isnan(got)
    # The same with a given threshold (no Otsu): only the pool is poisoned.
    given_t = so.loss(p, y, 0.0, reduction=reduction)
    assert torch.isnan(given_t).any()


@SETTINGS
@given(batches())
def test_gradient_agrees_with_reference(batch):
    p, y = batch
    if p.dtype in (torch.float16, torch.bfloat16):
        p, y = p.float(), y.float()
    thresholds = so.otsu_threshold(y)
    pa = p.clone().requires_grad_()
    so.loss(pa, y).backward()
    pr = p.double().requires_grad_()
    so.reference.loss(pr, y.double(), thresholds.double()).backward()
    scale = pr.grad.abs().max().clamp_min(1e-30)
    tol = 1e-9 if p.dtype == torch.float64 else 1e-4
    assert torch.all((pa.grad.double() - pr.grad).abs() <= tol * scale)


@pytest.mark.parametrize("dtype", list(DTYPE_LIMIT))
def test_single_voxel_and_constant_samples(dtype):
    y = torch.tensor([[2.0], [2.0]], dtype=dtype)
    p = torch.tensor([[1.0], [3.0]], dtype=dtype)
    # Constant sample: T = its value, M empty: MMSE 0, Dice 1 - 0 = 1 (up to eps).
    got = so.loss(p, y, reduction="none")
    torch.testing.assert_close(got.double(), so.reference.loss(p.double(), y.double(), reduction="none"))

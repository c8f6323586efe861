"""The CUDA kernels of every spotlight op against the CPU kernels (thresholds to
the bit, everything else to float rounding) and the float64 reference, on the
same inputs; determinism, no host synchronization, CUDA graph capture and
replay, torch.compile(mode="reduce-overhead") and opcheck on CUDA tensors; a
side stream while the default stream is busy, and stale memory from the caching
allocator. Skipped without a CUDA device, except the *_on_cpu tests."""

from __future__ import annotations

import functools

import pytest
import torch

import spotlight_ops as so
from conftest import CUDA
from helpers import DTYPES, LOSS_RTOL, bin_width, nuclei_like, opcheck_cases, packed_options, pred_like


@pytest.fixture(autouse=True)
def _cuda_or_skip(request):
    """Every test here needs a GPU, except the *_on_cpu ones: CPU sides of the comparisons."""
    if not CUDA and not request.node.name.split("[")[0].endswith("_on_cpu"):
        pytest.skip("needs a CUDA device")


DEVICE = "cuda"
REDUCTIONS = ["batch", "mean", "none"]
KINDS = ["random", "structured", "constant", "tiny", "noncontiguous", "nan_poisoned", "n1_large", "n256_small"]
# CPU and CUDA sum in different orders; elementwise results round once more.
TOL = {torch.float64: 1e-9, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@functools.lru_cache(maxsize=None)
def inputs(kind: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, target) of one kind on the CPU; tests move copies to the GPU."""
    gen = torch.Generator().manual_seed(KINDS.index(kind))
    if kind == "random":
        y = torch.rand(4, 1, 6, 20, 20, generator=gen, dtype=torch.float64) ** 2
    elif kind == "structured":
        y = nuclei_like(3, seed=11, dtype=torch.float64)
    elif kind == "constant":
        y = torch.full((3, 1, 4, 5, 6), 0.7, dtype=torch.float64)
    elif kind == "tiny":  # one voxel per sample
        y = torch.tensor([[0.3], [1.2], [-0.5]], dtype=torch.float64)
    elif kind == "noncontiguous":
        base_y = torch.rand(5, 12, 10, 8, generator=gen, dtype=torch.float64)
        base_p = pred_like(base_y, seed=3)
        return base_p.to(dtype).transpose(1, 3), base_y.to(dtype).transpose(1, 3)
    elif kind == "nan_poisoned":  # sample 1 holds NaN, sample 2 Inf
        y = torch.rand(4, 500, generator=gen, dtype=torch.float64)
        y[1, 17] = float("nan")
        y[2, 3] = float("inf")
    elif kind == "n1_large":  # one sample over many blocks
        y = torch.rand(1, 1, 64, 128, 128, generator=gen, dtype=torch.float64) ** 3
    elif kind == "n256_small":  # many samples of one block each
        y = torch.rand(256, 1, 4, 8, 8, generator=gen, dtype=torch.float64) ** 2
    else:
        raise AssertionError(kind)
    return pred_like(y, seed=KINDS.index(kind) + 100).to(dtype), y.to(dtype)


def on_device(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """GPU copies with the same strides (a transposed input stays non-contiguous)."""
    out = [t.to(DEVICE) for t in tensors]
    for t, c in zip(tensors, out):
        assert c.stride() == t.stride()
    return out


def leaf(t: torch.Tensor, device: str, requires_grad: bool = True) -> torch.Tensor:
    """A fresh autograd leaf on `device`: never the cached input itself (t.to("cpu") is t)."""
    return t.to(device).detach().requires_grad_(requires_grad)


def assert_same_bits(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(got[~got.isnan()], want[~want.isnan()])


def assert_grad_close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    """Within TOL of the largest gradient (plus a subnormal step of the dtype)."""
    scale = want.double().nan_to_num(0.0, 0.0, 0.0).abs().max().item()
    fi = torch.finfo(dtype)
    atol = TOL[dtype] * scale + 2 * fi.smallest_normal * fi.eps
    torch.testing.assert_close(got, want, rtol=TOL[dtype], atol=atol, equal_nan=True)


# --- Otsu ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_otsu_threshold_equals_cpu_bitwise_and_reference(kind, dtype):
    _, y = inputs(kind, dtype)
    (yc,) = on_device(y)
    got = so.otsu_threshold(yc)
    assert got.device.type == DEVICE
    want = so.otsu_threshold(y)
    assert_same_bits(got.cpu(), want)
    ref = so.reference.otsu_threshold(y).double()
    assert torch.equal(ref.isnan(), want.isnan())
    finite = ~ref.isnan()
    diff = (got.cpu().double() - ref).abs()[finite]
    assert torch.all(diff <= bin_width(y)[finite] * 1.001 + 1e-6 * ref.abs()[finite]), diff


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bins", [2, 17, 1000, 8192, 8193, 20000])  # > 8192: global-memory histogram
def test_otsu_threshold_any_bins_equals_cpu(bins, dtype):
    _, y = inputs("structured", dtype)
    assert_same_bits(so.otsu_threshold(*on_device(y), bins).cpu(), so.otsu_threshold(y, bins))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_otsu_standardize_matches_cpu_and_reference(kind, dtype):
    _, y = inputs(kind, dtype)
    got = so.otsu_standardize(*on_device(y)).cpu()
    want = so.otsu_standardize(y)
    assert got.dtype == dtype and got.shape == y.shape
    torch.testing.assert_close(got, want, rtol=TOL[dtype], atol=TOL[dtype], equal_nan=True)
    ref = so.reference.otsu_standardize(y).double()
    torch.testing.assert_close(got.double(), ref, rtol=TOL[dtype], atol=10 * TOL[dtype], equal_nan=True)


def test_otsu_standardize_gradient_matches_cpu():
    _, y = inputs("structured", torch.float64)
    w = torch.rand(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = []
    for device in ("cpu", DEVICE):
        x = leaf(y, device)
        (so.otsu_standardize(x) * w.to(device)).sum().backward()
        grads.append(x.grad.cpu())
    assert_grad_close(grads[1], grads[0], torch.float64)


# --- tunable sigmoid -----------------------------------------------------------------


def sigmoid_inputs(dtype, layout):
    """(cpu x, cuda x): contiguous, offset by one element (misaligned for vector
    loads: the scalar path), and non-contiguous."""
    base = torch.linspace(-1.5, 1.5, 97 * 103, dtype=torch.float64).to(dtype)
    (base_c,) = on_device(base)
    if layout == "offset":
        return base[1:], base_c[1:]
    if layout == "noncontiguous":
        return base.reshape(97, 103).t(), base_c.reshape(97, 103).t()
    return base, base_c


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "offset", "noncontiguous"])
def test_tunable_sigmoid_forward_backward_match_cpu(dtype, layout):
    x, xc = sigmoid_inputs(dtype, layout)
    torch.testing.assert_close(so.tunable_sigmoid(xc, -0.9).cpu(), so.tunable_sigmoid(x, -0.9),
                               rtol=TOL[dtype], atol=TOL[dtype])
    torch.testing.assert_close(so.tunable_sigmoid(xc, 0.3).cpu().double(), so.reference.tunable_sigmoid(x, 0.3).double(),
                               rtol=TOL[dtype], atol=TOL[dtype])
    g = torch.rand(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(dtype)
    back = torch.ops.spotlight._tunable_sigmoid_backward
    assert_grad_close(back(g.to(DEVICE), xc, -0.9).cpu(), back(g, x, -0.9), dtype)
    # Through autograd.
    grads = []
    for t in (x, xc):
        x_leaf = t.detach().clone().requires_grad_()
        so.tunable_sigmoid(x_leaf, -0.9).backward(g.to(t.device))
        grads.append(x_leaf.grad.cpu())
    assert_grad_close(grads[1], grads[0], dtype)


def test_tunable_sigmoid_empty_and_zero_dim():
    assert so.tunable_sigmoid(torch.empty(0, device=DEVICE)).shape == (0,)
    x = torch.tensor(0.25)
    torch.testing.assert_close(so.tunable_sigmoid(x.to(DEVICE)).cpu(), so.tunable_sigmoid(x))


# --- masked_mse and soft_dice ----------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["structured", "noncontiguous", "nan_poisoned", "n1_large", "n256_small"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_terms_match_cpu_and_reference(kind, dtype, reduction):
    p, y = inputs(kind, dtype)
    mask = y > 0.5
    soft = p.clamp(0, 1)
    pc, yc, mc, sc = on_device(p, y, mask, soft)
    for norm in ("foreground", "all"):
        got = so.masked_mse(pc, yc, mc, norm, reduction).cpu()
        torch.testing.assert_close(got, so.masked_mse(p, y, mask, norm, reduction), rtol=LOSS_RTOL[dtype],
                                   atol=1e-7, equal_nan=True)
        torch.testing.assert_close(got.double(), so.reference.masked_mse(p, y, mask, norm, reduction).double(),
                                   rtol=LOSS_RTOL[dtype], atol=1e-7, equal_nan=True)
    got = so.soft_dice(sc, mc, 1e-3, reduction).cpu()
    torch.testing.assert_close(got, so.soft_dice(soft, mask, 1e-3, reduction), rtol=LOSS_RTOL[dtype], atol=1e-7,
                               equal_nan=True)
    torch.testing.assert_close(got.double(), so.reference.soft_dice(soft, mask, 1e-3, reduction).double(),
                               rtol=LOSS_RTOL[dtype], atol=1e-7, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_terms_gradients_match_cpu(dtype, reduction):
    p, y = inputs("structured", dtype)
    mask = y > 0.5
    grads = []
    for device in ("cpu", DEVICE):
        pp = leaf(p, device)
        yy = leaf(y, device)
        ss = leaf(p.clamp(0, 1), device)
        m = mask.to(device)
        (so.masked_mse(pp, yy, m, reduction=reduction).sum() + so.soft_dice(ss, m, reduction=reduction).sum()).backward()
        grads.append([pp.grad.cpu(), yy.grad.cpu(), ss.grad.cpu()])
    for got, want in zip(grads[1], grads[0]):
        assert_grad_close(got, want, dtype)


# --- the fused loss ------------------------------------------------------------------------


def thresholds_for(mode: str, samples: int):
    return {"otsu": None, "float": 0.5, "tensor": torch.linspace(0.2, 0.6, samples)}[mode]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("threshold", ["otsu", "float", "tensor"])
def test_loss_matches_cpu_and_reference(kind, dtype, reduction, threshold):
    p, y = inputs(kind, dtype)
    pc, yc = on_device(p, y)
    thr = thresholds_for(threshold, y.shape[0])
    thr_c = thr.to(DEVICE) if isinstance(thr, torch.Tensor) else thr
    norm = "all" if threshold == "tensor" else "foreground"
    got = so.loss(pc, yc, thr_c, reduction=reduction, mse_normalization=norm)
    want = so.loss(p, y, thr, reduction=reduction, mse_normalization=norm)
    assert got.device.type == DEVICE and got.dtype == dtype and got.shape == want.shape
    torch.testing.assert_close(got.cpu().double(), want.double(), rtol=LOSS_RTOL[dtype], atol=1e-6, equal_nan=True)
    # The reference on the same thresholds (Otsu is tested above; a value on a
    # bin edge must not move the mask here).
    t_ref = so.otsu_threshold(y).double() if thr is None else thr
    ref = so.reference.loss(p.double(), y.double(), t_ref, reduction=reduction, mse_normalization=norm)
    torch.testing.assert_close(got.cpu().double(), ref, rtol=LOSS_RTOL[dtype], atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["structured", "tiny", "noncontiguous", "nan_poisoned", "n1_large", "n256_small"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_grad", [False, True])
def test_loss_gradients_match_cpu(kind, dtype, reduction, target_grad):
    p, y = inputs(kind, dtype)
    grads = []
    for device in ("cpu", DEVICE):
        pp = leaf(p, device)
        yy = leaf(y, device, target_grad)
        out = so.loss(pp, yy, reduction=reduction)
        w = torch.linspace(0.5, 1.5, out.numel(), dtype=torch.float64).to(device=device, dtype=dtype)
        (out * w.reshape(out.shape)).sum().backward()
        grads.append((pp.grad.cpu(), yy.grad.cpu() if target_grad else None))
    assert_grad_close(grads[1][0], grads[0][0], dtype)
    if target_grad:
        assert_grad_close(grads[1][1], grads[0][1], dtype)


@pytest.mark.parametrize("samples", [3, 1500])  # 1500 > 1024: the batch pool gets its own kernel
def test_loss_batch_gradient_with_many_samples(samples):
    y = torch.rand(samples, 1, 4, 4, 4, generator=torch.Generator().manual_seed(5)) ** 2
    p = pred_like(y)
    grads = []
    for device in ("cpu", DEVICE):
        pp = leaf(p, device)
        so.loss(pp, y.to(device), reduction="batch").backward()
        grads.append(pp.grad.cpu())
    assert_grad_close(grads[1], grads[0], torch.float32)


def test_loss_backward_reads_expanded_and_float64_upstream_gradients():
    p, y = on_device(*inputs("structured", torch.float32))
    grads = []
    for upstream in ("sum", "ones", "float64"):
        pp = p.detach().requires_grad_()
        out = so.loss(pp, y, reduction="none")
        if upstream == "sum":
            out.sum().backward()  # an expanded (stride 0) gradient reaches the op
        else:
            options = packed_options(reduction="none")
            fwd = torch.ops.spotlight._loss_forward(pp.detach(), y, None, None, options)
            dtype = torch.float64 if upstream == "float64" else torch.float32
            g = torch.ones(p.shape[0], dtype=dtype, device=DEVICE)
            pp.grad = torch.ops.spotlight._loss_backward(g, pp.detach(), y, fwd[1], fwd[2], None, options, False)[0]
        grads.append(pp.grad)
    assert torch.equal(grads[0], grads[1])
    assert torch.equal(grads[1], grads[2])


def test_loss_equals_loss_at_its_own_otsu_thresholds():
    for dtype in DTYPES:
        p, y = on_device(*inputs("structured", dtype))
        t = so.otsu_threshold(y)
        assert torch.equal(so.loss(p, y, reduction="none"), so.loss(p, y, t, reduction="none"))


# --- determinism, synchronization, graphs, compile ----------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("kind", ["n1_large", "n256_small"])
def test_bit_identical_run_to_run(kind, dtype):
    p, y = on_device(*inputs(kind, dtype))

    def run():
        pp = p.detach().requires_grad_()
        out = so.loss(pp, y, reduction="mean")
        out.backward()
        mask = y > 0.5
        return [out.detach(), pp.grad, so.otsu_threshold(y), so.otsu_standardize(y), so.masked_mse(p, y, mask),
                so.soft_dice(p.clamp(0, 1), mask, reduction="none"), so.loss(p, y, 0.5, reduction="none")]

    for a, b in zip(run(), run()):
        assert torch.equal(a, b)


def every_op_and_backward(p: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> list[torch.Tensor]:
    """Every op of the library forward, and every backward, on the device of p:
    the fused loss with Otsu (3 kernels), given-tensor (memset + 1) and float
    thresholds and its backward (grad_pred and grad_target), otsu_threshold,
    otsu_standardize and its backward, tunable_sigmoid and _tunable_sigmoid_backward,
    masked_mse and soft_dice (memset + 1 each) and their backwards. Returns the
    outputs and the gradients."""
    pp, yy, xs, sx, mp, my = (v.detach().clone().requires_grad_() for v in (p, y, y, p, p, y))
    soft = p.detach().clamp(0, 1).requires_grad_()
    mask = y > 0.5
    outs = [
        so.loss(pp, yy),
        so.loss(pp, y, t, reduction="none"),
        so.loss(pp, y, 0.5, reduction="mean", mse_normalization="all"),
        so.otsu_standardize(xs),
        so.tunable_sigmoid(sx, -0.9),
        so.masked_mse(mp, my, mask, reduction="none"),
        so.soft_dice(soft, mask, reduction="mean"),
    ]
    total = sum(o.double().square().sum() for o in outs)
    total.backward()
    grads = [pp.grad, yy.grad, xs.grad, sx.grad, mp.grad, my.grad, soft.grad]
    return [o.detach() for o in outs] + [so.otsu_threshold(y)] + grads


def inputs_for_every_op(dtype=torch.float32, device=DEVICE, seed=0):
    p, y = inputs("structured", dtype) if seed == 0 else (None, nuclei_like(3, seed=seed, dtype=dtype))
    if p is None:
        p = pred_like(y, seed=seed + 1)
    t = torch.tensor([0.4, 0.5, 0.6], dtype=torch.float32)
    return p.to(device), y.to(device), t.to(device)


def test_every_op_and_backward_on_cpu():
    """The helper the stream, graph and sync tests run, on the CPU: every gradient
    exists, and a second run gives the same bits (so the GPU tests' torch.equal holds)."""
    first = every_op_and_backward(*inputs_for_every_op(device="cpu"))
    second = every_op_and_backward(*inputs_for_every_op(device="cpu"))
    assert len(first) == 15 and all(g is not None for g in first)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_no_host_synchronization(dtype):
    p, y, t = inputs_for_every_op(dtype)
    every_op_and_backward(p, y, t)  # warm up: lazy initialization may synchronize
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        every_op_and_backward(p, y, t)
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def test_side_stream_while_the_default_stream_is_busy():
    """With a kernel sleeping on the default stream, every op and backward runs on
    a side stream, finishes first, and gives the default stream's results. An op
    that launched on the default stream would wait behind the sleep."""
    p, y, t = inputs_for_every_op()
    want = [v.cpu() for v in every_op_and_backward(p, y, t)]
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    torch.cuda._sleep(2_000_000_000)  # about 1 s at 2 GHz, on the default stream
    with torch.cuda.stream(side):
        got = every_op_and_backward(p, y, t)
    side.synchronize()
    default_still_busy = not torch.cuda.default_stream().query()
    torch.cuda.synchronize()
    assert default_still_busy, "the default stream finished first: some op waited for it"
    for a, b in zip(got, want):
        assert torch.equal(a.cpu(), b)


def test_stale_memory_from_the_caching_allocator_changes_nothing():
    """The ops' workspaces come from torch's caching allocator, so they reuse freed
    blocks as they are: after every cached block is filled with 0xFF bytes, the
    results are the same bits (a counter or histogram left unzeroed would show)."""
    p, y, t = inputs_for_every_op()
    clean = every_op_and_backward(p, y, t)
    torch.cuda.synchronize()
    garbage = [torch.full((1 << e,), 255, dtype=torch.uint8, device=DEVICE) for e in range(9, 25) for _ in range(4)]
    torch.cuda.synchronize()
    del garbage  # back to the cache, still holding 0xFF
    dirty = every_op_and_backward(p, y, t)
    for a, b in zip(dirty, clean):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_graph_capture_of_every_op_and_backward(dtype):
    static = list(inputs_for_every_op(dtype))
    side = torch.cuda.Stream()  # warm up on a side stream, as torch.cuda.graph asks
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            every_op_and_backward(*static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = every_op_and_backward(*static)
    for seed in (41, 0):  # new data, then the first again
        fresh = inputs_for_every_op(dtype, seed=seed)
        for s, f in zip(static, fresh):
            s.copy_(f)
        graph.replay()
        eager = every_op_and_backward(*fresh)
        for a, b in zip(captured, eager):
            assert torch.equal(a, b)


@pytest.mark.parametrize("threshold", ["otsu", "tensor"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cuda_graph_capture_and_replay(threshold, reduction):
    p0, y0 = inputs("structured", torch.float32)
    y1 = nuclei_like(3, seed=21)
    p1 = pred_like(y1, seed=22)
    static_p = leaf(p0, DEVICE)
    static_y = y0.to(DEVICE)
    thr = thresholds_for(threshold, 3)
    thr = thr.to(DEVICE) if thr is not None else None

    def step():
        out = so.loss(static_p, static_y, thr, reduction=reduction)
        out.sum().backward()
        return out

    side = torch.cuda.Stream()  # warm up on a side stream, as torch.cuda.graph asks
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            static_p.grad = None
            step()
    torch.cuda.current_stream().wait_stream(side)
    static_p.grad = None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = step()
    for p_new, y_new in ((p1, y1), (p0, y0)):  # replay on new data, twice
        with torch.no_grad():
            static_p.copy_(p_new.to(DEVICE))
            static_y.copy_(y_new.to(DEVICE))
        graph.replay()
        eager_p = leaf(p_new, DEVICE)
        eager = so.loss(eager_p, y_new.to(DEVICE), thr, reduction=reduction)
        eager.sum().backward()
        assert torch.equal(static_out, eager.detach())
        assert torch.equal(static_p.grad, eager_p.grad)


def test_cuda_graph_capture_of_the_otsu_ops():
    _, y0 = inputs("structured", torch.float32)
    static_y = y0.to(DEVICE)
    so.otsu_threshold(static_y), so.otsu_standardize(static_y)  # warm up
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        thr = so.otsu_threshold(static_y)
        std = so.otsu_standardize(static_y)
    y1 = nuclei_like(3, seed=31).to(DEVICE)
    static_y.copy_(y1)
    graph.replay()
    assert torch.equal(thr, so.otsu_threshold(y1))
    assert torch.equal(std, so.otsu_standardize(y1))


@pytest.mark.parametrize("threshold", ["otsu", "float"])
def test_torch_compile_reduce_overhead(threshold):
    torch._dynamo.reset()
    p, y = on_device(*inputs("structured", torch.float32))
    thr = thresholds_for(threshold, 3)

    def step(pred, target):
        return so.loss(pred, target, thr, reduction="mean")

    compiled = torch.compile(step, mode="reduce-overhead", fullgraph=True)
    for _ in range(3):  # record, then replay the CUDA graph
        torch.compiler.cudagraph_mark_step_begin()
        pp = p.detach().requires_grad_()
        out = compiled(pp, y)
        out.backward()
        got, got_grad = out.detach().clone(), pp.grad.clone()
    eager_p = p.detach().requires_grad_()
    want = step(eager_p, y)
    want.backward()
    torch.testing.assert_close(got, want.detach(), rtol=1e-6, atol=0)
    torch.testing.assert_close(got_grad, eager_p.grad, rtol=1e-6, atol=0)


def test_opcheck_on_cuda():
    n = 0
    for dtype in (torch.float32, torch.float64):
        for op, args, *kwargs in opcheck_cases(DEVICE, dtype):
            torch.library.opcheck(op, args, *kwargs)
            n += 1
    assert n == 60


# --- argument checks -------------------------------------------------------------------------


def bad_calls(device):
    p, y = (t.to(device) for t in inputs("structured", torch.float32))
    yield lambda: so.loss(p, y, k=1.5)
    yield lambda: so.loss(p, y, lam=-0.1)
    yield lambda: so.loss(p, y, reduction="max")
    yield lambda: so.loss(p, y.double())
    yield lambda: so.loss(p, y[:1])
    yield lambda: so.loss(p, y, torch.zeros(7, device=device))
    yield lambda: so.loss(p[:0], y[:0])
    yield lambda: so.otsu_threshold(y, 1)
    yield lambda: so.otsu_standardize(y.int())
    yield lambda: so.tunable_sigmoid(p, 1.0)
    yield lambda: so.masked_mse(p, y, y)
    yield lambda: so.soft_dice(p, (y > 0.5)[:1])


def test_cuda_checks_mirror_cpu():
    for cpu_call, cuda_call in zip(bad_calls("cpu"), bad_calls(DEVICE)):
        with pytest.raises(Exception) as cpu_error:
            cpu_call()
        with pytest.raises(Exception) as cuda_error:
            cuda_call()
        assert cuda_error.type is cpu_error.type
        assert str(cpu_error.value).splitlines()[0] == str(cuda_error.value).splitlines()[0]


def test_mixed_devices_are_an_error():
    p, y = inputs("structured", torch.float32)
    with pytest.raises(RuntimeError, match="device"):
        so.loss(p.to(DEVICE), y)
    with pytest.raises(RuntimeError, match="device"):
        so.masked_mse(p.to(DEVICE), y.to(DEVICE), y > 0.5)

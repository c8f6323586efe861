#!/usr/bin/env python
"""Spotlight against its peers, in one run: the fused ops, the same SPEC as eager
PyTorch, that composite under torch.compile, scikit-image and NumPy Otsu, and a
memory copy of the same bytes as the bandwidth floor; and every preset (on the
training batch, each option of SPEC 11 alone too) in both threshold modes against
the default of the mode, `mse_loss` fwd+bwd and VisCy's own SpotlightLoss.

    PYTHONPATH=python python benchmarks/bench_loss.py [--device cpu|cuda] [--quick]

Every compared implementation is first checked against the float64 reference
(`spotlight_ops.reference`): same loss (and gradient) within float32 tolerance,
same Otsu threshold within one bin (SPEC 1). Then all of a shape's cases are
timed round-robin (per round, each case is called twice and its second call
timed, after warm-up rounds), so that a change of machine load hits every case
alike; the table gives medians. torch.compile's compile time (cold: inductor's
caches off) is excluded from the medians and reported apart.

Bandwidth: bytes read + bytes written, each tensor counted once per call:
loss forward+backward 5 tensors (reads pred, target twice, writes the
gradient), Otsu 1 (reads x), the copy 2 (reads one buffer, writes another).
The table and the machine are written to docs/benchmarks.md, between the
markers of the section this script owns (the rest of the page is kept).

    PYTHONPATH=python python benchmarks/bench_loss.py --baseline-library OLD.so [--quick]

compares this build's fused loss (SPOTLIGHT_OPS_LIBRARY, else the installed one) with
another build of the op library, in one run: each library runs in a worker process of
its own, and the two are timed alternately, case by case, round by round. It prints
the medians and their ratio, for the default options (Otsu and a given threshold)
and for the published variants (presets "authors" and "viscy", this build only when
the baseline lacks them); nothing is written.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

# --thp must reach c10's allocator before torch allocates anything.
if "--thp" in sys.argv:
    os.environ["THP_MEM_ALLOC_ENABLE"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BEGIN = "<!-- bench_loss.py: begin (generated, do not edit by hand) -->"
END = "<!-- bench_loss.py: end -->"

SHAPES = {
    "train batch 24x1x32x64x64": (24, 1, 32, 64, 64),
    "volume 1x1x64x624x924": (1, 1, 64, 624, 924),
    "volume 1x1x60x256x256": (1, 1, 60, 256, 256),
}
QUICK_SHAPES = {
    "quick 4x1x16x32x32": (4, 1, 16, 32, 32),
    "quick 1x1x20x64x64": (1, 1, 20, 64, 64),
}


def _loss_defaults():
    """``spotlight_ops/defaults.py`` of this checkout, read by path: importing the package loads an op
    library, and each --library-worker process must load its own library only."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_spotlight_defaults", REPO / "python/spotlight_ops/defaults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_DEFAULTS = _loss_defaults()
LAM, K, EPS, BINS = _DEFAULTS.LAM, _DEFAULTS.K, _DEFAULTS.EPS, _DEFAULTS.BINS


# --------------------------------------------------------------------------
# The SPEC as a user would write it in eager PyTorch: batched over samples,
# float32 like the inputs, no Python loop over voxels or samples.
# --------------------------------------------------------------------------
def otsu_eager(x: torch.Tensor, bins: int = BINS) -> torch.Tensor:
    """Per-sample Otsu threshold (SPEC 1): batched histogram by scatter_add, then
    Otsu's criterion on cumulative sums. Returns [N] in float32."""
    v = x.detach().reshape(x.shape[0], -1)
    lo, hi = torch.aminmax(v, dim=1, keepdim=True)
    width = hi - lo
    scale = torch.where(width > 0, bins / width, torch.zeros_like(width))
    idx = ((v - lo) * scale).to(torch.int64).clamp_(0, bins - 1)
    # int64 counts: float32 ones would stop counting at 2^24 voxels per bin.
    counts = torch.zeros(v.shape[0], bins, dtype=torch.int64, device=v.device)
    counts.scatter_add_(1, idx, torch.ones((), dtype=torch.int64, device=v.device).expand(idx.shape))
    counts = counts.double()
    centres = lo.double() + (torch.arange(bins, device=v.device, dtype=torch.float64) + 0.5) * (width.double() / bins)
    w1 = counts.cumsum(1)
    s1 = (counts * centres).cumsum(1)
    total, total_s = w1[:, -1:], s1[:, -1:]
    w2 = total - w1
    m1 = s1 / w1.clamp_min(1)
    m2 = (total_s - s1) / w2.clamp_min(1)
    crit = torch.where((w1 > 0) & (w2 > 0), w1 * w2 * (m1 - m2) ** 2, torch.full_like(w1, -1.0))[:, :-1]
    best = crit.argmax(dim=1, keepdim=True)  # first maximum
    t = centres.gather(1, best).squeeze(1)
    return torch.where(width.squeeze(1) > 0, t, lo.squeeze(1).double()).to(x.dtype)


def loss_eager(pred: torch.Tensor, target: torch.Tensor, threshold: Optional[torch.Tensor] = None,
               lam: float = LAM, k: float = K, eps: float = EPS) -> torch.Tensor:
    """The Spotlight loss (SPEC 2-5, reduction "batch") from plain tensor ops;
    autograd gives the gradient of SPEC 7."""
    n = pred.shape[0]
    t = otsu_eager(target) if threshold is None else threshold
    t = t.reshape(n, *([1] * (pred.dim() - 1)))
    mask = (target > t).to(pred.dtype)
    fg = mask.sum()
    sq_err = (mask * (target - pred) ** 2).sum()
    mmse = torch.where(fg > 0, sq_err / fg.clamp_min(1), torch.zeros_like(fg))
    x = (pred - t).clamp(-1, 1)
    soft = 0.5 + 0.5 * (x - k * x) / (k - 2 * k * x.abs() + 1)
    dice = 1 - 2 * (soft * mask).sum() / (soft.sum() + fg + eps)
    return lam * mmse + (1 - lam) * dice


def trained_eager(pred: torch.Tensor, target: torch.Tensor, lam: float = LAM, k: float = K,
                  eps: float = EPS) -> torch.Tensor:
    """The objective ``spotlight train`` minimises (preset "trained": the MSE over every voxel, T = 0 on
    Otsu-standardized targets) from plain tensor ops."""
    mask = (target > 0).to(pred.dtype)
    x = pred.clamp(-1, 1)
    soft = 0.5 + 0.5 * (x - k * x) / (k - 2 * k * x.abs() + 1)
    dice = 1 - 2 * (soft * mask).sum() / (soft.sum() + mask.sum() + eps)
    return lam * ((pred - target) ** 2).mean() + (1 - lam) * dice


def viscy_module():
    """VisCy's own loss module (``viscy_utils/losses/spotlight.py``, fetched by scripts/setup.sh into
    build/third_party, or $SPOTLIGHT_VISCY_LOSS); None when absent."""
    import importlib.util

    env = os.environ.get("SPOTLIGHT_VISCY_LOSS")
    path = Path(env) if env else REPO / "build" / "third_party" / "viscy_utils" / "losses" / "spotlight.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("viscy_spotlight_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def viscy_loss_class():
    """VisCy's own SpotlightLoss (see viscy_module); None when absent."""
    module = viscy_module()
    return None if module is None else module.SpotlightLoss


# --------------------------------------------------------------------------
# Otsu peers: scikit-image (per sample) and NumPy.
# --------------------------------------------------------------------------
def otsu_numpy(v: np.ndarray, bins: int = BINS) -> float:
    """Otsu of one sample in NumPy, with the SPEC's binning."""
    v = v.ravel()
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        return lo
    idx = np.minimum(((v - np.float32(lo)) * np.float32(bins / (hi - lo))).astype(np.int32), bins - 1)
    counts = np.bincount(idx, minlength=bins).astype(np.float64)
    centres = lo + (np.arange(bins) + 0.5) * ((hi - lo) / bins)
    w1 = np.cumsum(counts)
    s1 = np.cumsum(counts * centres)
    w2 = w1[-1] - w1
    with np.errstate(divide="ignore", invalid="ignore"):
        crit = w1 * w2 * (s1 / w1 - (s1[-1] - s1) / w2) ** 2
    crit = np.where((w1 > 0) & (w2 > 0), crit, -1.0)[:-1]
    return float(centres[int(np.argmax(crit))])


def otsu_skimage_batch(x: np.ndarray) -> np.ndarray:
    from skimage.filters import threshold_otsu

    return np.array([threshold_otsu(s, nbins=BINS) for s in x])


def otsu_numpy_batch(x: np.ndarray) -> np.ndarray:
    return np.array([otsu_numpy(s) for s in x])


# --------------------------------------------------------------------------
# Data: a real fluorescence volume tiled to the shape when it is there, else
# synthetic blobs; the prediction is the target plus noise.
# --------------------------------------------------------------------------
def data_dir() -> Optional[Path]:
    env = os.environ.get("SPOTLIGHT_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if (path / "qcanet" / "raw_8_cell_stage.tif").is_file() else None


def source_volume() -> tuple[np.ndarray, str]:
    d = data_dir()
    if d is not None:
        try:
            import tifffile

            v = tifffile.imread(d / "qcanet" / "raw_8_cell_stage.tif").astype(np.float32)
            return (v - v.mean()) / v.std(), "real: qcanet raw_8_cell_stage.tif (51x120x122), standardized, tiled"
        except ImportError:
            pass
    g = torch.Generator().manual_seed(1)
    field_ = F.interpolate(torch.rand(1, 1, 8, 16, 16, generator=g), size=(64, 128, 128), mode="trilinear")[0, 0]
    v = torch.where(field_ > 0.6, 1.5, -0.4) + 0.3 * torch.randn(field_.shape, generator=g)
    return v.numpy().astype(np.float32), "synthetic: blobs (about 20% foreground) plus noise"


def make_batch(shape: tuple[int, ...], device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    vol, _ = source_volume()
    rng = np.random.default_rng(seed)
    n, _, z, y, x = shape
    out = np.empty((n, 1, z, y, x), dtype=np.float32)
    for s in range(n):  # periodic tiling from a random offset, random flips
        axes = [(int(rng.integers(0, b)) + np.arange(a)) % b for a, b in zip((z, y, x), vol.shape)]
        out[s, 0] = vol[np.ix_(*[ax[:: rng.choice([-1, 1])] for ax in axes])]
    target = torch.from_numpy(out).to(device)
    g = torch.Generator(device=device).manual_seed(seed + 1)
    pred = (target * 0.9 + 0.3 * torch.randn(target.shape, generator=g, device=device)).requires_grad_(True)
    return pred, target


# --------------------------------------------------------------------------
# Timing.
# --------------------------------------------------------------------------
class Timer:
    """Seconds of one call: perf_counter on the CPU, CUDA events on a GPU
    (with a synchronize before and after)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            torch.cuda.synchronize()
            return start.elapsed_time(stop) / 1e3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


@dataclass
class Case:
    group: str  # what is computed: "loss fwd+bwd, Otsu", ...
    impl: str  # who computes it
    fn: Callable[[], object]
    bytes: int  # bytes read + written per call
    host: bool = False  # runs on the CPU even in a CUDA run (NumPy, scikit-image)
    compile_s: Optional[float] = None
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def one_thread(fn: Callable[[], object]) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fn()
    finally:
        torch.set_num_threads(threads)


def copy_floor(cases: list[Case]) -> Case:
    """The faster torch copy_ of a shape's cases: the bandwidth floor."""
    return min((c for c in cases if c.impl.startswith("torch copy_")), key=lambda c: c.median)


def fwd_bwd(loss_fn: Callable[[], torch.Tensor], pred: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        pred.grad = None
        loss_fn().backward()

    return run


def check_close(name: str, got: torch.Tensor, want: torch.Tensor, rtol: float) -> None:
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    scale = want.abs().max().item()
    err = (got - want).abs().max().item()
    if not err <= rtol * max(scale, 1e-30):
        raise SystemExit(f"bench_loss: {name} differs from the reference: max abs error {err:.3g}, scale {scale:.3g}")


def build_cases(label: str, shape: tuple[int, ...], device: str, compile_: bool) -> list[Case]:
    import spotlight_ops
    from spotlight_ops import reference

    pred, target = make_batch(shape, device)
    numel = pred.numel()
    esize = pred.element_size()
    n = shape[0]
    src, dst = torch.empty_like(target).copy_(target), torch.empty_like(target)

    # The reference: float64 loss, gradient and thresholds.
    thr_ref = reference.otsu_threshold(target.double().cpu()).to(device)
    p64 = pred.detach().double().requires_grad_(True)
    ref_loss = reference.loss(p64, target.double(), thr_ref.double())
    ref_loss.backward()
    ref_grad = p64.grad
    thr = spotlight_ops.otsu_threshold(target).detach()  # given threshold, float32
    width = float((target.reshape(n, -1).amax(1) - target.reshape(n, -1).amin(1)).max()) / BINS

    def check_loss(name: str, loss_fn: Callable[[], torch.Tensor]) -> None:
        pred.grad = None
        value = loss_fn()
        value.backward()
        check_close(f"{name} loss", value, ref_loss, 1e-4)
        check_close(f"{name} gradient", pred.grad, ref_grad, 1e-3)

    def check_thr(name: str, got) -> None:
        got = torch.as_tensor(np.asarray(got) if not isinstance(got, torch.Tensor) else got).double().cpu()
        err = (got - thr_ref.cpu()).abs().max().item()
        if not err <= width * 1.0001:
            raise SystemExit(f"bench_loss: {name} Otsu thresholds are {err:.3g} from the reference (bin {width:.3g})")

    fused_otsu = lambda: spotlight_ops.loss(pred, target, None, LAM, K, EPS, BINS)  # noqa: E731
    fused_given = lambda: spotlight_ops.loss(pred, target, thr, LAM, K, EPS, BINS)  # noqa: E731
    eager_otsu = lambda: loss_eager(pred, target)  # noqa: E731
    eager_given = lambda: loss_eager(pred, target, thr)  # noqa: E731
    losses = {
        ("loss fwd+bwd, Otsu", "spotlight"): fused_otsu,
        ("loss fwd+bwd, Otsu", "eager PyTorch"): eager_otsu,
        ("loss fwd+bwd, given T", "spotlight"): fused_given,
        ("loss fwd+bwd, given T", "eager PyTorch"): eager_given,
    }
    compile_s = {}
    if compile_:
        import torch._inductor.config as inductor

        compiled = torch.compile(loss_eager, dynamic=False)
        cached = getattr(inductor, "force_disable_caches", None)
        if cached is not None:
            inductor.force_disable_caches = True  # a cold compile: no cache from an earlier run
        try:
            for group, args in (("loss fwd+bwd, Otsu", ()), ("loss fwd+bwd, given T", (thr,))):
                fn = (lambda a=args: compiled(pred, target, *a))
                t0 = time.perf_counter()
                pred.grad = None
                fn().backward()  # compiles forward and backward
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                compile_s[group] = time.perf_counter() - t0
                losses[(group, "torch.compile")] = fn
        finally:
            if cached is not None:
                inductor.force_disable_caches = cached

    cases = []
    for (group, impl), fn in losses.items():
        check_loss(f"{impl} ({group})", fn)
        cases.append(Case(group, impl, fwd_bwd(fn, pred), 5 * numel * esize,
                          compile_s=compile_s.get(group) if impl == "torch.compile" else None))
    module = spotlight_ops.SpotlightLoss()  # the paper's loss as a criterion: its collapse guard on
    check_loss("SpotlightLoss() module", lambda: module(pred, target))
    cases.append(Case("loss fwd+bwd, Otsu", "SpotlightLoss() module, collapse guard on",
                      fwd_bwd(lambda: module(pred, target), pred), 5 * numel * esize))
    cases += trained_cases(pred, target, 5 * numel * esize)
    cases += option_cases(pred, target, 5 * numel * esize, every_option=label.startswith(("train", "quick")))

    x_host = target.reshape(n, *target.shape[1:]).squeeze(1).cpu().numpy()
    check_thr("spotlight", spotlight_ops.otsu_threshold(target))
    check_thr("eager PyTorch", otsu_eager(target))
    check_thr("scikit-image", otsu_skimage_batch(x_host))
    check_thr("NumPy", otsu_numpy_batch(x_host))
    cases += [
        Case("Otsu threshold", "spotlight", lambda: spotlight_ops.otsu_threshold(target), numel * esize),
        Case("Otsu threshold", "eager PyTorch", lambda: otsu_eager(target), numel * esize),
        Case("Otsu threshold", "scikit-image", lambda: otsu_skimage_batch(x_host), numel * esize, host=True),
        Case("Otsu threshold", "NumPy", lambda: otsu_numpy_batch(x_host), numel * esize, host=True),
        Case("memory copy", "torch copy_", lambda: dst.copy_(src), 2 * numel * esize),
        # torch's copy_ on one thread: on a busy machine the multi-threaded
        # copy can be the slower of the two; the floor is the faster.
        Case("memory copy", "torch copy_, 1 thread", lambda: one_thread(lambda: dst.copy_(src)), 2 * numel * esize),
        # The same copy into a new tensor, which like a gradient is allocated
        # per call: on large tensors, its first-touch page faults are the cost.
        Case("memory copy", "torch clone (new tensor)", lambda: src.clone(), 2 * numel * esize),
    ]
    return cases


TRAINED = "trained objective fwd+bwd, T = 0"


def trained_cases(pred: torch.Tensor, target: torch.Tensor, nbytes: int) -> list[Case]:
    """The objective spotlight train minimises (preset "trained"), fused, against the composite the trainer
    used to build (``lam * mse_loss + (1 - lam) *`` the fused loss at lam 0: two graphs, two passes), the
    same objective in eager PyTorch, and VisCy's own SpotlightLoss (its objective, checked against the
    preset "viscy"), each checked against the float64 reference first."""
    import spotlight_ops
    from spotlight_ops import reference

    p64 = pred.detach().double().requires_grad_(True)

    def reference_of(**options):
        p64.grad = None
        value = reference.loss(p64, target.double(), **options)
        value.backward()
        return value.detach(), p64.grad.clone()

    def check(name, fn, want):
        pred.grad = None
        value = fn()
        value.backward()
        check_close(f"{name} loss", value, want[0], 1e-4)
        check_close(f"{name} gradient", pred.grad, want[1], 1e-3)

    trained = reference_of(**spotlight_ops.presets.preset_options("trained"))
    criterion = spotlight_ops.SpotlightLoss.from_preset("trained")
    impls = {
        "spotlight": lambda: spotlight_ops.loss_preset(pred, target, "trained"),
        "SpotlightLoss.from_preset(\"trained\"), guard on": lambda: criterion(pred, target),
        "mse_loss + fused Dice (two ops)": lambda: LAM * F.mse_loss(pred, target) + (1 - LAM) * spotlight_ops.loss(
            pred, target, 0.0, 0.0, K, EPS, BINS),
        "eager PyTorch": lambda: trained_eager(pred, target),
    }
    cases = []
    for impl, fn in impls.items():
        check(impl, fn, trained)
        cases.append(Case(TRAINED, impl, fwd_bwd(fn, pred), nbytes))
    viscy = viscy_loss_class()
    if viscy is not None:
        theirs = viscy(lambda_mse=LAM, sigmoid_k=K, eps=EPS, fg_threshold=0.0)
        check("VisCy SpotlightLoss", lambda: theirs(pred, target),
              reference_of(**spotlight_ops.presets.preset_options("viscy")))
        cases.append(Case(TRAINED, "VisCy SpotlightLoss (its objective)", fwd_bwd(lambda: theirs(pred, target), pred),
                          nbytes))
    return cases


OPTIONS_GIVEN = "options fwd+bwd, T = 0"
OPTIONS_OTSU = "options fwd+bwd, Otsu"
MSE_IMPL = "mse_loss (torch)"
VISCY_IMPL = "VisCy SpotlightLoss"
DEFAULT_IMPL = "default (spotlight)"


def option_sets(pred: torch.Tensor, target: torch.Tensor, every_option: bool) -> dict[str, dict]:
    """The options timed against the default: every preset, and (``every_option``) each option of SPEC 11 alone."""
    import spotlight_ops

    sets = {DEFAULT_IMPL: {}}
    sets.update({f"preset {name}": {k: v for k, v in spotlight_ops.presets.PRESETS[name].items() if k != "threshold"}
                 for name in ("trained", "authors", "viscy")})
    if every_option:
        sets.update({
            "soft_mask unclamped": {"soft_mask": "unclamped"},
            "soft_mask viscy": {"soft_mask": "viscy"},
            "mask_rule greater_equal": {"mask_rule": "greater_equal"},
            "given mask": {"mask": target > 0},
            "dice_denominator squared": {"dice_denominator": "squared"},
            "empty_pools viscy": {"empty_pools": "viscy"},
            "per_channel": {"per_channel": True},
            "mse_normalization all": {"mse_normalization": "all"},
            "reduction mean": {"reduction": "mean"},
            "reduction sum": {"reduction": "sum"},
            "reduction none": {"reduction": "none"},
            "mse_term plain": {"mse_term": "plain"},
        })
    return sets


def option_cases(pred: torch.Tensor, target: torch.Tensor, nbytes: int, every_option: bool) -> list[Case]:
    """Every preset (and, with ``every_option``, each option alone) in both threshold modes (T = 0, the presets'
    threshold on Otsu-standardized targets, and Otsu per sample), with ``mse_loss`` and VisCy's own
    SpotlightLoss (``fg_threshold`` 0 and None) in the same rounds: each row of the options table is read
    against the default, ``mse_loss`` and VisCy of its mode. Each is checked against the float64 reference."""
    import spotlight_ops
    from spotlight_ops import reference

    p64 = pred.detach().double().requires_grad_(True)

    def scalar(value: torch.Tensor) -> torch.Tensor:  # reduction "none": the sum of the pools' losses
        return value if value.dim() == 0 else value.sum()

    def check(name: str, fn, ref_fn) -> None:
        p64.grad = None
        want = scalar(ref_fn())
        want.backward()
        pred.grad = None
        value = scalar(fn())
        value.backward()
        check_close(f"{name} loss", value, want.detach(), 1e-4)
        check_close(f"{name} gradient", pred.grad, p64.grad, 1e-3)

    cases = [Case(OPTIONS_GIVEN, MSE_IMPL, fwd_bwd(lambda: F.mse_loss(pred, target), pred), nbytes)]
    viscy = viscy_module()
    for group, threshold in ((OPTIONS_GIVEN, 0.0), (OPTIONS_OTSU, None)):
        for name, options in option_sets(pred, target, every_option).items():
            fn = (lambda o=options, t=threshold: scalar(spotlight_ops.loss(pred, target, t, **o)))
            check(f"{name} ({group})", fn,
                  lambda o=options, t=threshold: reference.loss(p64, target.double(), t, **o))
            cases.append(Case(group, name, fwd_bwd(fn, pred), nbytes))
        if viscy is not None:
            theirs = viscy.SpotlightLoss(lambda_mse=LAM, sigmoid_k=K, eps=EPS, fg_threshold=threshold)
            viscy_options = {k: v for k, v in spotlight_ops.presets.PRESETS["viscy"].items() if k != "threshold"}
            # VisCy's Otsu bins with torch.histc (not SPEC 1's binning) and sets the mask only: its soft mask
            # stays centred at 0. Its loss is checked as that: its mask given, T = 0.
            their_mask = None if threshold is not None else target >= viscy._otsu_threshold_batch(target.detach())
            check(f"{VISCY_IMPL} ({group})", lambda m=theirs: m(pred, target),
                  lambda m=their_mask: reference.loss(p64, target.double(), 0.0, mask=m, **viscy_options))
            cases.append(Case(group, VISCY_IMPL, fwd_bwd(lambda m=theirs: m(pred, target), pred), nbytes))
    return cases


def options_table(results: list[tuple[str, list[Case]]]) -> list[str]:
    """Each option set against the default of its threshold mode, ``mse_loss`` fwd+bwd and VisCy's own
    SpotlightLoss of the same mode, all from the same rounds."""
    lines = [
        "| shape | threshold | options | median ms | / default | / `mse_loss` | VisCy / this | runs |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, cases in results:
        mse = next((c for c in cases if c.group == OPTIONS_GIVEN and c.impl == MSE_IMPL), None)
        if mse is None:
            continue
        for group, mode in ((OPTIONS_GIVEN, "T = 0"), (OPTIONS_OTSU, "Otsu")):
            default = next(c for c in cases if c.group == group and c.impl == DEFAULT_IMPL)
            viscy = next((c for c in cases if c.group == group and c.impl == VISCY_IMPL), None)
            for c in cases:
                if c.group != group:
                    continue
                theirs = f"{viscy.median / c.median:.1f}" if viscy is not None and c is not viscy else ""
                lines.append(f"| {label} | {mode} | {c.impl} | {c.median * 1e3:.3f} | {c.median / default.median:.2f} | "
                             f"{c.median / mse.median:.2f} | {theirs} | {len(c.times)} |")
        lines.append(f"| {label} | | {MSE_IMPL} fwd+bwd | {mse.median * 1e3:.3f} | | 1.00 | | {len(mse.times)} |")
    return lines


def option_targets(results: list[tuple[str, list[Case]]]) -> list[str]:
    """The targets of the options table: every option set within 1.2x of the default of its mode, Otsu within
    1.3x of T = 0 (default options)."""
    out = []
    for label, cases in results:
        get = {(c.group, c.impl): c for c in cases}
        if (OPTIONS_GIVEN, DEFAULT_IMPL) not in get:
            continue
        for group, mode in ((OPTIONS_GIVEN, "T = 0"), (OPTIONS_OTSU, "Otsu")):
            default = get[(group, DEFAULT_IMPL)]
            ours = [c for c in cases if c.group == group and c.impl not in (DEFAULT_IMPL, VISCY_IMPL, MSE_IMPL)]
            worst = max(ours, key=lambda c: c.median)
            r = worst.median / default.median
            out.append(f"| {label} | worst option set vs the default, {mode} ({worst.impl}) | {r:.2f}x | <= 1.2x | "
                       f"{'met' if r <= 1.2 else 'NOT met'} |")
        r = get[(OPTIONS_OTSU, DEFAULT_IMPL)].median / get[(OPTIONS_GIVEN, DEFAULT_IMPL)].median
        out.append(f"| {label} | default, Otsu vs T = 0 | {r:.2f}x | <= 1.3x | {'met' if r <= 1.3 else 'NOT met'} |")
    return out


def time_cases(cases: list[Case], device: str, warmup: int, repeats: int, slow_repeats: int,
               slow_s: float = 0.25) -> None:
    """Round-robin timing: each round times one call of every case, right after
    an untimed call of the same case (so that no case pays for the memory the
    previous case left the allocator in: a large temporary of another shape
    costs page faults on its next allocation). Cases slower than `slow_s` per
    call get `slow_repeats` rounds."""
    timer = Timer(device)
    host_timer = Timer("cpu")
    for _ in range(warmup):
        for c in cases:
            c.fn()
    for r in range(repeats):
        for c in cases:
            if r >= slow_repeats and c.times and statistics.median(c.times) > slow_s:
                continue
            c.fn()
            c.times.append((host_timer if c.host else timer)(c.fn))


# --------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------
REFERENCE_IMPL = "spotlight"


def table(results: list[tuple[str, list[Case]]]) -> list[str]:
    lines = [
        "| shape | computation | implementation | median ms | spotlight is x faster | GB/s | % of copy GB/s | runs |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, cases in results:
        copy = copy_floor(cases)
        copy_bw = copy.bytes / copy.median
        for c in cases:
            ours = next((o for o in cases if o.group == c.group and o.impl == REFERENCE_IMPL), None)
            speedup = f"{c.median / ours.median:.1f}" if ours is not None and c is not ours else ""
            bw = c.bytes / c.median
            impl = c.impl + (f" (compile {c.compile_s:.1f} s)" if c.compile_s is not None else "")
            lines.append(f"| {label} | {c.group} | {impl} | {c.median * 1e3:.3f} | {speedup} | {bw / 1e9:.2f} | "
                         f"{100 * bw / copy_bw:.0f} | {len(c.times)} |")
    return lines


def targets(results: list[tuple[str, list[Case]]]) -> list[str]:
    """The speed targets (ratios against the peers), on the shapes they are stated for."""

    def get(cases, group, impl):
        return next((c for c in cases if c.group == group and c.impl == impl), None)

    out = []
    for label, cases in results:
        ours = get(cases, "loss fwd+bwd, Otsu", "spotlight")
        given = get(cases, "loss fwd+bwd, given T", "spotlight")
        copy = copy_floor(cases)
        checks = []
        if label.startswith("train batch"):
            for impl, want in (("eager PyTorch", 10.0), ("torch.compile", 3.0)):
                peer = get(cases, "loss fwd+bwd, Otsu", impl)
                if peer is not None:
                    r = peer.median / ours.median
                    checks.append((f"loss fwd+bwd with Otsu vs {impl}", f"{r:.1f}x", f">= {want:.0f}x", r >= want))
        if label.endswith("60x256x256"):
            sk = get(cases, "Otsu threshold", "scikit-image")
            r = sk.median / get(cases, "Otsu threshold", "spotlight").median
            checks.append(("Otsu vs scikit-image", f"{r:.1f}x", ">= 20x", r >= 20))
        frac = (given.bytes / given.median) / (copy.bytes / copy.median)
        checks.append((f"loss fwd+bwd with given T, share of copy bandwidth ({copy.impl})", f"{100 * frac:.0f}%",
                       ">= 40%", frac >= 0.4))
        out += [f"| {label} | {what} | {got} | {want} | {'met' if ok else 'NOT met'} |"
                for what, got, want, ok in checks]
    return ["| shape | ratio | measured | target | |", "|---|---|---:|---:|---|"] + out


def machine(device: str) -> list[str]:
    import skimage

    from spotlight_ops.machine import cpu_model, load_average

    cpu = cpu_model()
    load = " ".join(f"{x:.2f}" for x in load_average()) if load_average() else "n/a"

    lines = [
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- command: `{' '.join([Path(sys.executable).name] + sys.argv)}`",
        f"- CPU: {cpu}, {os.cpu_count()} logical cores; torch threads: {torch.get_num_threads()}",
        f"- load average (1, 5, 15 min) at the end of the run: {load}",
        f"- torch {torch.__version__}, NumPy {np.__version__}, scikit-image {skimage.__version__}, "
        f"Python {platform.python_version()}",
        f"- data: {source_volume()[1]}",
        f"- THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', '(unset)')} (torch's CPU allocator "
        "with transparent huge pages: `--thp`)",
    ]
    if device.startswith("cuda"):
        lines.append(f"- GPU: {torch.cuda.get_device_name()} (NumPy and scikit-image run on the CPU)")
    return lines


def write_doc(path: Path, section: list[str]) -> None:
    body = "\n".join([BEGIN, *section, END])
    if path.is_file():
        text = path.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            text = head + body + rest.split(END, 1)[1]
        else:
            text = text.rstrip() + "\n\n" + body + "\n"
    else:
        text = "# Benchmarks\n\n" + body + "\n"
    path.write_text(text)


# --------------------------------------------------------------------------
# Two builds of the op library against each other (--baseline-library).
# --------------------------------------------------------------------------
def library_worker(device: str, quick: bool) -> None:
    """Builds the fused-loss cases with the library of $SPOTLIGHT_OPS_LIBRARY, prints
    their names as one JSON line, then times case i (second of two calls) for each
    line "i" read, printing the seconds."""
    import json

    # The library alone, and the op called positionally: the Python package is this checkout's
    # (its fake kernels may name ops an older library lacks); the package only for the presets.
    torch.ops.load_library(os.environ["SPOTLIGHT_OPS_LIBRARY"])
    op = torch.ops.spotlight.loss
    variants = "soft_mask" in str(op.default._schema)
    if variants:
        import spotlight_ops
    cases = []
    for label, shape in (QUICK_SHAPES if quick else SHAPES).items():
        pred, target = make_batch(shape, device)
        thr = torch.ops.spotlight.otsu_threshold(target, BINS).detach()
        cases.append((f"{label}, Otsu", fwd_bwd(lambda p=pred, t=target: op(p, t, None, LAM, K, EPS, BINS), pred)))
        cases.append((f"{label}, given T", fwd_bwd(lambda p=pred, t=target, th=thr: op(p, t, th, LAM, K, EPS, BINS),
                                                   pred)))
        presets = ("authors", "viscy") if variants else ()
        if "mse_term" in str(op.default._schema):  # this build only: the trained objective
            presets += ("trained",)
        for preset in presets:  # the op itself, with the preset's options: the same call for either library
            options = dict(spotlight_ops.presets.PRESETS[preset])
            given = options.pop("threshold", None)
            cases.append((f"{label}, preset {preset}", fwd_bwd(
                lambda p=pred, t=target, th=given, o=options: op(p, t, th, **o), pred)))
    timer = Timer(device)
    print(json.dumps([name for name, _ in cases]), flush=True)
    for line in sys.stdin:
        fn = cases[int(line)][1]
        fn()
        print(timer(fn), flush=True)


def compare_libraries(args) -> None:
    import json
    import subprocess

    from spotlight_ops._library import library_path  # (importing the package loads this build's library)

    libraries = {"baseline": str(args.baseline_library), "this build": str(library_path())}
    workers = {}
    for name, lib in libraries.items():
        env = dict(os.environ, SPOTLIGHT_OPS_LIBRARY=lib)
        cmd = [sys.executable, __file__, "--library-worker", "--device", args.device]
        if args.threads > 0:
            cmd += ["--threads", str(args.threads)]
        workers[name] = subprocess.Popen(cmd + (["--quick"] if args.quick else []), env=env, text=True,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    names = {name: json.loads(w.stdout.readline()) for name, w in workers.items()}
    repeats, warmup = (5, 1) if args.quick else (args.repeats, args.warmup)
    times = {name: {case: [] for case in cases} for name, cases in names.items()}
    order = list(workers)
    for r in range(warmup + repeats):
        for i, case in enumerate(names["this build"]):
            for name in (order if (r + i) % 2 == 0 else order[::-1]):  # alternate who goes first
                if case not in names[name]:
                    continue
                w = workers[name]
                w.stdin.write(f"{names[name].index(case)}\n")
                w.stdin.flush()
                t = float(w.stdout.readline())
                if r >= warmup:
                    times[name][case].append(t)
    for w in workers.values():
        w.stdin.close()
        w.wait()
    print(f"\nfused loss fwd+bwd, medians of {repeats} alternating rounds ({args.device}); baseline: "
          f"{libraries['baseline']}; this build: {libraries['this build']}\n")
    print("| case | baseline ms | this build ms | this build / baseline |")
    print("|---|---:|---:|---:|")
    for case in names["this build"]:
        new = statistics.median(times["this build"][case]) * 1e3
        if times["baseline"].get(case):
            old = statistics.median(times["baseline"][case]) * 1e3
            print(f"| {case} | {old:.3f} | {new:.3f} | {new / old:.3f} |")
        else:
            print(f"| {case} | (none) | {new:.3f} | |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--quick", action="store_true", help="smoke run: small shapes, few repeats")
    ap.add_argument("--repeats", type=int, default=21, help="timed rounds (default 21)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    ap.add_argument("--thp", action="store_true",
                    help="set THP_MEM_ALLOC_ENABLE=1: huge pages for large tensors (fewer first-touch page faults)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's default)")
    ap.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    ap.add_argument("--shapes", default="", help="time only the shapes whose label starts with one of these "
                    "comma-separated words (e.g. 'train'; default: every shape)")
    ap.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md",
                    help="page to write the table to (default docs/benchmarks.md)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--baseline-library", type=Path,
                    help="another build of libspotlight_ops.so: time the fused loss of both, alternately")
    ap.add_argument("--library-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.library_worker:
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        return library_worker(args.device, args.quick)
    if args.baseline_library is not None:
        return compare_libraries(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_loss: --device cuda, but torch sees no CUDA device")

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shapes:
        words = tuple(w.strip() for w in args.shapes.split(",") if w.strip())
        shapes = {label: shape for label, shape in shapes.items() if label.startswith(words)}
        if not shapes:
            raise SystemExit(f"bench_loss: --shapes {args.shapes!r} names none of {', '.join(SHAPES)}")
    repeats, warmup = (3, 1) if args.quick else (args.repeats, args.warmup)
    results = []
    for i, (label, shape) in enumerate(shapes.items()):
        # torch.compile on the training batch, the shape it is meant for (and the first quick shape).
        compile_ = not args.no_compile and i == 0
        print(f"{label}: checking, compiling ...", flush=True)
        cases = build_cases(label, shape, args.device, compile_)
        print(f"{label}: timing {len(cases)} cases ...", flush=True)
        time_cases(cases, args.device, warmup, repeats, slow_repeats=max(3, repeats // 3))
        results.append((label, cases))
        del cases
    section = [
        "## Spotlight against its peers (`benchmarks/bench_loss.py`)",
        "",
        *machine(args.device),
        "",
        f"Medians over up to {repeats} round-robin rounds after {warmup} warm-up rounds (cases slower than 0.25 s "
        "per call get fewer rounds: see `runs`); in a round, every case is called twice and the second call is "
        "timed. torch.compile's time to compile (cold, caches off) is in parentheses, not in the medians. "
        "float32, reduction \"batch\", defaults of SPEC 10, except the trained objective's rows (preset "
        "\"trained\": the MSE over every voxel, T = 0). "
        "\"spotlight is x faster\" is the peer's median over spotlight's for the same computation. "
        "GB/s counts bytes read + written once per call (loss forward+backward: 5 tensors; Otsu: 1; copy: 2); "
        "\"% of copy GB/s\" is against the faster of the two torch copy_ rows.",
        "",
        *table(results),
        "",
        "### Presets and options",
        "",
        "Each preset (and, on the training batch, each option of SPEC 11 alone) fwd+bwd in both threshold "
        "modes (T = 0, the presets' threshold on Otsu-standardized targets, and Otsu per sample), timed in the "
        "same rounds as the table above. \"/ default\" is against the default options of the same mode, "
        "\"/ `mse_loss`\" against `torch.nn.functional.mse_loss` fwd+bwd, \"VisCy / this\" is VisCy's own "
        "`SpotlightLoss` of the same mode (`fg_threshold` 0 or None) over this row.",
        "",
        *options_table(results),
        "",
        "### Speed targets",
        "",
        *targets(results),
        *option_targets(results),
    ]
    print("\n".join(section))
    if not args.no_write:
        write_doc(args.output, section)
        print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()

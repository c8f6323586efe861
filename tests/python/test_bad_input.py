"""Every op rejects bad input up front with an error naming the argument
(SPEC section 8): one table, each row asserting the error type and message."""

from __future__ import annotations

import pytest
import torch

import spotlight_ops as so

P = torch.rand(2, 3, 4)
Y = torch.rand(2, 3, 4)
M = Y > 0.5
ops = torch.ops.spotlight

BAD = [
    # (id, call, exception, message)
    ("pred int", lambda: so.loss(P.long(), Y), TypeError, "pred must be float32, float64, float16 or bfloat16"),
    ("pred bool", lambda: so.loss(P > 0, Y), TypeError, "pred must be float32"),
    ("target int", lambda: so.loss(P, Y.int()), TypeError, "target must be float32"),
    ("target int64", lambda: so.loss(P, Y.long()), TypeError, "target must be float32"),
    ("shape mismatch", lambda: so.loss(P, Y[:, :2]), ValueError, "target must have the shape of pred"),
    ("0-dim pred", lambda: so.loss(torch.tensor(1.0), torch.tensor(1.0)), ValueError, "pred must have a batch"),
    ("no samples", lambda: so.loss(P[:0], Y[:0]), ValueError, "at least one sample"),
    ("no voxels", lambda: so.loss(P[:, :0], Y[:, :0]), ValueError, "at least one sample of at least one voxel"),
    ("sparse", lambda: so.loss(P.to_sparse(), Y.to_sparse()), TypeError, "pred must be a dense"),
    ("sparse mask", lambda: so.masked_mse(P, Y, M.to_sparse()), TypeError, "mask must be a dense"),
    ("k = 1", lambda: so.loss(P, Y, k=1.0), ValueError, r"k must lie in the open interval \(-1, 1\), got 1"),
    ("k = -1", lambda: so.loss(P, Y, k=-1.0), ValueError, "k must lie in the open interval"),
    ("k nan", lambda: so.loss(P, Y, k=float("nan")), ValueError, "k must lie"),
    ("lam < 0", lambda: so.loss(P, Y, lam=-0.1), ValueError, r"lam must lie in \[0, 1\]"),
    ("lam > 1", lambda: so.loss(P, Y, lam=1.5), ValueError, r"lam must lie in \[0, 1\]"),
    ("eps < 0", lambda: so.loss(P, Y, eps=-1e-6), ValueError, "eps must be finite and >= 0"),
    ("eps inf", lambda: so.loss(P, Y, eps=float("inf")), ValueError, "eps must be finite"),
    ("bins 1", lambda: so.loss(P, Y, bins=1), ValueError, r"bins must be an integer in \[2"),
    ("bins huge", lambda: so.loss(P, Y, bins=1 << 30), ValueError, "bins must be"),
    ("bins 2.5", lambda: so.loss(P, Y, bins=2.5), ValueError, r"^spotlight: bins must be an integer in \[2, 65536\], got 2.5$"),
    ("bins 2**63", lambda: so.loss(P, Y, bins=2 ** 63), ValueError,
     r"^spotlight: bins must be an integer in \[2, 65536\], got 9223372036854775808$"),
    ("bins 2**24", lambda: so.loss(P, Y, bins=2 ** 24), ValueError, r"^spotlight: bins must be an integer in \[2, 65536\], got 16777216$"),
    ("lam string", lambda: so.loss(P, Y, lam="half"), ValueError, r"^spotlight: lam must lie in \[0, 1\], got half$"),
    ("threshold string", lambda: so.loss(P, Y, "0.5"), TypeError,
     r"^spotlight: threshold must be None, a number or a tensor of 1 or N values, got '0.5'$"),
    ("mse_term", lambda: so.loss(P, Y, mse_term="both"), ValueError, "^spotlight: mse_term must be 'masked' or 'plain', got 'both'$"),
    ("per_channel int", lambda: so.loss(P, Y, per_channel=1), ValueError, "^spotlight: per_channel must be True or False, got 1$"),
    ("reduction", lambda: so.loss(P, Y, reduction="max"), ValueError, "reduction must be one of 'batch', 'mean', 'sum', 'none', got 'max'"),
    ("mse_normalization", lambda: so.loss(P, Y, mse_normalization="bg"), ValueError, "mse_normalization must be 'foreground' or 'all', got 'bg'"),
    ("threshold length", lambda: so.loss(P, Y, torch.zeros(3)), ValueError, r"threshold must be a 0-dim tensor or hold 1 value or one value per sample \(2\)"),
    ("threshold 2-d", lambda: so.loss(P, Y, torch.zeros(2, 1)), ValueError, "threshold must be a 0-dim tensor"),
    ("threshold bool", lambda: so.loss(P, Y, torch.zeros(2, dtype=torch.bool)), TypeError, "threshold must be a real-valued"),
    ("threshold device", lambda: so.loss(P, Y, torch.zeros(2, device="meta")), RuntimeError, "threshold must be on the device of pred"),
    ("threshold grad", lambda: so.loss(P, Y, torch.zeros(2, requires_grad=True)), ValueError, "threshold must not require grad"),
    ("soft_mask", lambda: so.loss(P, Y, soft_mask="hard"), ValueError, "soft_mask must be one of 'clamped', 'unclamped', 'viscy', got 'hard'"),
    ("unclamped k > 0", lambda: so.loss(P, Y, k=0.5, soft_mask="unclamped"), ValueError, "k must be <= 0 for soft_mask 'unclamped'"),
    ("viscy k > 0", lambda: so.loss(P, Y, k=0.1, soft_mask="viscy"), ValueError, "k must be <= 0 for soft_mask 'viscy'"),
    ("mask_rule", lambda: so.loss(P, Y, mask_rule=">="), ValueError, "mask_rule must be 'greater' or 'greater_equal', got '>='"),
    ("dice_denominator", lambda: so.loss(P, Y, dice_denominator="cubic"), ValueError, "dice_denominator must be 'linear' or 'squared'"),
    ("empty_pools", lambda: so.loss(P, Y, empty_pools="monai"), ValueError, "empty_pools must be 'spotlight' or 'viscy'"),
    ("loss mask float", lambda: so.loss(P, Y, mask=M.float()), TypeError, "mask must be a bool tensor, got Float"),
    ("loss mask shape", lambda: so.loss(P, Y, mask=M[:, :1]), ValueError, "mask must have the shape of target"),
    ("loss mask device", lambda: so.loss(P, Y, mask=M.to("meta")), RuntimeError, "mask must be on the device of target"),
    ("loss mask sparse", lambda: so.loss(P, Y, mask=M.to_sparse()), TypeError, "mask must be a dense"),
    ("per_channel 1-d", lambda: so.loss(P[:, 0, 0], Y[:, 0, 0], per_channel=True), ValueError, r"per_channel needs pred of at least 2 dims"),
    ("preset name", lambda: so.SpotlightLoss.from_preset("monai"), ValueError, "preset must be one of 'spotlight', 'trained', 'authors', 'viscy', got 'monai'"),
    ("preset override", lambda: so.SpotlightLoss.from_preset("viscy", soft_mask="x"), ValueError, "soft_mask must be one of"),
    ("module soft_mask k", lambda: so.SpotlightLoss(k=0.5, soft_mask="viscy"), ValueError, "k must be <= 0 for soft_mask"),
    ("functional preset", lambda: so.loss_preset(P, Y, "fnet"), ValueError, "preset must be one of"),
    ("otsu int", lambda: so.otsu_threshold(torch.ones(2, 3, dtype=torch.int32)), TypeError, "x must be float32"),
    ("otsu bins", lambda: so.otsu_threshold(Y, 1), ValueError, "bins must be"),
    ("otsu bins 2.5", lambda: so.otsu_threshold(Y, 2.5), ValueError, r"^spotlight: bins must be an integer in \[2, 65536\], got 2.5$"),
    ("otsu bins 2**63", lambda: so.otsu_threshold(Y, 2 ** 63), ValueError,
     r"^spotlight: bins must be an integer in \[2, 65536\], got 9223372036854775808$"),
    ("otsu bins 2**24, 26.8 GB", lambda: so.otsu_threshold(torch.rand(200, 262145), bins=2 ** 24), ValueError,
     r"^spotlight: bins must be an integer in \[2, 65536\], got 16777216$"),
    ("standardize bins 2.5", lambda: so.otsu_standardize(Y, 2.5), ValueError, r"bins must be an integer in \[2, 65536\]"),
    ("otsu empty", lambda: so.otsu_threshold(torch.empty(0, 3)), ValueError, "x must hold at least one sample"),
    ("otsu 0-dim", lambda: so.otsu_threshold(torch.tensor(2.0)), ValueError, "x must have a batch dimension"),
    ("standardize int", lambda: so.otsu_standardize(torch.ones(2, 3, dtype=torch.uint8)), TypeError, "x must be float32"),
    ("standardize bins", lambda: so.otsu_standardize(Y, 0), ValueError, "bins must be"),
    ("sigmoid k", lambda: so.tunable_sigmoid(P, 2.0), ValueError, "k must lie in the open interval"),
    ("sigmoid int", lambda: so.tunable_sigmoid(torch.ones(3, dtype=torch.int64)), TypeError, "x must be float32"),
    ("mse mask float", lambda: so.masked_mse(P, Y, M.float()), TypeError, "mask must be a bool tensor"),
    ("mse mask shape", lambda: so.masked_mse(P, Y, M[:, :1]), ValueError, "mask must have the shape of pred"),
    ("mse reduction", lambda: so.masked_mse(P, Y, M, "foreground", "max"), ValueError, "reduction must be one of"),
    ("mse norm", lambda: so.masked_mse(P, Y, M, "none"), ValueError, "mse_normalization must be"),
    ("mse target shape", lambda: so.masked_mse(P, Y[:1], M), ValueError, "target must have the shape of pred"),
    ("dice mask int", lambda: so.soft_dice(P, M.int()), TypeError, "mask must be a bool tensor"),
    ("dice eps", lambda: so.soft_dice(P, M, -1.0), ValueError, "eps must be"),
    ("dice soft int", lambda: so.soft_dice(M.int(), M), TypeError, "soft must be float32"),
    ("dice mask device", lambda: so.soft_dice(P, M.to("meta")), RuntimeError, "mask must be on the device of soft"),
    ("module lam", lambda: so.SpotlightLoss(lam=2), ValueError, r"lam must lie in \[0, 1\]"),
    ("module k", lambda: so.SpotlightLoss(k=-1), ValueError, "k must lie in the open interval"),
    ("module reduction", lambda: so.SpotlightLoss(reduction="max"), ValueError, "reduction must be one of"),
    ("module bins", lambda: so.SpotlightLoss(bins=1.5), ValueError, "bins must be an integer"),
    ("module bins 2**63", lambda: so.SpotlightLoss(bins=2 ** 63), ValueError, r"^spotlight: bins must be an integer in \[2, 65536\], got 9223372036854775808$"),
    ("module threshold string", lambda: so.SpotlightLoss(threshold="0.0"), TypeError, "^spotlight: threshold must be None, a number or a tensor"),
    ("module eps inf", lambda: so.SpotlightLoss(eps=float("inf")), ValueError, "^spotlight: eps must be finite and >= 0, got inf$"),
]


@pytest.mark.parametrize("call,exc,message", [row[1:] for row in BAD], ids=[row[0] for row in BAD])
def test_bad_input_is_rejected_with_a_clear_error(call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def test_loss_checks_run_before_any_work():
    """An invalid k with an otherwise huge input fails at once, not after Otsu."""
    big = torch.empty(1, 1).expand(1, 1)  # cheap; the point is the order of checks
    with pytest.raises(ValueError, match="k must lie"):
        so.loss(big, big, k=5.0)


def test_missing_library_import_error_says_how_to_rebuild(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, SPOTLIGHT_OPS_LIBRARY=str(tmp_path / "missing.so"))
    out = subprocess.run([sys.executable, "-c", "import spotlight_ops"], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "was not found" in out.stderr and "pip install --no-build-isolation ." in out.stderr


def test_library_built_for_another_torch_is_refused(tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    from spotlight_ops._library import library_path

    lib = tmp_path / "libspotlight_ops.so"
    shutil.copy(library_path(), lib)
    (tmp_path / "build_info.txt").write_text("1.0.0\n")
    env = dict(os.environ, SPOTLIGHT_OPS_LIBRARY=str(lib))
    out = subprocess.run([sys.executable, "-c", "import spotlight_ops"], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "was built for torch 1.0.0" in out.stderr

"""The loss in an ordinary training script: autocast, TorchScript, a threshold of one
value, second derivatives (a clear error, never a silent None), fake kernels that
check arguments as the real ones do."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import spotlight_ops as so
from conftest import DEVICES
from helpers import nuclei_like, packed_options, pred_like


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_autocast_computes_in_float32_like_pytorch_losses(device, low):
    y = nuclei_like(2, shape=(4, 12, 12))
    p = pred_like(y)
    net = torch.nn.Conv3d(1, 1, 1).to(device)
    with torch.no_grad():
        net.weight.fill_(1.0)
        net.bias.zero_()
    with torch.autocast(device, dtype=low):
        out = net(p.to(device))
        assert out.dtype == low
        got = so.SpotlightLoss(threshold=0.3)(out, y.to(device))
        mse = torch.nn.functional.mse_loss(out, y.to(device))
    assert got.dtype == mse.dtype == torch.float32
    want = so.loss(out.float(), y.to(device), 0.3)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    got.backward()
    assert net.weight.grad is not None and torch.isfinite(net.weight.grad).all()


def test_autocast_leaves_float64_alone():
    y = nuclei_like(2, shape=(4, 8, 8), dtype=torch.float64)
    p = pred_like(y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = so.loss(p, y)
    assert got.dtype == torch.float64
    assert got.item() == so.loss(p, y).item()


class Model(torch.nn.Module):
    def __init__(self, criterion):
        super().__init__()
        self.net = torch.nn.Conv3d(1, 1, 3, padding=1)
        self.criterion = criterion

    def forward(self, x, y):
        return self.criterion(self.net(x), y)


@pytest.mark.parametrize("criterion", [so.SpotlightLoss(), so.SpotlightLoss(threshold=0.2, reduction="none"),
                                       so.SpotlightLoss(threshold=torch.tensor([0.1, 0.3])),
                                       so.SpotlightLoss.from_preset("viscy"), so.SpotlightLoss.from_preset("authors")],
                         ids=["default", "float threshold", "tensor threshold", "viscy", "authors"])
def test_torchscript_of_a_model_holding_the_loss(criterion):
    y = nuclei_like(2, shape=(4, 8, 8))
    x = pred_like(y)
    model = Model(criterion)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x, y), model(x, y), rtol=0, atol=0)
    scripted(x, y).sum().backward()
    assert scripted.net.weight.grad is not None
    # The scripted criterion alone, with a threshold and a mask at call time.
    crit = torch.jit.script(criterion)
    m = y > 0.4
    torch.testing.assert_close(crit(x, y, 0.25, m), criterion(x, y, 0.25, m), rtol=0, atol=0)


def test_functional_loss_is_scriptable():
    fn = torch.jit.script(so.functional.loss)
    y = nuclei_like(2, shape=(4, 8, 8))
    p = pred_like(y)
    assert fn(p, y, 0.1, soft_mask="viscy").item() == so.loss(p, y, 0.1, soft_mask="viscy").item()


@pytest.mark.parametrize("device", DEVICES)
def test_threshold_of_one_value_broadcasts(device):
    y = nuclei_like(3, shape=(4, 8, 8)).to(device)
    p = pred_like(y.cpu()).to(device)
    one = so.loss(p, y, torch.tensor([0.2], device=device), reduction="none")
    torch.testing.assert_close(one, so.loss(p, y, 0.2, reduction="none"), rtol=0, atol=0)
    torch.testing.assert_close(one, so.loss(p, y, torch.full((3,), 0.2, device=device), reduction="none"),
                               rtol=0, atol=0)


@pytest.mark.parametrize("kw", [{}, dict(soft_mask="viscy", empty_pools="viscy", per_channel=True,
                                         reduction="mean")], ids=["default", "viscy"])
def test_second_derivative_is_a_clear_error_not_a_silent_none(kw):
    y = nuclei_like(2, shape=(4, 8, 8), dtype=torch.float64)
    p = pred_like(y).requires_grad_()
    (g,) = torch.autograd.grad(so.loss(p, y, 0.2, **kw), p, create_graph=True)
    assert g.requires_grad
    with pytest.raises(RuntimeError, match="second derivative of spotlight.loss is not implemented"):
        (g ** 2).sum().backward()
    # A first derivative under create_graph still has the right values.
    (g_plain,) = torch.autograd.grad(so.loss(p, y, 0.2, **kw), p)
    torch.testing.assert_close(g.detach(), g_plain, rtol=0, atol=0)


# --- fake kernels check arguments as the real ones do ------------------------------------------


def _bad_loss_calls():
    P, Y = torch.rand(2, 3, 4), torch.rand(2, 3, 4)
    M = Y > 0.5
    return [
        ("shape", (P, Y[:, :, :3]), {}),
        ("target dtype", (P, Y.int()), {}),
        ("bins 2**24", (P, Y), dict(bins=2 ** 24)),
        ("mse_term", (P, Y), dict(mse_term="both")),
        ("int", (P.long(), Y.long()), {}),
        ("k", (P, Y), dict(k=5.0)),
        ("lam", (P, Y), dict(lam=2.0)),
        ("eps", (P, Y), dict(eps=-1.0)),
        ("bins", (P, Y), dict(bins=1)),
        ("reduction", (P, Y), dict(reduction="max")),
        ("norm", (P, Y), dict(mse_normalization="x")),
        ("threshold", (P, Y, torch.zeros(3)), {}),
        ("soft_mask", (P, Y), dict(soft_mask="x")),
        ("k for viscy", (P, Y), dict(k=0.5, soft_mask="viscy")),
        ("mask dtype", (P, Y), dict(mask=M.float())),
        ("mask shape", (P, Y), dict(mask=M[:1])),
        ("no samples", (P[:0], Y[:0]), {}),
        ("0-dim", (P[0, 0, 0], Y[0, 0, 0]), {}),
        ("per_channel", (P[:, 0, 0], Y[:, 0, 0]), dict(per_channel=True)),
    ]


@pytest.mark.parametrize("name,args,kw", _bad_loss_calls(), ids=[c[0] for c in _bad_loss_calls()])
def test_fake_kernel_raises_the_real_kernels_error(name, args, kw):
    with pytest.raises(Exception) as real:
        torch.ops.spotlight.loss(*args, **kw)
    with FakeTensorMode(allow_non_fake_inputs=False) as mode:
        fake_args = tuple(mode.from_tensor(a) for a in args)
        fake_kw = {key: mode.from_tensor(v) if isinstance(v, torch.Tensor) else v for key, v in kw.items()}
        with pytest.raises(Exception) as fake:
            torch.ops.spotlight.loss(*fake_args, **fake_kw)
    assert fake.type is real.type, (fake.value, real.value)
    assert str(fake.value).splitlines()[0] == str(real.value).splitlines()[0]


def test_export_of_a_bad_k_fails_at_export():
    class Bad(torch.nn.Module):
        def forward(self, p, y):
            return so.loss(p, y, k=5.0)

    p = torch.rand(2, 3, 4)
    with pytest.raises(Exception, match="k must lie in the open interval"):
        torch.export.export(Bad(), (p, p))


def test_fake_kernel_shapes_of_the_variants():
    with FakeTensorMode() as mode:
        p = mode.from_tensor(torch.rand(2, 3, 4))
        assert torch.ops.spotlight.loss(p, p, reduction="none", per_channel=True).shape == (2, 3)
        assert torch.ops.spotlight.loss(p, p, reduction="none").shape == (2,)
        assert torch.ops.spotlight.loss(p, p, reduction="sum").shape == ()
        fwd = torch.ops.spotlight._loss_forward(p, p, None, None, packed_options(reduction="none", per_channel=True))
        assert fwd[1].shape == (6,) and fwd[2].shape == (6, 7)


def test_tunable_sigmoid_second_derivative_is_correct():
    gen = torch.Generator().manual_seed(4)
    # Away from 0 (the kink of |x|) and +-1 (the clamp); some outside [-1, 1].
    x = (0.1 + 0.8 * torch.rand(40, dtype=torch.float64, generator=gen)) * torch.where(
        torch.rand(40, generator=gen) > 0.5, 1.0, -1.0)
    x = torch.cat([x, torch.tensor([-1.5, 1.7], dtype=torch.float64)]).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda v: so.tunable_sigmoid(v, -0.8), (x,))
    # Values of the first derivative under create_graph are the kernel's.
    (g,) = torch.autograd.grad(so.tunable_sigmoid(x, -0.8).sum(), x, create_graph=True)
    (g_plain,) = torch.autograd.grad(so.tunable_sigmoid(x, -0.8).sum(), x)
    torch.testing.assert_close(g.detach(), g_plain, rtol=1e-14, atol=0)

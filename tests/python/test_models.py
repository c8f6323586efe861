"""F-net: layer layout, output shapes, parameter count by formula, argument validation."""

from __future__ import annotations

import pytest
import torch

import spotlight_ops  # noqa: F401  (loads the op library, as users do)
from spotlight_ops.models import FNet


def conv_params(c_in: int, c_out: int, kernel_voxels: int) -> int:
    return kernel_voxels * c_in * c_out + c_out  # weight + bias


def block_params(c_in: int, c_out: int) -> int:
    """Two 3x3x3 conv + BN (affine: 2 per channel)."""
    return conv_params(c_in, c_out, 27) + conv_params(c_out, c_out, 27) + 2 * 2 * c_out


def fnet_params(depth: int, base: int, c_in: int = 1, c_out: int = 1) -> int:
    channels = [base * 2 ** level for level in range(depth + 1)]
    total = block_params(c_in, channels[0])
    total += sum(block_params(channels[l - 1], channels[l]) for l in range(1, depth + 1))
    for l in range(depth):
        total += conv_params(channels[l], channels[l], 8) + 2 * channels[l]          # down + BN
        total += conv_params(channels[l + 1], channels[l], 8) + 2 * channels[l]      # up (transposed) + BN
        total += block_params(2 * channels[l], channels[l])                          # after the concat
    return total + conv_params(channels[0], c_out, 27)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth,base,c_in,c_out", [(0, 4, 1, 1), (1, 4, 1, 1), (2, 8, 1, 1), (3, 6, 2, 3), (4, 32, 1, 1)])
def test_parameter_count_matches_formula(depth, base, c_in, c_out):
    assert count(FNet(depth, base, c_in, c_out)) == fnet_params(depth, base, c_in, c_out)


def test_paper_default_parameter_count_is_documented():
    model = FNet()
    assert (model.depth, model.base_channels) == (4, 32)
    expected = fnet_params(4, 32)
    assert count(model) == expected
    assert f"{expected:,}" in spotlight_ops.models.fnet.__doc__


def test_layer_layout_of_one_level():
    level = FNet(depth=1, base_channels=4).levels
    down_conv = level.down[0]
    up_conv = level.up[0]
    assert isinstance(down_conv, torch.nn.Conv3d) and down_conv.kernel_size == (2, 2, 2) and down_conv.stride == (2, 2, 2)
    assert isinstance(up_conv, torch.nn.ConvTranspose3d) and up_conv.stride == (2, 2, 2)
    assert isinstance(level.down[1], torch.nn.BatchNorm3d) and isinstance(level.down[2], torch.nn.ReLU)
    assert level.decode[0][0].in_channels == 8  # the concat of skip and upsampled features
    out = FNet(depth=1, base_channels=4).conv_out
    assert out.kernel_size == (3, 3, 3) and out.out_channels == 1


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_output_shape_equals_input_shape(depth):
    model = FNet(depth=depth, base_channels=2).eval()
    m = 2 ** depth
    x = torch.randn(2, 1, 2 * m, 3 * m, m)
    with torch.no_grad():
        assert model(x).shape == x.shape


def test_channels_and_gradients():
    model = FNet(depth=1, base_channels=2, in_channels=2, out_channels=3)
    y = model(torch.randn(1, 2, 4, 4, 4))
    assert y.shape == (1, 3, 4, 4, 4)
    y.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_config_rebuilds_the_same_model():
    model = FNet(depth=2, base_channels=3)
    clone = FNet(**model.config())
    clone.load_state_dict(model.state_dict())
    x = torch.randn(1, 1, 8, 8, 8)
    model.eval(), clone.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), clone(x), rtol=0, atol=0)


def test_rejects_sizes_that_are_not_multiples():
    with pytest.raises(ValueError, match="multiples of 4"):
        FNet(depth=2, base_channels=2)(torch.randn(1, 1, 8, 8, 6))
    with pytest.raises(ValueError, match=r"\[N, 1, Z, Y, X\]"):
        FNet(depth=1, base_channels=2)(torch.randn(1, 8, 8, 8))


@pytest.mark.parametrize("kwargs,name", [({"depth": -1}, "depth"), ({"base_channels": 0}, "base_channels"),
                                         ({"in_channels": 1.5}, "in_channels"), ({"out_channels": True}, "out_channels")])
def test_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        FNet(**kwargs)

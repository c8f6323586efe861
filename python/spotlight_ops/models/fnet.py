r"""F-net: the 3D U-Net of Ounkomol et al. (2018) used by the Spotlight paper.

Architecture (``depth`` = D, ``base_channels`` = c, channels at level l: ``c_l = c * 2**l``)::

    level l < D:  x  -> [conv3 -> BN -> ReLU] x2                 (c_{l-1} -> c_l; c_{-1} = in_channels)
                     -> down: conv2 stride 2 -> BN -> ReLU       (c_l -> c_l)
                     -> level l + 1                              (c_l -> c_{l+1})
                     -> up:   convT2 stride 2 -> BN -> ReLU      (c_{l+1} -> c_l)
                     -> concat with the skip (2 c_l) -> [conv3 -> BN -> ReLU] x2 (2 c_l -> c_l)
    level D:      [conv3 -> BN -> ReLU] x2                       (c_{D-1} -> c_D)
    output:       linear conv3                                   (c_0 -> out_channels)

where conv3 is a 3x3x3 convolution with padding 1 and conv2/convT2 are 2x2x2 (transposed)
convolutions with stride 2, all with bias. Each spatial size must be a multiple of ``2**D``.

Parameter count (learnable; BatchNorm contributes its affine weight and bias, 2 per channel).
With ``conv(i, o, s) = s*i*o + o`` and ``block(i, o) = conv(i, o, 27) + conv(o, o, 27) + 4 o``::

    P = block(in, c_0) + sum_{l=1}^{D} block(c_{l-1}, c_l)
        + sum_{l=0}^{D-1} [ conv(c_l, c_l, 8) + 2 c_l            # down
                            + conv(c_{l+1}, c_l, 8) + 2 c_l      # up
                            + block(2 c_l, c_l) ]                # after the concat
        + conv(c_0, out, 27)

The paper's default (D = 4, c = 32, one channel in and out) has 23,280,769 parameters
(checked by ``tests/python/test_models.py`` against this formula).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _conv_bn_relu(conv: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm3d(channels), nn.ReLU(inplace=True))


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3x3 conv + BN + ReLU, as at every F-net level."""
    return nn.Sequential(
        _conv_bn_relu(nn.Conv3d(in_channels, out_channels, 3, padding=1), out_channels),
        _conv_bn_relu(nn.Conv3d(out_channels, out_channels, 3, padding=1), out_channels),
    )


class _Level(nn.Module):
    """One U-Net level: convs, down, the deeper levels, up, concat with the skip, convs."""

    def __init__(self, in_channels: int, channels: int, levels_below: int) -> None:
        super().__init__()
        self.encode = _double_conv(in_channels, channels)
        self.levels_below = levels_below
        if levels_below > 0:
            self.down = _conv_bn_relu(nn.Conv3d(channels, channels, 2, stride=2), channels)
            self.below = _Level(channels, 2 * channels, levels_below - 1)
            self.up = _conv_bn_relu(nn.ConvTranspose3d(2 * channels, channels, 2, stride=2), channels)
            self.decode = _double_conv(2 * channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        skip = self.encode(x)
        if self.levels_below == 0:
            return skip
        deeper = self.up(self.below(self.down(skip)))
        return self.decode(torch.cat((skip, deeper), dim=1))


class FNet(nn.Module):
    """F-net 3D U-Net mapping ``[N, in_channels, Z, Y, X]`` to ``[N, out_channels, Z, Y, X]``.

    Args:
        depth: number of 2x downsamplings (paper: 4); Z, Y, X must be multiples of ``2**depth``.
        base_channels: channels of the top level, doubled at each level below (paper: 32).
        in_channels: channels of the signal (1 for a brightfield z-stack).
        out_channels: channels of the prediction (1 for one fluorescence channel).

    See the module docstring for the layer layout and the parameter-count formula.
    """

    def __init__(self, depth: int = 4, base_channels: int = 32, in_channels: int = 1,
                 out_channels: int = 1) -> None:
        super().__init__()
        for name, value, low in (("depth", depth, 0), ("base_channels", base_channels, 1),
                                 ("in_channels", in_channels, 1), ("out_channels", out_channels, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.depth, self.base_channels = depth, base_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.levels = _Level(in_channels, base_channels, depth)
        self.conv_out = nn.Conv3d(base_channels, out_channels, 3, padding=1)

    @property
    def size_multiple(self) -> int:
        """Every spatial size of the input must be a multiple of this (``2**depth``)."""
        return 2 ** self.depth

    def config(self) -> dict:
        """Constructor arguments, to rebuild the model from a checkpoint."""
        return {"depth": self.depth, "base_channels": self.base_channels,
                "in_channels": self.in_channels, "out_channels": self.out_channels}

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"FNet expects input [N, {self.in_channels}, Z, Y, X], got {tuple(x.shape)}")
        bad = [s for s in x.shape[2:] if s % self.size_multiple]
        if bad:
            raise ValueError(f"FNet(depth={self.depth}) needs spatial sizes that are multiples of "
                             f"{self.size_multiple}, got {tuple(x.shape[2:])}")
        return self.conv_out(self.levels(x))

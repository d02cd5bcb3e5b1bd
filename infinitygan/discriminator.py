"""StyleGAN2 residual discriminator with two heads: real/fake logit and the patch's vertical position (L_ar).

Unlike the generator, the discriminator may pad: it never has to tile. Odd input sizes (a padding-free generator
makes 69 px patches) are handled by ceil-mode average pooling, so no pixel is cropped away.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from infinitygan.layers import EqualConv2d, EqualLinear, scaled_leaky_relu
from infinitygan.wavelets import haar_dwt

STDDEV_GROUP = 4


def minibatch_stddev(x: torch.Tensor, group_size: int = STDDEV_GROUP) -> torch.Tensor:
    """Append one channel: the mean over features of the per-group standard deviation across samples.

    Groups hold min(group_size, batch) samples; sample i is grouped with i + k * (batch / group) (StyleGAN2's
    layout). The batch must be divisible by the group (a silent fallback to the whole batch is the reference's bug).
    """
    batch, channels, height, width = x.shape
    group = min(group_size, batch)
    if batch % group:
        raise ValueError(f"batch {batch} is not divisible by the minibatch-stddev group {group}")
    y = x.reshape(group, batch // group, channels, height, width)
    y = (y - y.mean(dim=0)).pow(2).mean(dim=0).add(1e-8).sqrt()  # (batch / group, C, H, W)
    y = y.mean(dim=(1, 2, 3))  # (batch / group,)
    y = y.repeat(group).reshape(batch, 1, 1, 1).expand(batch, 1, height, width)
    return torch.cat([x, y], dim=1)


class PaddedConv(nn.Module):
    """Equalized-lr 'same' convolution followed (optionally) by the scaled leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, activation: bool = True) -> None:
        super().__init__()
        self.conv = EqualConv2d(in_channels, out_channels, kernel_size)
        self.pad = kernel_size // 2
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, mode="replicate")
        x = self.conv(x)
        return scaled_leaky_relu(x) if self.activation else x


def downsample(x: torch.Tensor) -> torch.Tensor:
    """Halve with rounding up: 69 -> 35 -> 18 -> 9 -> 5."""
    return F.avg_pool2d(x, 2, ceil_mode=True)


def downsampled_size(size: int) -> int:
    return math.ceil(size / 2)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = PaddedConv(in_channels, in_channels, 3)
        self.conv2 = PaddedConv(in_channels, out_channels, 3)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = downsample(self.conv2(self.conv1(x)))
        skip = self.skip(downsample(x))
        return (main + skip) / math.sqrt(2.0)


def default_widths(base: int, blocks: int, cap: int) -> list[int]:
    return [min(base * 2**i, cap) for i in range(blocks + 1)]


class Discriminator(nn.Module):
    """D(x) -> (logit (B,), vertical position (B,) in [-1, 1]).

    wavelet_input (SWAGAN's discriminator): D reads the orthonormal Haar DWT of its input, 12 bands at half the
    resolution, instead of the pixels; an odd-sized patch first loses its last row and column (DWT blocks are 2x2).
    """

    def __init__(
        self,
        image_size: int,
        *,
        base_width: int = 32,
        max_width: int = 256,
        min_size: int = 4,
        stddev_group: int = STDDEV_GROUP,
        wavelet_input: bool = False,
    ) -> None:
        super().__init__()
        self.wavelet_input = wavelet_input
        self.even_size = image_size - image_size % 2
        sizes = [self.even_size // 2 if wavelet_input else image_size]
        while downsampled_size(sizes[-1]) >= min_size and len(sizes) < 7:
            sizes.append(downsampled_size(sizes[-1]))
        widths = default_widths(base_width, len(sizes) - 1, max_width)
        self.image_size = image_size
        self.stddev_group = stddev_group
        self.from_rgb = PaddedConv(12 if wavelet_input else 3, widths[0], 1)
        self.blocks = nn.ModuleList(ResidualBlock(widths[i], widths[i + 1]) for i in range(len(sizes) - 1))
        final_width, final_size = widths[-1], sizes[-1]
        self.final_conv = PaddedConv(final_width + 1, final_width, 3)
        self.final_linear = EqualLinear(final_width * final_size * final_size, final_width, activation=True)
        self.logit = EqualLinear(final_width, 1)
        self.position = EqualLinear(final_width, 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if image.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"discriminator expects {self.image_size}px patches, got {tuple(image.shape[-2:])}")
        if self.wavelet_input:
            image = haar_dwt(image[..., : self.even_size, : self.even_size])
        x = self.from_rgb(image)
        for block in self.blocks:
            x = block(x)
        x = minibatch_stddev(x, self.stddev_group)
        x = self.final_linear(self.final_conv(x).flatten(1))
        return self.logit(x).squeeze(1), torch.tanh(self.position(x)).squeeze(1)

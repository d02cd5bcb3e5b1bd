"""Orthonormal 2x2 Haar wavelet transform (SWAGAN / MobileStyleGAN vocabulary).

Convention, for each aligned 2x2 block (a b / c d):
    LL = (a+b+c+d)/2, LH = (a+b-c-d)/2, HL = (a-b+c-d)/2, HH = (a-b-c+d)/2
Channel layout: the four bands are stacked band-major, so a (B, C, H, W) image becomes (B, 4C, H/2, W/2) with
channels [LL_0..LL_{C-1}, LH_0.., HL_0.., HH_0..].

The inverse is a fixed channel mix followed by pixel_shuffle: it consumes no margin, so the IWT of a crop equals the
crop of the IWT exactly, which is what makes it usable in a padding-free, tileable generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Rows: bands (LL, LH, HL, HH); columns: block positions (a, b, c, d) in pixel_shuffle order (row-major 2x2).
_HAAR = (
    torch.tensor(
        [
            [1.0, 1.0, 1.0, 1.0],
            [1.0, 1.0, -1.0, -1.0],
            [1.0, -1.0, 1.0, -1.0],
            [1.0, -1.0, -1.0, 1.0],
        ]
    )
    / 2.0
)


def haar_dwt(image: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) with even H, W -> (B, 4C, H/2, W/2)."""
    b, c, h, w = image.shape
    if h % 2 or w % 2:
        raise ValueError(f"haar_dwt needs even height and width, got {h}x{w}")
    blocks = F.pixel_unshuffle(image, 2).view(b, c, 4, h // 2, w // 2)
    bands = torch.einsum("fp,bcphw->bfchw", _HAAR.to(image), blocks)
    return bands.reshape(b, 4 * c, h // 2, w // 2)


def haar_iwt(bands: torch.Tensor) -> torch.Tensor:
    """(B, 4C, H, W) -> (B, C, 2H, 2W); the exact inverse of haar_dwt (the Haar matrix is its own inverse)."""
    b, c4, h, w = bands.shape
    if c4 % 4:
        raise ValueError(f"haar_iwt needs a channel count divisible by 4, got {c4}")
    c = c4 // 4
    grouped = bands.view(b, 4, c, h, w)
    blocks = torch.einsum("fp,bfchw->bcphw", _HAAR.to(bands), grouped)
    return F.pixel_shuffle(blocks.reshape(b, 4 * c, h, w), 2)


def haar_synthesis_weight(weight: torch.Tensor) -> torch.Tensor:
    """Weights (..., 4C, I) that predict Haar bands (band-major, as haar_iwt reads them) -> weights (..., 4C, I) that
    predict the pixels of each 2 x 2 block in pixel_shuffle order: pixel_shuffle(W' x, 2) == haar_iwt(W x) up to
    rounding, with the band mix applied to the small weight matrix instead of the feature map."""
    *lead, c4, i = weight.shape
    if c4 % 4:
        raise ValueError(f"haar_synthesis_weight needs a row count divisible by 4, got {c4}")
    grouped = weight.reshape(*lead, 4, c4 // 4, i)
    return torch.einsum("fp,...fci->...cpi", _HAAR.to(weight), grouped).reshape(*lead, c4, i)


class HaarDWT(nn.Module):
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return haar_dwt(image)


class HaarIWT(nn.Module):
    def forward(self, bands: torch.Tensor) -> torch.Tensor:
        return haar_iwt(bands)

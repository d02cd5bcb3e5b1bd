"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): cheap, differentiable
colour, translation and cutout transforms applied to real and generated images alike, in both the D and the G steps,
so that D cannot memorise a small data set and G still receives gradients through the transform.

Only transforms that keep every row where it was are offered: the discriminator's position head (L_ar) is trained on
the patch's vertical position, so translation is horizontal only.
"""

from __future__ import annotations

import torch

POLICIES = ("color", "translation", "cutout")
DEFAULT_POLICY = "color,translation,cutout"
TRANSLATION_RATIO = 0.125  # shift by up to 1/8 of the width, as DiffAugment
CUTOUT_RATIO = 0.5  # a square of half the patch side, as DiffAugment


def parse_policy(policy: str) -> tuple[str, ...]:
    """ "color,translation,cutout" -> a tuple of names; "" or "none" -> (); ValueError names an unknown transform."""
    names = tuple(name.strip() for name in policy.split(",") if name.strip() and name.strip() != "none")
    unknown = sorted(set(names) - set(POLICIES))
    if unknown:
        raise ValueError(f"unknown DiffAugment transform(s) {unknown}; choose from {list(POLICIES)}")
    return names


def _uniform(shape: tuple[int, ...], rng: torch.Generator, x: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=rng).to(device=x.device, dtype=x.dtype)


def color(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Per-sample brightness (+U(-0.5, 0.5)), saturation (x U(0, 2) about the pixel's grey) and contrast
    (x U(0.5, 1.5) about the image mean), for images in [-1, 1]."""
    batch = x.shape[0]
    x = x + (_uniform((batch, 1, 1, 1), rng, x) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_uniform((batch, 1, 1, 1), rng, x) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform((batch, 1, 1, 1), rng, x) + 0.5) + mean


def translation(x: torch.Tensor, rng: torch.Generator, ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Shift each sample horizontally by a whole number of pixels in [-ratio W, ratio W], filling with zeros."""
    batch, _, _, width = x.shape
    reach = int(width * ratio + 0.5)
    shift = torch.randint(-reach, reach + 1, (batch, 1), generator=rng).to(x.device)
    source = torch.arange(width, device=x.device)[None, :] - shift  # (B, W): output column c reads column c - shift
    valid = (source >= 0) & (source < width)
    index = source.clamp(0, width - 1)[:, None, None, :].expand_as(x)
    return torch.gather(x, 3, index) * valid[:, None, None, :].to(x.dtype)


def cutout(x: torch.Tensor, rng: torch.Generator, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Zero one square of side ratio * size per sample, centred anywhere in the image (it may hang over an edge)."""
    batch, _, height, width = x.shape
    side_h, side_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    centre_y = torch.randint(0, height + (1 - side_h % 2), (batch, 1, 1), generator=rng).to(x.device)
    centre_x = torch.randint(0, width + (1 - side_w % 2), (batch, 1, 1), generator=rng).to(x.device)
    rows = torch.arange(height, device=x.device)[None, :, None]
    cols = torch.arange(width, device=x.device)[None, None, :]
    inside = ((rows - centre_y + side_h // 2).clamp(min=-1) // side_h == 0) & (
        (cols - centre_x + side_w // 2).clamp(min=-1) // side_w == 0
    )
    return x * (~inside)[:, None].to(x.dtype)


_TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...], rng: torch.Generator) -> torch.Tensor:
    """Apply the policy's transforms in order to (B, C, H, W) images; differentiable in x; () returns x itself."""
    for name in policy:
        x = _TRANSFORMS[name](x, rng)
    return x

"""Outpainting by inversion: fit a photo anchor so the world reconstructs the photo and continues it endlessly.

InfinityGAN's recipe made practical on a CPU: the photo is placed at the model's native scale; the local latents
under it, the noise in that area and W+ / the G_S style (blended in by spatial style fusion) are optimised with Adam
and the StyleGAN2-projector learning-rate ramp, against pixel MSE plus a multi-scale (Laplacian-pyramid) L1 that
needs no downloaded network, with latent and noise priors. Optimisation runs through World.forward_window, the very
code that serves tiles, so what was fitted is what is rendered.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from infinitygan.anchor import Anchor, PatchOverride, Rect
from infinitygan.generator import Generator
from infinitygan.world import World, WorldSpec


@dataclass(frozen=True)
class InversionConfig:
    steps: int = 40
    lr: float = 0.05  # latents and styles
    noise_lr: float = 0.1
    ramp_up: float = 0.05  # fraction of steps with a linear warm-up
    ramp_down: float = 0.25  # fraction of steps with a cosine cool-down
    pad_px: int = 16  # the fitted window extends this far beyond the photo, so its border is fitted in context
    pyramid_levels: int = 3
    pixel_weight: float = 1.0
    pyramid_weight: float = 1.0
    latent_prior_weight: float = 0.1
    style_prior_weight: float = 0.01
    noise_regularize_weight: float = 1e3
    blend_px: int = 192
    feather_px: int = 12


QUALITY = {"fast": InversionConfig(steps=40), "best": InversionConfig(steps=300)}


@dataclass(frozen=True)
class InversionReport:
    steps: int
    seconds: float
    reconstruction_psnr: float  # the generator's own reconstruction inside the footprint, before pasting


def photo_footprint(width: int, height: int, scene_height: int) -> Rect:
    """Where place_photo puts a width x height photo: one scene tall, centred on the horizon at x = 0."""
    scaled = max(1, round(width * scene_height / height))
    return Rect(-(scaled // 2), -(scene_height // 2), scaled, scene_height)


def place_photo(photo: np.ndarray, scene_height: int) -> tuple[np.ndarray, Rect]:
    """Scale a photo to the model's native scale (its height becomes one scene height) and centre it on the
    horizon at x = 0; returns the resized uint8 photo and its footprint in world pixels."""
    h, w = photo.shape[:2]
    footprint = photo_footprint(w, h, scene_height)
    size = (footprint.width, footprint.height)
    resized = np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.LANCZOS))
    return resized, footprint


def inversion_windows(geometry, footprint: Rect, config: InversionConfig):
    """(rows, columns) Windows of the z_S window the inversion fits: the footprint plus config.pad_px each side.
    Its pixel count (rows.size * columns.size) sets the inversion's time and memory per step."""
    rows = geometry.window_for_span(footprint.y - config.pad_px, footprint.height + 2 * config.pad_px)
    columns = geometry.window_for_span(footprint.x - config.pad_px, footprint.width + 2 * config.pad_px)
    return rows, columns


def learning_rate(step: int, steps: int, base: float, config: InversionConfig) -> float:
    """StyleGAN2-projector schedule: linear ramp-up, flat, cosine ramp-down."""
    t = step / max(1, steps)
    ramp = min(1.0, (1.0 - t) / config.ramp_down)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return base * ramp * min(1.0, t / config.ramp_up)


def pyramid_l1(a: torch.Tensor, b: torch.Tensor, levels: int) -> torch.Tensor:
    """Mean L1 between Laplacian pyramids: band-pass detail at each scale, plus the coarsest average."""
    loss = a.new_zeros(())
    for _ in range(levels):
        if min(a.shape[-2:]) < 4:
            break
        a_low, b_low = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        size = (a_low.shape[-2] * 2, a_low.shape[-1] * 2)
        a_band = a[..., : size[0], : size[1]] - F.interpolate(a_low, scale_factor=2.0, mode="nearest")
        b_band = b[..., : size[0], : size[1]] - F.interpolate(b_low, scale_factor=2.0, mode="nearest")
        loss = loss + (a_band - b_band).abs().mean()
        a, b = a_low, b_low
    return loss + (a - b).abs().mean()


def noise_regularization(noise: torch.Tensor) -> torch.Tensor:
    """StyleGAN2 projector's penalty on spatial autocorrelation of noise images, over scales."""
    loss = noise.new_zeros(())
    x = noise[None, None] if noise.dim() == 2 else noise
    while min(x.shape[-2:]) >= 8:
        loss = loss + (x * x.roll(1, dims=-1)).mean().pow(2) + (x * x.roll(1, dims=-2)).mean().pow(2)
        x = F.avg_pool2d(x, 2)
    return loss


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [-1, 1] (peak-to-peak 2)."""
    mse = float((a.clamp(-1, 1) - b).pow(2).mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(4.0 / mse)


def invert_photo(
    generator: Generator,
    spec: WorldSpec,
    photo: np.ndarray,
    footprint: Rect,
    config: InversionConfig = QUALITY["fast"],
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Anchor, InversionReport]:
    """Fit an anchor for `photo` (uint8, footprint-sized) placed at `footprint` in the world `spec`."""
    if photo.shape[:2] != (footprint.height, footprint.width):
        raise ValueError(f"photo is {photo.shape[:2]}, footprint is {footprint.height}x{footprint.width}")
    start_time = time.perf_counter()
    base = World(generator, spec)
    geometry = generator.geometry
    wy, wx = inversion_windows(geometry, footprint, config)
    anchor = _initial_anchor(base, photo, footprint, wy.start, wx.start, wy.cells, wx.cells, config)
    world = World(generator, spec, anchor)

    target = torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    top, left = footprint.y - wy.first_pixel, footprint.x - wx.first_pixel
    latent, styles = anchor.local_latents.values, [anchor.structure_style, anchor.texture_styles]
    noises = [n.values for n in anchor.noises]
    base_styles = [t.detach().clone() for t in styles]
    optimizer = torch.optim.Adam(
        [{"params": [latent, *styles], "base_lr": config.lr}, {"params": noises, "base_lr": config.noise_lr}],
        betas=(0.9, 0.999),
    )
    frozen = [p for p in generator.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for step in range(config.steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, config.steps, group["base_lr"], config)
            # Over the photo the blend weight is ~1, so fitting uses the anchor's styles as vectors: several times
            # cheaper than per-location maps; the reported PSNR below is measured on the served (blended) render.
            image = world.forward_window(wy.start, wx.start, wy.cells, wx.cells, anchor_only=True)
            fitted = image[..., top : top + footprint.height, left : left + footprint.width]
            loss = config.pixel_weight * F.mse_loss(fitted, target)
            loss = loss + config.pyramid_weight * pyramid_l1(fitted, target, config.pyramid_levels)
            loss = loss + config.latent_prior_weight * ((latent.pow(2).mean() - 1.0).pow(2) + latent.mean().pow(2))
            loss = loss + config.style_prior_weight * sum(
                (s - b).pow(2).mean() for s, b in zip(styles, base_styles, strict=True)
            )
            loss = loss + config.noise_regularize_weight * sum(noise_regularization(n) for n in noises)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # keep noise images standard normal, as the projector does
                for n in noises:
                    n.sub_(n.mean()).div_(n.std() + 1e-8)
            if progress is not None:
                progress(step + 1, config.steps)
        with torch.no_grad():
            image = world.forward_window(wy.start, wx.start, wy.cells, wx.cells)
            reconstruction = psnr(image[..., top : top + footprint.height, left : left + footprint.width], target)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    _freeze(anchor)
    anchor.metadata.update({"inversion_steps": config.steps, "reconstruction_psnr": reconstruction})
    report = InversionReport(config.steps, time.perf_counter() - start_time, reconstruction)
    return anchor, report


def _initial_anchor(base: World, photo, footprint, row0, col0, rows, cols, config: InversionConfig) -> Anchor:
    """Start from the base world's own values, so an unfitted anchor renders exactly the base world."""
    geometry = base.geometry
    local = base.local_latents(row0, col0, rows, cols).clone().requires_grad_(True)
    inputs = base.window_inputs(row0, col0, rows, cols)
    noises = [
        PatchOverride(
            geometry.layer_index_offset(layer, row0),
            geometry.layer_index_offset(layer, col0),
            noise[0, 0].clone().requires_grad_(True),
        )
        for layer, noise in enumerate(inputs.noises)
    ]
    return Anchor(
        footprint=footprint,
        photo=np.ascontiguousarray(photo),
        local_latents=PatchOverride(row0, col0, local),
        noises=noises,
        structure_style=base.structure_style[0].clone().requires_grad_(True),
        texture_styles=base.texture_styles[0].clone().requires_grad_(True),
        blend_px=config.blend_px,
        feather_px=config.feather_px,
    )


def _freeze(anchor: Anchor) -> None:
    anchor.local_latents.values = anchor.local_latents.values.detach()
    for noise in anchor.noises:
        noise.values = noise.values.detach()
    anchor.structure_style = anchor.structure_style.detach()
    anchor.texture_styles = anchor.texture_styles.detach()

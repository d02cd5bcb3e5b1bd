"""Outpainting by inversion: fit a photo anchor so the world reconstructs the photo and continues it endlessly.

InfinityGAN's recipe made practical on a CPU: the photo is placed at the model's native scale; the local latents
under it, the noise in that area and W+ / the G_S style (blended in by spatial style fusion) are optimised with Adam
and the StyleGAN2-projector learning-rate ramp, against pixel MSE plus a multi-scale (Laplacian-pyramid) L1 that
needs no downloaded network, with latent and style priors; the noise is fitted freely over the photo and handed
over to the world's own near its edge (noise_ramps). Optimisation runs through World.forward_window, the very code
that serves tiles, so what was fitted is what is rendered.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from infinitygan.anchor import Anchor, PatchOverride, Rect, quantized_weight
from infinitygan.generator import Generator
from infinitygan.latents import normal_vector
from infinitygan.world import World, WorldSpec, render_region


@dataclass(frozen=True)
class InversionConfig:
    steps: int = 40
    lr: float = 0.05  # latents and styles
    noise_lr: float = 0.5
    ramp_up: float = 0.05  # fraction of steps with a linear warm-up
    ramp_down: float = 0.25  # fraction of steps with a cosine cool-down
    pad_px: int = 16  # the fitted window extends this far beyond the photo, so its border is fitted in context
    pyramid_levels: int = 3
    pixel_weight: float = 1.0
    pyramid_weight: float = 1.0
    latent_prior_weight: float = 0.1
    style_prior_weight: float = 0.01
    # The fitted noise only shapes the photo's own footprint (noise_ramps: none outside it or over transparent
    # pixels), which the photo covers but for its blend band; the world beyond, and the side windows the
    # continuation term scores, read the hashed noise. So the noise may carry the photo's fine detail: without the
    # projector's autocorrelation penalty (weight 1e3 here before) and at noise_lr 0.5 rather than 0.1, `fast` PSNR
    # rose from 14.8-22.0 to 21.3-26.5 dB on the bench photos with the same continuation scores (bench_outpaint).
    noise_regularize_weight: float = 0.0
    noise_ramp_px: int = 32  # the fitted noise hands over to the world's own over this many px inside the photo
    reach_px: int | None = None  # None: the photo's styles govern the whole world; else they fade out within this
    min_band_px: int = 8  # the photo fades into the generated world over this much where the fit is exact ...
    max_band_px: int = 96  # ... and over this much where it is poor (mean abs error >= band_error, in [0, 1])
    band_error: float = 0.2
    continuation_weight: float = 3.0  # colours of windows beside the photo pulled toward the photo's (sliced W1)
    side_px: int = 64  # width of each such window
    starts: int = 4  # styles tried before fitting (the world's own and starts - 1 seeded others), per horizon


QUALITY = {"fast": InversionConfig(steps=40), "best": InversionConfig(steps=300)}
# What an outpainting returns besides its inputs and configuration: bump it with any change to the fit's code, so a
# stored job of the old algorithm is not returned for a new submission (tiles.jobs.job_id_for hashes it).
# 2: noise fitted freely, handed over to the world's by noise_ramps.
INVERSION_VERSION = 2
# The horizon estimate (estimate_horizon): a sky/ground split searched over this band of the photo's height, kept
# only when its contrast reaches HORIZON_MIN_CONTRAST (else the photo is centred). Chosen on the 14 training photos
# of the recipe against their recorded horizons (mean error 0.08 of the height on all 16, median 0.02; always
# centring: 0.14), see tests/test_invert.py.
HORIZON_SEARCH = (0.2, 0.8)
HORIZON_MIN_CONTRAST = 12.0
HORIZONS_WITHOUT_SPLIT = (0.5, 0.0)  # tried by trial fits when estimate_horizon finds no split: centred, and the
# photo's top row on the horizon (all of it ground, as in a gorge). Its bottom row (all sky) was dropped: on the gorge
# photo the fit preferred it, a rock face floating in the sky, with a worse continuation (0.20 against 0.12).
STREAM_INVERSION_START = 50  # + start index: the hashed stream of a start's z_g (infinitygan.latents)


@dataclass(frozen=True)
class InversionReport:
    steps: int
    seconds: float
    reconstruction_psnr: float  # the generator's own reconstruction inside the footprint, before pasting
    horizon: float = 0.5  # the photo's row (fraction of its height) placed on the world's horizon
    start_scores: tuple[float, ...] = ()  # data loss of each start before fitting (lower is better)


def photo_footprint(width: int, height: int, scene_height: int, horizon: float = 0.5) -> Rect:
    """Where place_photo puts a width x height photo: one scene tall, centred at x = 0, with the row at `horizon`
    (fraction of its height from the top, in [0, 1]) on the world's horizon (world row 0)."""
    if not 0.0 <= horizon <= 1.0:
        raise ValueError(f"horizon must be a fraction of the photo's height in [0, 1], not {horizon!r}")
    scaled = max(1, round(width * scene_height / height))
    return Rect(-(scaled // 2), -round(horizon * scene_height), scaled, scene_height)


def place_photo(
    photo: np.ndarray, scene_height: int, horizon: float = 0.5, alpha: np.ndarray | None = None
) -> tuple[np.ndarray, Rect] | tuple[np.ndarray, Rect, np.ndarray]:
    """Scale a photo (uint8 (H, W, 3)) to the model's native scale (its height becomes one scene height), centre
    it at x = 0 with its `horizon` row on world row 0; returns the resized uint8 photo and its footprint in world
    pixels, plus the resized opacity (float64 (h, w) in [0, 1]) when `alpha` (uint8 (H, W)) is given."""
    h, w = photo.shape[:2]
    footprint = photo_footprint(w, h, scene_height, horizon)
    size = (footprint.width, footprint.height)
    if alpha is None:
        return np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.LANCZOS)), footprint
    # Resampled premultiplied by the opacity, so the colour under transparent pixels cannot bleed into the photo.

    def resample(channel: np.ndarray) -> np.ndarray:
        image = Image.fromarray(channel.astype(np.float32), mode="F").resize(size, Image.Resampling.LANCZOS)
        return np.asarray(image, dtype=np.float64)

    opacity = np.clip(resample(alpha.astype(np.float32) / 255.0), 0.0, 1.0)
    premultiplied = [resample(photo[..., c] * (alpha / 255.0)) for c in range(3)]
    colour = np.stack(premultiplied, axis=-1) / np.maximum(opacity, 1e-3)[..., None]
    resized = np.clip(np.rint(colour), 0, 255).astype(np.uint8) * (opacity > 1e-3)[..., None].astype(np.uint8)
    return resized, footprint, opacity


def inversion_windows(geometry, footprint: Rect, config: InversionConfig):
    """(rows, columns) Windows of the z_S window the inversion fits: the footprint plus config.pad_px each side.
    Its pixel count (rows.size * columns.size) sets the inversion's time and memory per step."""
    rows = geometry.window_for_span(footprint.y - config.pad_px, footprint.height + 2 * config.pad_px)
    columns = geometry.window_for_span(footprint.x - config.pad_px, footprint.width + 2 * config.pad_px)
    return rows, columns


COLOUR_PROJECTIONS = 32


def colour_projections(rng: torch.Generator, count: int = COLOUR_PROJECTIONS) -> torch.Tensor:
    """(3, count) random unit directions in RGB, the slices of sliced_colour_distance."""
    directions = torch.randn(3, count, generator=rng)
    return directions / directions.norm(dim=0, keepdim=True)


def sliced_colour_distance(pixels: torch.Tensor, reference: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """Sliced 1-Wasserstein distance between two colour distributions, (3, N) and (3, M) values: per direction,
    the mean |difference| of the sorted projections, the reference's resampled to N quantiles. Differentiable in
    `pixels`; what evaluate.continuation_score measures (a colour SWD), so the side term pulls toward its optimum
    rather than toward matching two moments."""
    ours = torch.sort(projections.t() @ pixels, dim=1).values  # (K, N)
    theirs = torch.sort(projections.t() @ reference, dim=1).values  # (K, M)
    count = ours.shape[1]
    index = ((torch.arange(count, dtype=torch.float64) + 0.5) * theirs.shape[1] / count).long()
    return (ours - theirs[:, index.clamp_max(theirs.shape[1] - 1)]).abs().mean()


def learning_rate(step: int, steps: int, base: float, config: InversionConfig) -> float:
    """StyleGAN2-projector schedule: linear ramp-up, flat, cosine ramp-down."""
    t = step / max(1, steps)
    ramp = min(1.0, (1.0 - t) / config.ramp_down)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return base * ramp * min(1.0, t / config.ramp_up)


def _weighted_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return values.mean()
    return (values * mask).sum() / (mask.sum() * values.shape[1] + 1e-8)


def pyramid_l1(a: torch.Tensor, b: torch.Tensor, levels: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean L1 between Laplacian pyramids: band-pass detail at each scale, plus the coarsest average. With `mask`
    ((1, 1, H, W) in [0, 1]) each level is weighted by the mask at that scale (transparent pixels count for nothing)."""
    loss = a.new_zeros(())
    for _ in range(levels):
        if min(a.shape[-2:]) < 4:
            break
        a_low, b_low = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        size = (a_low.shape[-2] * 2, a_low.shape[-1] * 2)
        a_band = a[..., : size[0], : size[1]] - F.interpolate(a_low, scale_factor=2.0, mode="nearest")
        b_band = b[..., : size[0], : size[1]] - F.interpolate(b_low, scale_factor=2.0, mode="nearest")
        level_mask = None if mask is None else mask[..., : size[0], : size[1]]
        loss = loss + _weighted_mean((a_band - b_band).abs(), level_mask)
        a, b = a_low, b_low
        mask = None if mask is None else F.avg_pool2d(mask, 2)
    return loss + _weighted_mean((a - b).abs(), mask)


def noise_regularization(noise: torch.Tensor) -> torch.Tensor:
    """StyleGAN2 projector's penalty on spatial autocorrelation of noise images, over scales."""
    loss = noise.new_zeros(())
    x = noise[None, None] if noise.dim() == 2 else noise
    while min(x.shape[-2:]) >= 8:
        loss = loss + (x * x.roll(1, dims=-1)).mean().pow(2) + (x * x.roll(1, dims=-2)).mean().pow(2)
        x = F.avg_pool2d(x, 2)
    return loss


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """PSNR in dB of two images in [-1, 1] (peak-to-peak 2), over the pixels `mask` ((1, 1, H, W)) weights."""
    mse = float(_weighted_mean((a.clamp(-1, 1) - b).pow(2), mask))
    return float("inf") if mse == 0 else 10.0 * math.log10(4.0 / mse)


def _target(photo: np.ndarray, opacity: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    target = torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    mask = None if opacity is None else torch.from_numpy(opacity.astype(np.float32))[None, None]
    return target, mask


def _data_loss(fitted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, config: InversionConfig):
    """Pixel MSE plus the multi-scale L1, over the opaque pixels."""
    loss = config.pixel_weight * _weighted_mean((fitted - target).pow(2), mask)
    return loss + config.pyramid_weight * pyramid_l1(fitted, target, config.pyramid_levels, mask)


def start_styles(generator: Generator, spec: WorldSpec, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Start `index` of an inversion: 0 is the world's own styles; others come from a z_g hashed from the world's
    seed (stream STREAM_INVERSION_START + index), truncated by the world's psi like the world's own."""
    if index == 0:
        world = World(generator, spec)
        return world.structure_style[0], world.texture_styles[0]
    with torch.no_grad():
        z_global = normal_vector(spec.seed, STREAM_INVERSION_START + index, generator.config.global_dim)[None]
        return (z_global * spec.psi)[0], generator.texture_styles(z_global, psi=spec.psi)[0]


def invert_photo(
    generator: Generator,
    spec: WorldSpec,
    photo: np.ndarray,
    footprint: Rect,
    config: InversionConfig = QUALITY["fast"],
    progress: Callable[[int, int], None] | None = None,
    opacity: np.ndarray | None = None,
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[Anchor, InversionReport]:
    """Fit an anchor for `photo` (uint8 (h, w, 3), footprint-sized) placed at `footprint` in the world `spec`.

    start: (G_S style (global_dim,), W+ (num_styles, w_dim)) to start from instead of the world's own styles.
    opacity: float (h, w) in [0, 1], 0 where the upload is transparent: those pixels are left out of the fit and the
    world fills them. The anchor's photo weight is `confidence_weight` of the served reconstruction."""
    if photo.shape[:2] != (footprint.height, footprint.width):
        raise ValueError(f"photo is {photo.shape[:2]}, footprint is {footprint.height}x{footprint.width}")
    if opacity is not None and opacity.shape != photo.shape[:2]:
        raise ValueError(f"opacity is {opacity.shape}, photo is {photo.shape[:2]}")
    start_time = time.perf_counter()
    base = World(generator, spec)
    geometry = generator.geometry
    wy, wx = inversion_windows(geometry, footprint, config)
    anchor = _initial_anchor(base, photo, footprint, wy.start, wx.start, wy.cells, wx.cells, config)
    if start is not None:
        anchor.structure_style = start[0].detach().clone().requires_grad_(True)
        anchor.texture_styles = start[1].detach().clone().requires_grad_(True)
    world = World(generator, spec, anchor)

    target, mask = _target(photo, opacity)
    top, left = footprint.y - wy.first_pixel, footprint.x - wx.first_pixel
    latent, styles = anchor.local_latents.values, [anchor.structure_style, anchor.texture_styles]
    # The noise the world reads is base + ramp (fitted - base): the fit reshapes it over the photo and hands over to
    # the world's own noise near the photo's edge (and its transparent parts), see noise_ramps.
    noises = [n.values for n in anchor.noises]  # the fitted images (leaves), starting at the world's own
    base_noises = [n.detach().clone() for n in noises]
    ramps = noise_ramps(world, wy.start, wx.start, noises, footprint, opacity, config.noise_ramp_px)

    def apply_noise_ramps() -> None:
        for override, fitted, base_noise, ramp in zip(anchor.noises, noises, base_noises, ramps, strict=True):
            override.values = base_noise + ramp * (fitted - base_noise)

    base_styles = [t.detach().clone() for t in styles]
    side_windows = []
    if config.continuation_weight > 0:
        rows = geometry.window_for_span(footprint.y, footprint.height)
        for x in (footprint.x - footprint.width // 2 - config.side_px, footprint.x + footprint.width * 3 // 2):
            cols = geometry.window_for_span(x, config.side_px)
            side_windows.append((rows, cols, footprint.y - rows.first_pixel, x - cols.first_pixel))
    photo_colours = target[0].flatten(1) if mask is None else target[0][:, mask[0, 0] > 0]  # (3, opaque pixels)
    projections = colour_projections(torch.Generator().manual_seed(0))
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
            apply_noise_ramps()
            image = world.forward_window(wy.start, wx.start, wy.cells, wx.cells, anchor_only=True)
            fitted = image[..., top : top + footprint.height, left : left + footprint.width]
            loss = _data_loss(fitted, target, mask, config)
            # The prior is the world's own z_l distribution: N(0, psi_local^2) (the world truncates its z_l).
            second_moment = latent.pow(2).mean() - spec.psi_local**2
            loss = loss + config.latent_prior_weight * (second_moment.pow(2) + latent.mean().pow(2))
            loss = loss + config.style_prior_weight * sum(
                (s - b).pow(2).mean() for s, b in zip(styles, base_styles, strict=True)
            )
            loss = loss + config.noise_regularize_weight * sum(noise_regularization(n) for n in noises)
            if side_windows and step % 2 == 0:  # every other step, left and right in turn: ~+35% per job
                rows, cols, top_s, left_s = side_windows[(step // 2) % len(side_windows)]
                side = world.forward_window(rows.start, cols.start, rows.cells, cols.cells, anchor_only=True)
                side = side[..., top_s : top_s + footprint.height, left_s : left_s + config.side_px]
                distance = sliced_colour_distance(side[0].flatten(1), photo_colours, projections)
                loss = loss + config.continuation_weight * distance
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # keep the fitted noise standard normal, as the projector does
                for n, ramp in zip(noises, ramps, strict=True):
                    inside = ramp > 0
                    if int(inside.sum()) > 1:
                        fitted_noise = n[inside]
                        n[inside] = (fitted_noise - fitted_noise.mean()) / (fitted_noise.std() + 1e-8)
            if progress is not None:
                progress(step + 1, config.steps)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    apply_noise_ramps()
    _freeze(anchor)
    # The generated pixels the world serves under the photo (the anchor has no photo weight yet).
    generated = render_region(world, footprint.x, footprint.y, footprint.width, footprint.height)
    reconstruction = psnr(torch.from_numpy(generated).permute(2, 0, 1)[None].float() / 127.5 - 1.0, target, mask)
    anchor.weight = confidence_weight(photo, generated, opacity, config)
    anchor.metadata.update({"inversion_steps": config.steps, "reconstruction_psnr": reconstruction})
    report = InversionReport(config.steps, time.perf_counter() - start_time, reconstruction)
    return anchor, report


def estimate_horizon(photo: np.ndarray, opacity: np.ndarray | None = None) -> tuple[float, float]:
    """(horizon, contrast): the photo's horizon row as a fraction of its height, from its luminance profile.

    The row split within HORIZON_SEARCH that best separates a brighter (or darker) top from the rest, a two-level
    step fit to the mean luminance per row (opaque pixels only) weighted by sqrt(p (1 - p)); contrast is that
    score in luminance levels (0-255). Below HORIZON_MIN_CONTRAST (no sky, or a flat photo) the answer is 0.5."""
    luminance = np.asarray(Image.fromarray(photo).convert("L").resize((64, 256)), dtype=np.float64)
    if opacity is None:
        weight = np.ones_like(luminance)
    else:
        weight = np.asarray(Image.fromarray(opacity.astype(np.float32)).resize((64, 256)), dtype=np.float64)
    totals = weight.sum(axis=1)
    rows = totals > 1e-6
    profile = (luminance * weight).sum(axis=1)[rows] / totals[rows]
    positions = np.flatnonzero(rows) / luminance.shape[0]
    n = len(profile)
    if n < 8:
        return 0.5, 0.0
    cumulative = np.cumsum(profile)
    best_at, best_score = 0.5, 0.0
    for i in range(1, n):
        if not HORIZON_SEARCH[0] <= positions[i] <= HORIZON_SEARCH[1]:
            continue
        above, below = cumulative[i - 1] / i, (cumulative[-1] - cumulative[i - 1]) / (n - i)
        score = abs(above - below) * math.sqrt(i * (n - i)) / n
        if score > best_score:
            best_at, best_score = float(positions[i]), score
    if best_score < HORIZON_MIN_CONTRAST:
        return 0.5, best_score
    return round(best_at, 3), best_score


def outpaint_photo(
    generator: Generator,
    spec: WorldSpec,
    photo: np.ndarray,
    scene_height: int,
    config: InversionConfig = QUALITY["fast"],
    *,
    alpha: np.ndarray | None = None,
    horizon: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Anchor, InversionReport]:
    """Place an uploaded photo (uint8 (H, W, 3), any size; `alpha` uint8 (H, W) or None) in the world and fit it.

    horizon: the photo's horizon row as a fraction of its height (0 = top), or None to estimate it from the photo
    (`estimate_horizon`). Before fitting, one forward pass per start (config.starts styles, `start_styles`) scores
    the reconstruction; the fit starts from the best. Raises ValueError for a horizon outside [0, 1]."""
    started = time.perf_counter()
    if horizon is not None:
        horizons = [float(horizon)]
    else:
        estimate, contrast = estimate_horizon(photo, None if alpha is None else alpha.astype(np.float64) / 255.0)
        # No sky/ground split: the photo may be all ground (a gorge: the horizon above the frame) or centred.
        horizons = [estimate] if contrast >= HORIZON_MIN_CONTRAST else list(HORIZONS_WITHOUT_SPLIT)
    starts = [start_styles(generator, spec, index) for index in range(max(1, config.starts))]
    best = None
    for candidate in horizons:
        if alpha is None:
            resized, footprint = place_photo(photo, scene_height, candidate)
            opacity = None
        else:
            resized, footprint, opacity = place_photo(photo, scene_height, candidate, alpha)
        target, mask = _target(resized, opacity)
        wy, wx = inversion_windows(generator.geometry, footprint, config)
        window = (wy.start, wx.start, wy.cells, wx.cells)
        probe = _initial_anchor(World(generator, spec), resized, footprint, *window, config)
        world = World(generator, spec, probe)
        top, left = footprint.y - wy.first_pixel, footprint.x - wx.first_pixel
        scores = []
        with torch.no_grad():
            for structure, texture in starts:
                probe.structure_style, probe.texture_styles = structure, texture
                image = world.forward_window(wy.start, wx.start, wy.cells, wx.cells, anchor_only=True)
                fitted = image[..., top : top + footprint.height, left : left + footprint.width]
                scores.append(float(_data_loss(fitted, target, mask, config)))
        if best is None or min(scores) < min(best[4]):
            best = (candidate, resized, footprint, opacity, scores)
    horizon, resized, footprint, opacity, scores = best
    index = int(np.argmin(scores))
    anchor, report = invert_photo(generator, spec, resized, footprint, config, progress, opacity, start=starts[index])
    anchor.metadata.update({"horizon": float(horizon), "start": index, "start_scores": scores})
    return anchor, dataclasses.replace(
        report, seconds=time.perf_counter() - started, horizon=float(horizon), start_scores=tuple(scores)
    )


def _box_blur(image: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2 radius + 1)^2 box, clipped at the border; separable, so O(radius) per pixel."""
    size = 2 * radius + 1
    rows = F.avg_pool2d(image, (1, size), stride=1, padding=(0, radius), count_include_pad=False)
    return F.avg_pool2d(rows, (size, 1), stride=1, padding=(radius, 0), count_include_pad=False)


def _distance_inside(inside: torch.Tensor, limit: int) -> torch.Tensor:
    """(H, W) float distance in px (octagonal metric, capped at `limit`) from each inside pixel to the nearest
    pixel that is not inside, the area beyond the image's border counting as outside."""
    current = F.pad(inside.float()[None, None], (1, 1, 1, 1), value=0.0)
    distance = torch.zeros_like(current)
    plus = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    for step in range(limit):
        distance = distance + current
        if step % 2:  # alternate 3x3 square and plus-shaped erosions: an octagon, close to Euclidean
            current = -F.max_pool2d(-current, 3, stride=1, padding=1)
        else:
            current = (F.conv2d(current, plus, padding=1) >= 5.0 - 1e-6).float()
        current[..., 0, :], current[..., -1, :], current[..., :, 0], current[..., :, -1] = 0.0, 0.0, 0.0, 0.0
        if not bool(current.any()):
            break
    return distance[0, 0, 1:-1, 1:-1]


def confidence_weight(
    photo: np.ndarray, generated: np.ndarray, opacity: np.ndarray | None, config: InversionConfig
) -> np.ndarray:
    """The photo's per-pixel share, float64 (h, w) in [0, 1] quantised to 1/255 steps (as anchors store it).

    0 at the footprint's edge and over transparent pixels; it rises (smoothstep) to 1 over a band whose width
    follows how well the generator reconstructs the photo nearby: min_band_px where the reconstruction is exact,
    max_band_px (at most a sixth of the photo's smaller side, so its middle is always shown as it is) where its
    mean absolute error (blurred over ~max_band_px) reaches band_error. A poor fit so fades in slowly and a good one
    sharply, and no frame shows either way."""
    error = np.abs(photo.astype(np.float32) - generated.astype(np.float32)).mean(axis=2) / 255.0
    opaque = np.ones(photo.shape[:2], dtype=np.float32) if opacity is None else opacity.astype(np.float32)
    with torch.no_grad():
        error_t = torch.from_numpy(error * opaque)[None, None]
        weight_t = torch.from_numpy(opaque)[None, None]
        radius = max(1, config.max_band_px // 2)
        for _ in range(2):  # two box blurs ~ a Gaussian; normalised by the opaque share so holes do not dilute it
            error_t, weight_t = _box_blur(error_t, radius), _box_blur(weight_t, radius)
        local_error = (error_t / weight_t.clamp_min(1e-6))[0, 0].numpy()
        distance = _distance_inside(torch.from_numpy(opaque >= 0.5), config.max_band_px + 1).numpy()
    widest = max(config.min_band_px, min(config.max_band_px, min(photo.shape[:2]) // 6))  # the photo stays shown
    band = config.min_band_px + (widest - config.min_band_px) * np.clip(local_error / config.band_error, 0.0, 1.0)
    t = np.clip(distance.astype(np.float64) / band, 0.0, 1.0)
    weight = t * t * (3.0 - 2.0 * t) * np.clip(opaque.astype(np.float64), 0.0, 1.0)
    return quantized_weight(weight).astype(np.float64) / 255.0


def _initial_anchor(base: World, photo, footprint, row0, col0, rows, cols, config: InversionConfig) -> Anchor:
    """Start from the base world's own values, so an unfitted anchor renders exactly the base world."""
    geometry = base.geometry
    local = base.local_latents(row0, col0, rows, cols).clone().requires_grad_(True)
    inputs = base.window_inputs(row0, col0, rows, cols, every_noise=True)
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
        reach_px=config.reach_px,
    )


def noise_ramps(
    world: World,
    row0: int,
    col0: int,
    noises: list[torch.Tensor],
    footprint: Rect,
    opacity: np.ndarray | None,
    ramp_px: int,
) -> list[torch.Tensor]:
    """Per noise image of the window at z_S cell (row0, col0): float32 (H_l, W_l) in [0, 1], the share of the fitted
    noise in the noise the world reads. 0 outside the photo's footprint and over its transparent pixels, rising
    (smoothstep) to 1 within ramp_px of them. Noise shaped freely up to the edge drew a bright seam just outside
    the photo, and a sharp change from photo-like texture to the world's own."""
    opaque = np.ones((footprint.height, footprint.width), dtype=bool) if opacity is None else opacity >= 0.5
    distance = _distance_inside(torch.from_numpy(opaque), ramp_px + 1).numpy()
    t = np.clip(distance / max(1, ramp_px), 0.0, 1.0)
    share = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
    ramps = []
    for layer, noise in enumerate(noises):
        rows = np.rint(world.layer_positions(layer, row0, noise.shape[-2]) - footprint.y).astype(np.int64)
        cols = np.rint(world.layer_positions(layer, col0, noise.shape[-1]) - footprint.x).astype(np.int64)
        in_rows = (rows >= 0) & (rows < footprint.height)
        in_cols = (cols >= 0) & (cols < footprint.width)
        ramp = np.zeros(noise.shape[-2:], dtype=np.float32)
        ramp[np.ix_(in_rows, in_cols)] = share[np.ix_(rows[in_rows], cols[in_cols])]
        ramps.append(torch.from_numpy(ramp))
    return ramps


def _freeze(anchor: Anchor) -> None:
    anchor.local_latents.values = anchor.local_latents.values.detach()
    for noise in anchor.noises:
        noise.values = noise.values.detach()
    anchor.structure_style = anchor.structure_style.detach()
    anchor.texture_styles = anchor.texture_styles.detach()

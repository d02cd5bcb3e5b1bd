"""Random inputs of the generator for training and evaluation windows: coordinates at given vertical positions,
local latents, noise images, (mixed) styles, and paired batches for the diversity loss.

Training and evaluation draw from an explicit torch.Generator; only the world uses the coordinate hash.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from infinitygan.coords import coordinate_grid
from infinitygan.generator import Generator, WindowInputs


def window_row_px(generator: Generator, top_px: float, cells: int) -> np.ndarray:
    """World row (relative to the horizon) of every z_l row's centre for a window whose top output row is top_px.

    In the world, output pixel i of a window starting at z_S cell j0 is world row cell_px * j0 + pixel_offset + i,
    and z_l row J of that window is global cell j0 - m + J, centred at cell_px * (j0 - m + J) - center_frac.
    Solving for j0 from top_px gives the expression below (j0 may be fractional in training).
    """
    geometry = generator.geometry
    rows = np.arange(geometry.local_cells(cells), dtype=np.float64)
    return top_px - geometry.pixel_offset + geometry.cell_px * (rows - geometry.structure_margin) - geometry.center_frac


def sample_coords(
    generator: Generator, top_px: torch.Tensor, cells: int, rng: torch.Generator, *, jitter: bool
) -> torch.Tensor:
    """(B, 3, L, L) coordinates at the batch's vertical positions, with a random horizontal phase per sample and,
    in training, +-half-a-cell jitter (the paper's) on both axes."""
    config = generator.config
    cell_px = generator.geometry.cell_px
    length = generator.geometry.local_cells(cells)
    batch = top_px.shape[0]
    phase = torch.rand(batch, generator=rng, dtype=torch.float64) * config.coord_period_cells
    shift = (torch.rand(batch, 2, generator=rng, dtype=torch.float64) - 0.5) if jitter else torch.zeros(batch, 2)
    grids = []
    for b in range(batch):
        row_px = window_row_px(generator, float(top_px[b]) + float(shift[b, 0]) * cell_px, cells)
        col_cells = float(phase[b]) + float(shift[b, 1]) + np.arange(length, dtype=np.float64)
        grids.append(coordinate_grid(row_px, col_cells, config))
    return torch.stack(grids)


def sample_noises(generator: Generator, batch: int, cells: int, rng: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(batch, 1, size, size, generator=rng) for size in generator.geometry.layer_sizes(cells)]


def sample_local(generator: Generator, batch: int, cells: int, rng: torch.Generator) -> torch.Tensor:
    length = generator.geometry.local_cells(cells)
    return torch.randn(batch, generator.config.local_dim, length, length, generator=rng)


def mixed_styles(generator: Generator, z_global: torch.Tensor, rng: torch.Generator, mixing: float) -> torch.Tensor:
    """(B, L, w_dim) G_T styles; with probability `mixing` a sample switches to a second z's w at a uniform layer."""
    batch, num_styles = z_global.shape[0], generator.num_styles
    w = generator.mapping(z_global)
    if generator.training:
        generator.mapping.track_average(w.detach().float())  # w_avg stays fp32 under bf16 autocast
    styles = w[:, None, :].expand(batch, num_styles, -1)
    if mixing <= 0:
        return styles
    w_mix = generator.mapping(torch.randn(z_global.shape, generator=rng).to(z_global.device))
    cut = torch.randint(1, num_styles, (batch,), generator=rng)
    cut = torch.where(torch.rand(batch, generator=rng) < mixing, cut, torch.full_like(cut, num_styles))
    use_mix = torch.arange(num_styles)[None, :] >= cut[:, None]
    return torch.where(use_mix[:, :, None].to(w.device), w_mix[:, None, :], styles)


@dataclass
class FakeBatch:
    inputs: WindowInputs
    z_global: torch.Tensor
    styles: torch.Tensor


PAIRINGS = (None, "same_z_g", "same_z_l")


def sample_fake_inputs(
    generator: Generator,
    top_px: torch.Tensor,
    cells: int,
    rng: torch.Generator,
    device: torch.device,
    *,
    mixing: float,
    pairs: str | None,
    jitter: bool = True,
) -> FakeBatch:
    """Random inputs for a batch. pairs (the batch's second half against its first, which must then use the first
    half's position labels):
    - None: independent samples;
    - "same_z_g": the same z_g, styles and coordinates, fresh z_l and noise (InfinityGAN's diversity loss);
    - "same_z_l": the same z_l, noise and coordinates, fresh z_g and styles (mode seeking with respect to z_g).
    Raises ValueError for another pairing."""
    if pairs not in PAIRINGS:
        raise ValueError(f"pairs must be one of {PAIRINGS}, got {pairs!r}")
    batch = top_px.shape[0]
    base = batch // 2 if pairs else batch
    globals_drawn = batch if pairs == "same_z_l" else base
    z_global = torch.randn(globals_drawn, generator.config.global_dim, generator=rng)
    coords = sample_coords(generator, top_px[:base], cells, rng, jitter=jitter)
    if pairs:
        coords = torch.cat([coords, coords])
    if pairs == "same_z_g":
        z_global = torch.cat([z_global, z_global])
    z_global = z_global.to(device)
    styles = mixed_styles(generator, z_global[:globals_drawn], rng, mixing)
    if pairs == "same_z_g":
        styles = torch.cat([styles, styles])
    locals_drawn = base if pairs == "same_z_l" else batch
    local = sample_local(generator, locals_drawn, cells, rng)
    noises = sample_noises(generator, locals_drawn, cells, rng)
    if pairs == "same_z_l":
        local, noises = torch.cat([local, local]), [torch.cat([n, n]) for n in noises]
    inputs = WindowInputs(
        local_latents=local.to(device), coords=coords.to(device), noises=[n.to(device) for n in noises]
    )
    return FakeBatch(inputs, z_global, styles)


def paired_labels(vpos: torch.Tensor) -> torch.Tensor:
    """Position labels for a paired batch: the second half shares the first half's coordinates, so its labels too
    (the reference forgot to copy them, making half the fake labels wrong)."""
    half = vpos.shape[0] // 2
    return torch.cat([vpos[:half], vpos[:half]])

"""Resolution-dependent model interpolation, "layer swapping" (Pinkney & Adler 2020).

Two generators of the same architecture, one fine-tuned from the other on another domain, are blended layer by layer
according to the resolution each layer works at: coarse layers (structure: where the ridges and the horizon are)
from `base`, fine layers (texture and colour) from `partner`, with a hard cut at a swap level or a smooth sigmoid
over levels. As in the paper the mapping network, and so w_avg and every style, comes from the base model.

Levels: G_S works on the latent-cell grid, level 0; G_T stage i outputs 2^(i+1) elements per cell, level i + 1; a
MobileStyleGAN student's output noise, the grain of its image one step finer than its last stage, is the level after
its last stage's. The blended weights are a plain generator: a world renders with them exactly like with any
checkpoint, seamlessly.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from infinitygan.generator import Generator


def layer_level(name: str, stages: int) -> int | None:
    """Resolution level of a state-dict entry of a generator whose G_T has `stages` stages: 0 for G_S, i + 1 for G_T
    stage i, stages + 1 for a student's output noise (the grain at the image's own resolution, a MobileStyleGAN
    student's finest layer); None for the mapping network and fixed resampling kernels (taken from the base).

    Raises ValueError for an entry of no known level."""
    if name.startswith(("mapping.", "texture.skip_upsample.", "texture.low_band_upsample.")):
        return None
    if name.startswith("structure."):
        return 0
    if name.startswith("texture.stages."):
        return int(name.split(".")[2]) + 1
    if name.startswith("texture.output_noise."):
        return stages + 1
    raise ValueError(f"no resolution level for {name!r}")


def swap_levels(generator: Generator) -> int:
    """How many resolution levels hold layers (a swap level runs from -1, the partner alone, to this minus one):
    G_S, each G_T stage, and a student's output noise when it has one."""
    return 1 + len(generator.texture.stages) + int(generator.texture.output_noise is not None)


def partner_weight(level: int, swap_level: float, smooth: float = 0.0) -> float:
    """The partner's share of a layer at `level`: 1 above swap_level, 0 at or below it (smooth = 0); otherwise
    sigmoid((level - swap_level) / smooth)."""
    if smooth < 0:
        raise ValueError(f"smooth must be >= 0, got {smooth}")
    if smooth == 0:
        return 1.0 if level > swap_level else 0.0
    return 1.0 / (1.0 + math.exp(-(level - swap_level) / smooth))


def blend_generators(base: Generator, partner: Generator, swap_level: float, smooth: float = 0.0) -> Generator:
    """A new generator: coarse layers (level <= swap_level) from `base`, finer ones from `partner` (or a sigmoid mix
    with `smooth` > 0); the mapping network from `base`. Raises ValueError when the architectures differ."""
    if base.config.to_json() != partner.config.to_json():
        raise ValueError("layer swapping needs two generators of the same architecture (one fine-tuned from the other)")
    base_state, partner_state = base.state_dict(), partner.state_dict()
    blended = {}
    for name, tensor in base_state.items():
        level = layer_level(name, len(base.texture.stages))
        share = 0.0 if level is None else partner_weight(level, swap_level, smooth)
        if share == 0.0 or not tensor.is_floating_point():
            blended[name] = tensor.clone()
        elif share == 1.0:
            blended[name] = partner_state[name].clone()
        else:
            blended[name] = torch.lerp(tensor, partner_state[name], share)
    result = copy.deepcopy(base)
    result.load_state_dict(blended)
    return result.eval()


MAX_SWAP_LEVEL = 16.0
MAX_SMOOTH = 8.0


@dataclass(frozen=True)
class Blend:
    """A world's layer swap: `partner` (the partner model's hash) supplies the layers above `swap_level` (a sigmoid
    of width `smooth` when > 0). ValueError for a non-finite level or values outside [-1, 16] / [0, 8]."""

    partner: str
    swap_level: float
    smooth: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.swap_level) and -1.0 <= self.swap_level <= MAX_SWAP_LEVEL):
            raise ValueError(f"swap_level must be in [-1, {MAX_SWAP_LEVEL:g}], got {self.swap_level!r}")
        if not (math.isfinite(self.smooth) and 0.0 <= self.smooth <= MAX_SMOOTH):
            raise ValueError(f"smooth must be in [0, {MAX_SMOOTH:g}], got {self.smooth!r}")

    def describe(self) -> dict:
        return {"partner": self.partner, "swap_level": float(self.swap_level), "smooth": float(self.smooth)}

    def apply(self, base: Generator, partner: Generator) -> Generator:
        return blend_generators(base, partner, self.swap_level, self.smooth)

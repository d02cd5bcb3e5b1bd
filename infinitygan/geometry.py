"""Exact size algebra of the padding-free generator, along one axis (the two axes are identical).

Positions are measured in final-image pixels. Latent cell g (of z_l and of z_S, which are aligned) has its centre at
position cell_px * g. Every layer removes the same margin on both sides, so a layer's output is centred on its input
and the position of a layer's element 0, relative to cell_px * j0 for a z_S window starting at cell j0, is a constant
of the architecture. World pixel p has its centre at position p + center_frac, with 0 <= center_frac < 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

from infinitygan.config import OUTPUT_NOISE_KERNEL, GeneratorConfig


@dataclass(frozen=True)
class Window:
    """A z_S window [start, start + cells) that renders world pixels [first_pixel, first_pixel + size)."""

    start: int
    cells: int
    first_pixel: int
    size: int


@dataclass(frozen=True)
class Geometry:
    stages: int
    upsampler: str
    structure_margin: int  # z_l cells lost per side by G_S
    wavelet_output: bool = False  # the image is the inverse Haar transform of the last layer's 4 bands (SWAGAN)
    output_noise: bool = False  # one more noise image at the output's step (GeneratorConfig.output_noise)
    output_low_band: str = "nearest"  # GeneratorConfig.output_low_band: "linear" crops one output pixel per side

    @classmethod
    def of(cls, config: GeneratorConfig) -> Geometry:
        margin = config.structure_blocks * (config.structure_kernel // 2)
        return cls(
            config.stages,
            config.upsampler,
            margin,
            config.wavelet_output,
            config.output_noise,
            config.output_low_band,
        )

    @property
    def output_margin(self) -> int:
        """Output pixels lost per side after the last layer: 1 when a wavelet output's low band is interpolated
        bilinearly (its outer pixels lack a neighbour), else 0."""
        return int(self.wavelet_output and self.output_low_band == "linear")

    @property
    def cell_px(self) -> int:
        return 2 ** (self.stages + int(self.wavelet_output))

    @property
    def feature_cell_px(self) -> int:
        """Elements per latent cell in the last G_T layer (half of cell_px with a wavelet output)."""
        return 2**self.stages

    # ---- sizes -------------------------------------------------------------------------------------------------
    def layer_sizes(self, cells: int) -> list[int]:
        """Spatial size after each G_T layer (upsampling layer, then 3x3 conv, per stage) for a z_S window: the size
        of each layer's noise image. With output_noise, one more: the output noise, twice the last layer plus the 3
        elements its 4 x 4 valid filters consume (layer 2 * stages, centred like every layer, so its element 0 sits
        3/2 pixels before the uncropped output's pixel 0; output_margin pixels per side are cut after)."""
        sizes, size = [], cells
        for _ in range(self.stages):
            size = 2 * size - 3 if self.upsampler == "transposed" else 2 * size
            sizes.append(size)
            size -= 2
            sizes.append(size)
        if self.output_noise:
            sizes.append(2 * size + OUTPUT_NOISE_KERNEL - 1)
        return sizes

    def texture_size(self, cells: int) -> int:
        """Output pixels of an n-cell z_S window: the last layer has 2^k n - 5 (2^k - 1) (transposed) or
        2^k n - 2 (2^k - 1) (Haar) elements, and a wavelet output doubles that (less output_margin per side)."""
        per_stage_margin = 5 if self.upsampler == "transposed" else 2
        features = self.feature_cell_px * cells - per_stage_margin * (self.feature_cell_px - 1)
        return 2 * features - 2 * self.output_margin if self.wavelet_output else features

    def min_cells(self) -> int:
        """The smallest z_S window whose every layer has a positive size."""
        n = 1
        while min(self.layer_sizes(n)) <= 0:
            n += 1
        return n

    def cells_covering(self, px: int) -> int:
        """The fewest z_S cells per window side (at least min_cells) whose output is at least px pixels."""
        cells = self.min_cells()
        while self.texture_size(cells) < px:
            cells += 1
        return cells

    def local_cells(self, cells: int) -> int:
        """z_l cells needed for an n-cell z_S window."""
        return cells + 2 * self.structure_margin

    # ---- alignment -----------------------------------------------------------------------------------------------
    def layer_step(self, layer: int) -> Fraction:
        return Fraction(self.cell_px, 2 ** (layer // 2 + 1))

    def layer_origin(self, layer: int) -> Fraction:
        """Position of a G_T layer's element 0 relative to cell_px * j0 (independent of the window size)."""
        return self._layer_origins[layer]

    @cached_property
    def _layer_origins(self) -> tuple[Fraction, ...]:
        # Exact rational arithmetic, once per geometry: every rendered window asks for these (~100 times).
        n = self.min_cells()
        sizes = self.layer_sizes(n)
        return tuple(
            (self.cell_px * (n - 1) - (size - 1) * self.layer_step(layer)) / 2 for layer, size in enumerate(sizes)
        )

    @cached_property
    def output_origin(self) -> Fraction:
        last = 2 * self.stages - 1
        if self.wavelet_output:
            # The inverse Haar transform puts output pixels 2i and 2i + 1 a quarter step either side of element i;
            # output_margin of them are cropped.
            return self.layer_origin(last) - self.layer_step(last) / 4 + self.output_margin
        return self.layer_origin(last)

    @cached_property
    def pixel_offset(self) -> int:
        """Output pixel i of a window starting at z_S cell j0 is world pixel cell_px * j0 + pixel_offset + i."""
        return math.floor(self.output_origin)

    @cached_property
    def center_frac(self) -> float:
        return float(self.output_origin - self.pixel_offset)

    def layer_index_offset(self, layer: int, start: int) -> int:
        """Global integer index of element 0 of a G_T layer for a window starting at z_S cell `start`.

        Noise images are hashed on these indices, so every window sees the same noise at the same place.
        """
        step = self.layer_step(layer)
        return (self.cell_px // step) * start + math.floor(self.layer_origin(layer) / step)

    def cell_center_px(self, cell: int) -> float:
        """World pixel coordinate (row or column) at which latent cell `cell` is centred."""
        return self.cell_px * cell - self.center_frac

    def window_for_span(self, first_pixel: int, length: int) -> Window:
        """The smallest z_S window whose output covers world pixels [first_pixel, first_pixel + length)."""
        if length <= 0:
            raise ValueError(f"span length must be positive, got {length}")
        start = (first_pixel - self.pixel_offset) // self.cell_px
        skip = first_pixel - (self.cell_px * start + self.pixel_offset)
        cells = max(self.min_cells(), math.ceil((skip + length + self._texture_margin()) / self.cell_px))
        while self.texture_size(cells) < skip + length:
            cells += 1
        return Window(start, cells, self.cell_px * start + self.pixel_offset, self.texture_size(cells))

    def _texture_margin(self) -> int:
        return self.cell_px * self.min_cells() - self.texture_size(self.min_cells())

    # ---- footprints ------------------------------------------------------------------------------------------------
    def structure_cell_reach(self) -> Fraction:
        """How far (in pixels, each side of its centre) one z_S cell's value reaches into the output."""
        # The inverse Haar transform's half pixel; a bilinear low band reaches one pixel further.
        reach = Fraction(1, 2) + self.output_margin if self.wavelet_output else Fraction(0)
        for stage in range(self.stages):
            step_out = Fraction(self.cell_px, 2 ** (stage + 1))
            # transposed: the 3-tap transposed conv and the blur each reach one output pixel, the conv one more;
            # haar: the inverse wavelet spreads half an output pixel, the conv one.
            reach += 3 * step_out if self.upsampler == "transposed" else Fraction(3, 2) * step_out
        return reach

    def local_cell_footprint(self, cell: int) -> tuple[int, int]:
        """World pixels [lo, hi) along one axis that z_l cell `cell` can change (G_S spreads it over
        +-structure_margin z_S cells, G_T spreads each of those by structure_cell_reach)."""
        reach = self.structure_cell_reach()
        lo = self.cell_px * (cell - self.structure_margin) - reach - Fraction(self.center_frac)
        hi = self.cell_px * (cell + self.structure_margin) + reach - Fraction(self.center_frac)
        return math.ceil(lo), math.floor(hi) + 1

"""A world = (generator, seed, truncation psi and psi_local, optional style-mixing seed), rendered by rectangles.

Every render is assembled from fixed chunks of CHUNK_PX x CHUNK_PX world pixels aligned on a global grid, each
computed with exactly the same tensor shapes. Any two renders of the same world therefore run identical arithmetic
for every pixel they share: a 512x512 render is bit-identical to its four 256x256 quarters, and memory stays
constant however large the region.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from infinitygan.anchor import Anchor, Rect
from infinitygan.biomes import Biomes
from infinitygan.coords import coordinate_grid
from infinitygan.generator import Generator, WindowInputs
from infinitygan.geometry import Geometry
from infinitygan.latents import (
    STREAM_GLOBAL,
    STREAM_LOCAL,
    STREAM_MIXING,
    STREAM_NOISE_BASE,
    normal_grid,
    normal_vector,
)

CHUNK_PX = 256
COORD_LIMIT = 2**40  # |x|, |y| of every rendered pixel
MAX_REGION_PIXELS = 2**27  # one render_region call (~400 MB of RGB)
SEED_LIMIT = 2**63
DEFAULT_PSI = 0.8
DEFAULT_PSI_LOCAL = 0.5


class ChunkRunner(Protocol):
    """Runs G on a chunk's graph_arguments: float32 (1, 3, S, S) image (infinitygan.runtime.ChunkSession)."""

    def run(self, *arguments: torch.Tensor) -> np.ndarray: ...


class RegionError(ValueError):
    """A requested region or world parameter is outside what can be rendered."""


@dataclass(frozen=True)
class WorldSpec:
    """seed, truncation psi, optional style-mixing seed, optional biomes (regions along x with their own global
    styles, `infinitygan.biomes`; a world with biomes ignores mix_seed), and psi_local.

    psi truncates the global latents (z_g toward 0 for G_S, w toward its mean for G_T: StyleGAN's truncation trick);
    psi_local, in [0, 2], does the same for the local latents z_l (their mean is 0: z_l is multiplied by it). 1 draws
    from the distribution the generator was trained on; lower values trade structure (and, measured, closeness to
    the training photos) for fewer local shapes such as the teacher's floating blobs (MODEL_CARD.md, "Truncation").
    The noise images are not truncated: measured, that only took away fine texture the photos have. Raises
    RegionError for values outside those ranges."""

    seed: int
    psi: float = DEFAULT_PSI
    mix_seed: int | None = None
    biomes: Biomes | None = None
    psi_local: float = DEFAULT_PSI_LOCAL

    def __post_init__(self) -> None:
        for name, value in (("seed", self.seed), ("mix_seed", self.mix_seed)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
                raise RegionError(f"{name} must be an integer in [0, 2**63), got {value!r}")
        if not (isinstance(self.psi, int | float) and math.isfinite(self.psi) and -2.0 <= self.psi <= 2.0):
            raise RegionError(f"psi must be a number in [-2, 2], got {self.psi!r}")
        if not (
            isinstance(self.psi_local, int | float)
            and not isinstance(self.psi_local, bool)
            and math.isfinite(self.psi_local)
            and 0.0 <= self.psi_local <= 2.0
        ):
            raise RegionError(f"psi_local must be a number in [0, 2], got {self.psi_local!r}")


class World:
    """A renderable world; with an `anchor`, a photo pinned in it (see infinitygan.anchor)."""

    def __init__(
        self, generator: Generator, spec: WorldSpec, anchor: Anchor | None = None, *, session: ChunkRunner | None = None
    ) -> None:
        """session: renders this generator's chunks whose styles are vectors (graph_arguments), e.g. an ONNX Runtime
        infinitygan.runtime.ChunkSession of it; None renders every chunk with eager PyTorch."""
        self.generator = generator.eval()
        self.spec = spec
        self.anchor = anchor
        self.session = session
        self.geometry = generator.geometry
        config = generator.config
        with torch.no_grad():
            z_global = normal_vector(spec.seed, STREAM_GLOBAL, config.global_dim)[None]
            z_mix = None
            if spec.mix_seed is not None:
                z_mix = normal_vector(spec.mix_seed, STREAM_MIXING, config.global_dim)[None]
            self.texture_styles = generator.texture_styles(z_global, psi=spec.psi, z_mix=z_mix)
            # G_S takes the raw z_g; truncating it toward its mean (0) keeps psi meaningful for the structure too.
            self.structure_style = z_global * spec.psi
        self._chunk_window = [self.geometry.window_for_span(0, CHUNK_PX)] * 2
        self._region_styles: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # biome region -> (z_g psi, W+)
        if spec.biomes is not None and anchor is not None and anchor.reach_px is None:
            raise RegionError("biomes need the photo anchor to have a reach: without one its look is the whole world's")

    # ---- inputs ----------------------------------------------------------------------------------------------------
    def local_latents(self, row0: int, col0: int, height: int, width: int) -> torch.Tensor:
        """(local_dim, height, width) z_l for global cells [row0, +height) x [col0, +width), truncated by psi_local."""
        z_local = normal_grid(self.spec.seed, STREAM_LOCAL, row0, col0, height, width, self.generator.config.local_dim)
        return z_local * self.spec.psi_local

    def window_inputs(self, row0: int, col0: int, rows: int, cols: int, *, every_noise: bool = False) -> WindowInputs:
        """Inputs of the z_S window of rows x cols cells whose top-left cell is (row0, col0). The noise images of
        layers the generator does not read are empty (noise_images), unless every_noise (an inversion fits them)."""
        geometry, config = self.geometry, self.generator.config
        m = geometry.structure_margin
        lrow0, lcol0 = row0 - m, col0 - m
        lrows, lcols = geometry.local_cells(rows), geometry.local_cells(cols)
        row_px = geometry.cell_px * np.arange(lrow0, lrow0 + lrows, dtype=np.int64) - geometry.center_frac
        col_cells = np.mod(np.arange(lcol0, lcol0 + lcols, dtype=np.int64), config.coord_period_cells)
        read = None if every_noise else self.generator.texture.noise_reads
        noises = noise_images(geometry, self.spec.seed, row0, col0, rows, cols, read)
        local = self.local_latents(lrow0, lcol0, lrows, lcols)
        if self._touches_anchor(row0, col0, rows, cols):
            local = self.anchor.local_latents.paste_into(local, lrow0, lcol0)
            noises = [
                override.paste_into(
                    noise, geometry.layer_index_offset(layer, row0), geometry.layer_index_offset(layer, col0)
                )
                for layer, (override, noise) in enumerate(zip(self.anchor.noises, noises, strict=True))
            ]
        return WindowInputs(
            local_latents=local[None],
            coords=coordinate_grid(row_px, col_cells, config)[None],
            noises=noises,
        )

    def _touches_anchor(self, row0: int, col0: int, rows: int, cols: int) -> bool:
        """Whether the anchor changes anything this window computes: its blend weight is non-zero somewhere on the
        window's grids, or the window reads overridden latents or noise. Otherwise the window takes exactly the base
        world's code path, so far-away tiles stay bit-identical to the base world's."""
        anchor = self.anchor
        if anchor is None:
            return False
        geometry = self.geometry
        cell, m = geometry.cell_px, geometry.structure_margin
        local_cells = Rect(col0 - m, row0 - m, cols + 2 * m, rows + 2 * m)
        window_px = Rect(
            cell * local_cells.x, cell * local_cells.y, cell * local_cells.width, cell * local_cells.height
        )
        styles_reach = anchor.styles_reach()
        if styles_reach is None or window_px.intersects(styles_reach):
            return True
        if local_cells.intersects(anchor.local_latents.rect()):
            return True
        sizes_h, sizes_w = geometry.layer_sizes(rows), geometry.layer_sizes(cols)
        return any(
            Rect(
                geometry.layer_index_offset(layer, col0),
                geometry.layer_index_offset(layer, row0),
                sizes_w[layer],
                sizes_h[layer],
            ).intersects(noise.rect())
            for layer, noise in enumerate(anchor.noises)
        )

    def window_styles(
        self, row0: int, col0: int, rows: int, cols: int, *, anchor_only: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(G_S style, G_T styles) for a window: the world's style vectors, or near an anchor per-location maps that
        blend the anchor's inverted styles in with weight alpha (spatial style fusion). `anchor_only` takes the
        anchor's styles as plain vectors (alpha = 1 everywhere): the cheap form inversion optimises over the photo."""
        if anchor_only or (self.anchor is not None and self.anchor.reach_px is None):
            return self.anchor.structure_style[None], list(self.anchor.texture_styles[None].unbind(1))
        if self.spec.biomes is not None:
            structure, texture = self._biome_styles(row0, col0, rows, cols)
        else:
            structure, texture = self.structure_style, list(self.texture_styles.unbind(1))
        if not self._touches_anchor(row0, col0, rows, cols):
            return structure, texture
        geometry, m = self.geometry, self.geometry.structure_margin
        lrow_px = np.array([geometry.cell_center_px(r) for r in range(row0 - m, row0 + rows + m)])
        lcol_px = np.array([geometry.cell_center_px(c) for c in range(col0 - m, col0 + cols + m)])
        structure = self._blend(structure, self.anchor.structure_style, lrow_px, lcol_px)
        # Style k modulates a layer whose input grid is z_S (k = 0) or the output of G_T layer k - 1.
        sizes_h, sizes_w = geometry.layer_sizes(rows), geometry.layer_sizes(cols)
        row_grids = [lrow_px[m:-m]] + [self.layer_positions(i, row0, sizes_h[i]) for i in range(len(sizes_h))]
        col_grids = [lcol_px[m:-m]] + [self.layer_positions(i, col0, sizes_w[i]) for i in range(len(sizes_w))]
        texture = [
            self._blend(texture[k], self.anchor.texture_styles[k], row_grids[k], col_grids[k])
            for k in range(self.generator.num_styles)
        ]
        return structure, texture

    def region_styles(self, region: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(G_S style (global_dim,), W+ (num_styles, w_dim)) of biome region `region`, computed once per world."""
        styles = self._region_styles.get(region)
        if styles is None:
            config = self.generator.config
            z, psi = self.spec.biomes.style_of(self.spec.seed, self.spec.psi, region, config.global_dim)
            z_global = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))[None]
            with torch.no_grad():
                styles = (z_global[0] * psi, self.generator.texture_styles(z_global, psi=psi)[0])
            self._region_styles[region] = styles
        return styles

    def _biome_styles(self, row0: int, col0: int, rows: int, cols: int):
        """Styles of a window in a biome world: the region's vectors when the whole window lies inside one region,
        else column maps (1, D, 1, W) mixing the regions' styles column by column (spatial style fusion; a column
        map broadcasts down its rows, layers.crop_map)."""
        geometry, m, biomes = self.geometry, self.geometry.structure_margin, self.spec.biomes
        lcol_px = np.array([geometry.cell_center_px(c) for c in range(col0 - m, col0 + cols + m)])
        sizes_w = geometry.layer_sizes(cols)
        col_grids = [lcol_px[m:-m]] + [self.layer_positions(i, col0, sizes_w[i]) for i in range(len(sizes_w))]
        mixes = [biomes.mixing(self.spec.seed, lcol_px)] + [biomes.mixing(self.spec.seed, g) for g in col_grids]
        regions = {int(r) for left, right, _ in mixes for r in (*np.unique(left), *np.unique(right))}
        if len(regions) == 1:
            structure, texture = self.region_styles(regions.pop())
            return structure[None], list(texture[None].unbind(1))

        ordered = np.array(sorted(regions), dtype=np.int64)

        def column_map(values, mix) -> torch.Tensor:
            left, right, weight = mix
            table = torch.stack([values(int(r)) for r in ordered])  # (regions, D)
            a = table[torch.from_numpy(np.searchsorted(ordered, left))].t()  # (D, W)
            b = table[torch.from_numpy(np.searchsorted(ordered, right))].t()
            w = torch.from_numpy(weight.astype(np.float32))
            return (a + w * (b - a))[None, :, None, :]

        structure = column_map(lambda r: self.region_styles(r)[0], mixes[0])
        texture = [
            column_map(lambda r, k=k: self.region_styles(r)[1][k], mixes[k + 1])
            for k in range(self.generator.num_styles)
        ]
        return structure, texture

    def layer_positions(self, layer: int, start: int, size: int) -> np.ndarray:
        """World pixel positions (float64 (size,), pixel p at p) of G_T layer `layer`'s output elements, and so of its
        noise image's, along one axis, for a window starting at z_S cell `start`."""
        geometry = self.geometry
        origin = geometry.cell_px * start + float(geometry.layer_origin(layer)) - geometry.center_frac
        return origin + float(geometry.layer_step(layer)) * np.arange(size)

    def _blend(self, base: torch.Tensor, anchored: torch.Tensor, rows_px: np.ndarray, cols_px: np.ndarray):
        """base + alpha (anchored - base) per location: base is the world's style, a (1, D) vector or, in a biome
        world, a (1, D, H, W) map over the same rows and columns; anchored is the photo's (D,) style."""
        alpha = np.outer(self.anchor.alpha(rows_px, "y"), self.anchor.alpha(cols_px, "x"))
        alpha = torch.from_numpy(alpha.astype(np.float32))
        base = base[0] if base.dim() == 4 else base[0, :, None, None]
        return (base + alpha[None] * (anchored[:, None, None] - base))[None]

    # ---- rendering -------------------------------------------------------------------------------------------------
    def forward_window(self, row0: int, col0: int, rows: int, cols: int, *, anchor_only: bool = False):
        """(1, 3, H, W) float image of a z_S window; differentiable with respect to the anchor's tensors."""
        inputs = self.window_inputs(row0, col0, rows, cols)
        return self.generator(inputs, *self.window_styles(row0, col0, rows, cols, anchor_only=anchor_only))

    @torch.no_grad()
    def render_window(self, row0: int, col0: int, rows: int, cols: int) -> torch.Tensor:
        return self.forward_window(row0, col0, rows, cols)

    def chunk_window(self, chunk_y: int, chunk_x: int) -> tuple[int, int, int, int]:
        """(row0, col0, rows, cols): the z_S window whose image covers chunk (chunk_y, chunk_x). Chunk origins are
        multiples of CHUNK_PX (a multiple of cell_px), so every chunk's window has the same shape."""
        wy, wx = self._chunk_window
        cells = CHUNK_PX // self.geometry.cell_px
        return wy.start + chunk_y * cells, wx.start + chunk_x * cells, wy.cells, wx.cells

    def chunk_styles_are_vectors(self, chunk_y: int, chunk_x: int) -> bool:
        """Whether the chunk's styles are one vector per layer, so a session can render it, rather than per-location
        maps (near a biome boundary or a pinned photo), which render eagerly."""
        return _plain(*self.window_styles(*self.chunk_window(chunk_y, chunk_x)))

    def graph_arguments(self, row0: int, col0: int, rows: int, cols: int) -> tuple[torch.Tensor, ...] | None:
        """A window's inputs as plain tensors, in infinitygan.runtime.ChunkGraph's order (z_l, coordinates, G_S style,
        W+ (1, num_styles, w_dim), noise images), or None where its styles are per-location maps."""
        structure, texture = self.window_styles(row0, col0, rows, cols)
        if not _plain(structure, texture):
            return None
        return _graph_arguments(self.window_inputs(row0, col0, rows, cols), structure, texture)

    def render_chunk(self, chunk_y: int, chunk_x: int) -> np.ndarray:
        """uint8 (CHUNK_PX, CHUNK_PX, 3) of world pixels [CHUNK_PX*chunk_x, +CHUNK_PX) x [CHUNK_PX*chunk_y, ...).

        With a session, a chunk whose styles are vectors renders through it, the others eagerly; which one is a
        function of the chunk's position only, so renders stay reproducible and seamless."""
        wy, wx = self._chunk_window
        window = self.chunk_window(chunk_y, chunk_x)
        with torch.no_grad():
            structure, texture = self.window_styles(*window)
            inputs = self.window_inputs(*window)
            if self.session is not None and _plain(structure, texture):
                image = torch.from_numpy(self.session.run(*_graph_arguments(inputs, structure, texture)))[0]
            else:
                image = self.generator(inputs, structure, texture)[0]
        top, left = -wy.first_pixel, -wx.first_pixel
        pixels = to_uint8(image[:, top : top + CHUNK_PX, left : left + CHUNK_PX])
        if self.anchor is not None:
            paste_photo(pixels, self.anchor, CHUNK_PX * chunk_x, CHUNK_PX * chunk_y)
        return pixels


def _plain(structure: torch.Tensor, texture: list[torch.Tensor]) -> bool:
    """Whether a window's styles are one vector per layer (no per-location maps)."""
    return structure.dim() == 2 and all(style.dim() == 2 for style in texture)


def _graph_arguments(inputs: WindowInputs, structure: torch.Tensor, texture: list[torch.Tensor]):
    return (inputs.local_latents, inputs.coords, structure, torch.stack(texture, 1), *inputs.noises)


def noise_images(
    geometry: Geometry, seed: int, row0: int, col0: int, rows: int, cols: int, read: Sequence[bool] | None = None
) -> list[torch.Tensor]:
    """The noise image of every G_T layer, (1, 1, H_l, W_l) each, for the z_S window of rows x cols cells at
    (row0, col0) of world `seed`: layer l's element k is the hash of (seed, layer, its global index k), so two
    generators whose layer l has the same step (a teacher and its student) read the same values there.

    read: per layer, whether the generator reads its noise image (TextureSynthesizer.noise_reads); a layer it does
    not read gets an empty (1, 1, 0, 0) image instead of hashing values nobody uses. None: every layer's image."""
    sizes_h, sizes_w = geometry.layer_sizes(rows), geometry.layer_sizes(cols)
    if read is not None and len(read) != len(sizes_h):
        raise ValueError(f"read must give one flag per noise image ({len(sizes_h)}), got {len(read)}")
    return [
        normal_grid(
            seed,
            STREAM_NOISE_BASE + layer,
            geometry.layer_index_offset(layer, row0),
            geometry.layer_index_offset(layer, col0),
            sizes_h[layer],
            sizes_w[layer],
            1,
        )[None]
        if read is None or read[layer]
        else torch.zeros(1, 1, 0, 0)
        for layer in range(len(sizes_h))
    ]


def paste_photo(pixels: np.ndarray, anchor: Anchor, x: int, y: int) -> None:
    """Blend the anchor's photo into `pixels` (world pixels from (x, y)) with its per-pixel weight."""
    h, w = pixels.shape[:2]
    fp = anchor.footprint
    x0, x1 = max(x, fp.x), min(x + w, fp.x + fp.width)
    y0, y1 = max(y, fp.y), min(y + h, fp.y + fp.height)
    if x0 >= x1 or y0 >= y1 or anchor.weight is None:
        return
    weight = anchor.weight[y0 - fp.y : y1 - fp.y, x0 - fp.x : x1 - fp.x, None]
    photo = anchor.photo[y0 - fp.y : y1 - fp.y, x0 - fp.x : x1 - fp.x].astype(np.float64)
    generated = pixels[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float64)
    pixels[y0 - y : y1 - y, x0 - x : x1 - x] = np.rint(generated + weight * (photo - generated)).astype(np.uint8)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float32 in [-1, 1] -> (H, W, 3) uint8, rounding to nearest (ties to even).

    In NumPy, on the calling thread: the same float32 operations as torch's, so the same bits, but without waking
    torch's thread pool, whose idle spinning would take the cores an ONNX Runtime session's next chunk needs."""
    scaled = np.rint(
        (np.clip(image.detach().numpy(), np.float32(-1.0), np.float32(1.0)) + np.float32(1.0)) * np.float32(127.5)
    )
    return np.ascontiguousarray(scaled.astype(np.uint8).transpose(1, 2, 0))


def validate_region(x: int, y: int, width: int, height: int) -> None:
    for name, value in (("x", x), ("y", y), ("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise RegionError(f"{name} must be an integer, got {value!r}")
    if width <= 0 or height <= 0:
        raise RegionError(f"width and height must be positive, got {width}x{height}")
    for name, lo, size in (("x", x, width), ("y", y, height)):
        if lo < -COORD_LIMIT or lo + size > COORD_LIMIT:
            raise RegionError(f"{name} range [{lo}, {lo + size}) exceeds the world limit of +-2**40 pixels")
    if width * height > MAX_REGION_PIXELS:
        raise RegionError(f"{width}x{height} is more than {MAX_REGION_PIXELS} pixels in one render")


def region_chunks(x: int, y: int, width: int, height: int) -> Iterator[tuple[int, int]]:
    """(chunk_y, chunk_x) of every chunk the rectangle touches, row by row."""
    for cy in range(y // CHUNK_PX, (y + height - 1) // CHUNK_PX + 1):
        for cx in range(x // CHUNK_PX, (x + width - 1) // CHUNK_PX + 1):
            yield cy, cx


def render_region(world: World, x: int, y: int, width: int, height: int, *, progress: bool = False) -> np.ndarray:
    """uint8 (height, width, 3) of world pixels [x, x + width) x [y, y + height); y grows downward like image rows,
    and world pixel row 0 is the horizon."""
    validate_region(x, y, width, height)
    out = np.empty((height, width, 3), dtype=np.uint8)
    chunks = list(region_chunks(x, y, width, height))
    for cy, cx in tqdm(chunks, desc="render", unit="chunk", disable=not progress or len(chunks) < 4):
        chunk = world.render_chunk(cy, cx)
        top, left = cy * CHUNK_PX, cx * CHUNK_PX
        y0, y1 = max(y, top), min(y + height, top + CHUNK_PX)
        x0, x1 = max(x, left), min(x + width, left + CHUNK_PX)
        out[y0 - y : y1 - y, x0 - x : x1 - x] = chunk[y0 - top : y1 - top, x0 - left : x1 - left]
    return out


def iter_row_bands(
    world: World, x: int, y: int, width: int, height: int, band: int = CHUNK_PX, *, progress: bool = False
) -> Iterator[np.ndarray]:
    """The region [x, x + width) x [y, y + height) as consecutive uint8 (band, width, 3) row bands, top to bottom
    (the last may be shorter), each chunk rendered once: memory holds about two bands whatever the height, so a
    panorama of any size streams to a file. Bands concatenated equal render_region's output."""
    validate_region(x, y, width, height)
    pending: list[np.ndarray] = []
    pending_rows = 0
    chunk_rows = range(y // CHUNK_PX, (y + height - 1) // CHUNK_PX + 1)
    for chunk_row in tqdm(chunk_rows, desc="render", unit="chunk row", disable=not progress or len(chunk_rows) < 2):
        row_top, row_bottom = max(y, chunk_row * CHUNK_PX), min(y + height, (chunk_row + 1) * CHUNK_PX)
        pending.append(render_region(world, x, row_top, width, row_bottom - row_top))
        pending_rows += row_bottom - row_top
        while pending_rows >= band or (pending_rows and row_bottom == y + height):
            rows = np.concatenate(pending) if len(pending) > 1 else pending[0]
            take = min(band, pending_rows)
            yield rows[:take]
            pending, pending_rows = ([rows[take:]] if take < pending_rows else []), pending_rows - take

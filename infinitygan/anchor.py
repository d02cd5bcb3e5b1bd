"""Photo anchors: a photo pinned at world coordinates, with the latents that make the world continue it.

An anchor overrides, inside a bounded area, the world's local latents and noise (cell-aligned rectangles in global
indices), and carries the photo's inverted styles (the G_S style and the G_T W+). By default (`reach_px` None) those
styles govern the whole world: the photo's look carries on endlessly, as in InfinityGAN's outpainting. With a finite
`reach_px` the photo is pinned into an existing world instead: its styles are blended into the world's with a weight
alpha(x, y) that is 1 over the photo and falls smoothly to 0 within reach_px (InfinityGAN's spatial style fusion,
through per-location style maps), and beyond that the anchored world renders exactly like its base world, with the
same code path.

The photo's own pixels are shown inside the footprint with a per-pixel weight (`weight`, 1 = the photo): 0
at the footprint's edge and over transparent pixels of the upload, rising to 255 over a band whose width follows how
well the generator reconstructs the photo there (`infinitygan.invert.confidence_weight`). The weight is a function of
world coordinates only, so tiles composite it independently and still stitch exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from infinitygan.geometry import Geometry

ANCHOR_FORMAT = "infinitygan.anchor/2"
ANCHOR_FORMATS = ("infinitygan.anchor/1", ANCHOR_FORMAT)  # /1: a 192 px reach and a 12 px feather


@dataclass(frozen=True)
class Rect:
    """Half-open integer rectangle [x, x + width) x [y, y + height) (pixels or cells, by context)."""

    x: int
    y: int
    width: int
    height: int

    def expanded(self, by: int) -> Rect:
        return Rect(self.x - by, self.y - by, self.width + 2 * by, self.height + 2 * by)

    def intersects(self, other: Rect) -> bool:
        return (
            self.x < other.x + other.width
            and other.x < self.x + self.width
            and self.y < other.y + other.height
            and other.y < self.y + self.height
        )


@dataclass
class PatchOverride:
    """Values replacing a world's random grid on global indices [row0, +h) x [col0, +w) (last two dims)."""

    row0: int
    col0: int
    values: torch.Tensor

    def rect(self) -> Rect:
        return Rect(self.col0, self.row0, self.values.shape[-1], self.values.shape[-2])

    def paste_into(self, grid: torch.Tensor, grid_row0: int, grid_col0: int) -> torch.Tensor:
        """A copy of `grid` (..., H, W) at global origin (grid_row0, grid_col0) with this patch pasted where they
        overlap; differentiable with respect to `values`."""
        h, w = self.values.shape[-2:]
        top, left = max(self.row0, grid_row0), max(self.col0, grid_col0)
        bottom = min(self.row0 + h, grid_row0 + grid.shape[-2])
        right = min(self.col0 + w, grid_col0 + grid.shape[-1])
        if top >= bottom or left >= right:
            return grid
        out = grid.clone()
        out[..., top - grid_row0 : bottom - grid_row0, left - grid_col0 : right - grid_col0] = self.values[
            ..., top - self.row0 : bottom - self.row0, left - self.col0 : right - self.col0
        ]
        return out


@dataclass
class Anchor:
    footprint: Rect  # world pixels where the photo sits
    photo: np.ndarray  # uint8 (footprint.height, footprint.width, 3)
    local_latents: PatchOverride  # (local_dim, h, w) on z_l cells
    noises: list[PatchOverride]  # one per G_T layer, (h, w) on that layer's global indices
    structure_style: torch.Tensor  # (global_dim,) inverted G_S style
    texture_styles: torch.Tensor  # (num_styles, w_dim) inverted W+
    reach_px: int | None = None  # None: the photo's styles govern the whole world; else they fade out within this
    weight: np.ndarray | None = None  # float64 (footprint.height, footprint.width) in [0, 1]: the photo's share
    # (stored as uint8 / 255); None: 0 everywhere
    metadata: dict = field(default_factory=dict)

    # ---- where it acts -------------------------------------------------------------------------------------------
    def reach(self, geometry: Geometry) -> Rect | None:
        """World pixels whose rendering can differ from the base world; None when that is all of them."""
        if self.reach_px is None:
            return None
        cell = geometry.cell_px
        lat = self.local_latents
        h, w = lat.values.shape[-2:]
        latent_px = Rect(cell * lat.col0, cell * lat.row0, cell * w, cell * h)
        noise_px = [self._noise_rect_px(geometry, layer, n) for layer, n in enumerate(self.noises)]
        spread = cell * geometry.structure_margin + int(geometry.structure_cell_reach()) + 2 * cell
        rects = [self.footprint.expanded(self.reach_px + spread), latent_px.expanded(spread), *noise_px]
        x0, y0 = min(r.x for r in rects), min(r.y for r in rects)
        x1, y1 = max(r.x + r.width for r in rects), max(r.y + r.height for r in rects)
        return Rect(x0, y0, x1 - x0, y1 - y0)

    @staticmethod
    def _noise_rect_px(geometry: Geometry, layer: int, noise: PatchOverride) -> Rect:
        step = int(geometry.layer_step(layer)) or 1
        h, w = noise.values.shape[-2:]
        pad = int(geometry.structure_cell_reach()) + geometry.cell_px
        return Rect(noise.col0 * step, noise.row0 * step, w * step, h * step).expanded(pad)

    def styles_reach(self) -> Rect | None:
        """World pixels where the anchor's styles take part (alpha > 0); None: everywhere (alpha = 1)."""
        return None if self.reach_px is None else self.footprint.expanded(self.reach_px)

    def alpha(self, positions_px: np.ndarray, axis: str) -> np.ndarray:
        """Per-axis style blend weight: 1 over the footprint, smoothstep down to 0 at reach_px outside it (1
        everywhere when the reach is unbounded)."""
        if self.reach_px is None:
            return np.ones_like(positions_px, dtype=np.float64)
        lo = self.footprint.x if axis == "x" else self.footprint.y
        size = self.footprint.width if axis == "x" else self.footprint.height
        distance = np.maximum(np.maximum(lo - positions_px, positions_px - (lo + size - 1)), 0.0)
        t = np.clip(1.0 - distance / max(1, self.reach_px), 0.0, 1.0)
        return t * t * (3.0 - 2.0 * t)

    # ---- storage ---------------------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        tensors = {
            "photo": torch.from_numpy(np.array(self.photo, dtype=np.uint8, copy=True)),
            "weight": torch.from_numpy(quantized_weight(self._weight_or_zero())),
            "local_latents": self.local_latents.values.detach().contiguous(),
            "structure_style": self.structure_style.detach().contiguous(),
            "texture_styles": self.texture_styles.detach().contiguous(),
        }
        for layer, noise in enumerate(self.noises):
            tensors[f"noise.{layer}"] = noise.values.detach().contiguous()
        header = {
            "format": ANCHOR_FORMAT,
            "footprint": json.dumps(self.footprint.__dict__),
            "local_origin": json.dumps([self.local_latents.row0, self.local_latents.col0]),
            "noise_origins": json.dumps([[n.row0, n.col0] for n in self.noises]),
            "reach_px": "unbounded" if self.reach_px is None else str(self.reach_px),
            "metadata": json.dumps(self.metadata, sort_keys=True),
        }
        return save_safetensors_bytes(tensors, metadata=header)

    @classmethod
    def from_bytes(cls, data: bytes) -> Anchor:
        tensors = load_safetensors_bytes(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])["__metadata__"]
        if header.get("format") not in ANCHOR_FORMATS:
            raise ValueError(f"not an anchor (format {header.get('format')!r})")
        local_row0, local_col0 = json.loads(header["local_origin"])
        origins = json.loads(header["noise_origins"])
        footprint = Rect(**json.loads(header["footprint"]))
        if header["format"] == ANCHOR_FORMAT:
            reach_px = None if header["reach_px"] == "unbounded" else int(header["reach_px"])
            weight = tensors["weight"].numpy().astype(np.float64) / 255.0
        else:  # format /1: styles faded within blend_px; the photo feathered linearly over feather_px
            reach_px = int(header["blend_px"])
            weight = feather_weight(footprint.height, footprint.width, int(header["feather_px"]))
        return cls(
            footprint=footprint,
            photo=tensors["photo"].numpy(),
            local_latents=PatchOverride(local_row0, local_col0, tensors["local_latents"]),
            noises=[PatchOverride(r, c, tensors[f"noise.{i}"]) for i, (r, c) in enumerate(origins)],
            structure_style=tensors["structure_style"],
            texture_styles=tensors["texture_styles"],
            reach_px=reach_px,
            weight=weight,
            metadata=json.loads(header["metadata"]),
        )

    def _weight_or_zero(self) -> np.ndarray:
        if self.weight is None:
            return np.zeros((self.footprint.height, self.footprint.width), dtype=np.float64)
        return self.weight


def quantized_weight(weight: np.ndarray) -> np.ndarray:
    """float weights in [0, 1] -> the uint8 (x 255) they are stored as; anchors keep the dequantised values, so a
    fresh anchor renders exactly like one read back."""
    return np.rint(np.clip(weight, 0.0, 1.0) * 255.0).astype(np.uint8)


def feather_weight(height: int, width: int, feather_px: int) -> np.ndarray:
    """float64 (height, width): 1 deep inside, ramping linearly to 0 at the edge over feather_px (format /1)."""

    def ramp(size: int) -> np.ndarray:
        positions = np.arange(size, dtype=np.float64)
        inside = np.minimum(positions, size - 1 - positions) + 1.0
        return np.clip(inside / (feather_px + 1), 0.0, 1.0)

    return np.outer(ramp(height), ramp(width))

"""Biomes: regions along x with their own global style, blended by spatial style fusion (InfinityGAN, Sec. 3.3).

Region k of a world spans world columns [b_k, b_{k+1}). The boundaries are a jittered grid, b_k = R k + R (u_k - 1/2)
/ 2 with R = region_px and u_k uniform in [0, 1) hashed from (world seed, k), so regions are R / 2 to 3R / 2 wide and
the region of any x, however far, is found in O(1) without walking from the origin. Region k's global latent z_g is
styles[k mod n] (seed, psi) when styles are given, else hashed from (world seed, k) at the world's psi. Within
transition_px / 2 of a boundary the styles of the two regions are mixed with a smoothstep weight in style space
(z_g for G_S, w for G_T), per location: the per-location style maps the generator already takes. Everything is a
function of world coordinates only, so any tile renders alone and stitches exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infinitygan.latents import STREAM_GLOBAL, bits_to_normal, hashed_bits, normal_vector

STREAM_BIOME_BOUNDARY = 20  # u_k (one channel, column k)
STREAM_BIOME_STYLE = 21  # z_g of region k (column k)
MIN_REGION_PX = 256
MAX_REGION_PX = 1 << 30
MAX_STYLES = 64
# What the service gives a world that does not say (POST /worlds without "biomes", the default world): a new look
# every 1.5 screens or so at the native zoom, blended over a quarter of each region (MODEL_CARD.md, "Biomes").
SERVED_REGION_PX = 2048
SERVED_TRANSITION_PX = 512


@dataclass(frozen=True)
class BiomeStyle:
    """One biome's look: the global latent of world `seed` at truncation `psi`."""

    seed: int
    psi: float


@dataclass(frozen=True)
class Biomes:
    """Regions along x (see the module docstring). region_px: mean region width in world pixels at the native zoom
    (MIN_REGION_PX .. MAX_REGION_PX); transition_px: width of the blend band centred on each boundary (1 ..
    region_px / 2, so two bands never overlap); styles: up to MAX_STYLES explicit looks cycled over the regions, or
    () for looks hashed from the world's seed. Raises ValueError for values outside those ranges."""

    region_px: int = SERVED_REGION_PX
    transition_px: int = SERVED_TRANSITION_PX
    styles: tuple[BiomeStyle, ...] = ()

    def __post_init__(self) -> None:
        if not MIN_REGION_PX <= self.region_px <= MAX_REGION_PX:
            raise ValueError(f"region_px must be in [{MIN_REGION_PX}, {MAX_REGION_PX}], got {self.region_px}")
        if not 1 <= self.transition_px <= self.region_px // 2:
            raise ValueError(f"transition_px must be in [1, region_px / 2 = {self.region_px // 2}]")
        if len(self.styles) > MAX_STYLES:
            raise ValueError(f"at most {MAX_STYLES} biome styles, got {len(self.styles)}")
        object.__setattr__(self, "styles", tuple(self.styles))

    def describe(self) -> dict:
        """JSON-ready description (what world ids content-address and the API reports)."""
        return {
            "region_px": self.region_px,
            "transition_px": self.transition_px,
            "styles": [{"seed": s.seed, "psi": float(s.psi)} for s in self.styles],
        }

    # ---- where the regions are -------------------------------------------------------------------------------------
    def boundary(self, seed: int, k: np.ndarray) -> np.ndarray:
        """float64 world column b_k of each region index in k (int64 array)."""
        k = np.asarray(k, dtype=np.int64)
        u = _uniform(seed, STREAM_BIOME_BOUNDARY, k.reshape(-1)).reshape(k.shape)
        return self.region_px * k.astype(np.float64) + self.region_px * (u - 0.5) / 2.0

    def region_of(self, seed: int, x: np.ndarray) -> np.ndarray:
        """int64 region index of each world column position x (float, |x| below 2**40); O(1) per position."""
        x = np.asarray(x, dtype=np.float64)
        guess = np.floor(x / self.region_px).astype(np.int64)  # b_guess <= x < b_(guess+1), give or take one region
        region = guess.copy()
        region[x < self.boundary(seed, guess)] -= 1
        region[x >= self.boundary(seed, guess + 1)] += 1
        return region

    def mixing(self, seed: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(left, right, weight) per position: the style there is (1 - weight) * style(left) + weight * style(right),
        with weight 0 outside transition bands (left == right there)."""
        x = np.asarray(x, dtype=np.float64)
        region = self.region_of(seed, x)
        start, end = self.boundary(seed, region), self.boundary(seed, region + 1)
        half = self.transition_px / 2.0
        left, right = region.copy(), region.copy()
        weight = np.zeros_like(x)
        near_start = x - start < half  # inside the band around this region's left boundary
        near_end = end - x <= half
        left[near_start] = region[near_start] - 1
        weight[near_start] = _smoothstep((x[near_start] - (start[near_start] - half)) / self.transition_px)
        right[near_end] = region[near_end] + 1
        weight[near_end] = _smoothstep((x[near_end] - (end[near_end] - half)) / self.transition_px)
        return left, right, weight

    def style_of(self, seed: int, psi: float, region: int, global_dim: int) -> tuple[np.ndarray, float]:
        """(z_g (global_dim,), psi) of region `region` of the world `seed` (psi: the world's)."""
        if self.styles:
            chosen = self.styles[region % len(self.styles)]
            return normal_vector(chosen.seed, STREAM_GLOBAL, global_dim).numpy(), float(chosen.psi)
        bits = hashed_bits(seed, STREAM_BIOME_STYLE, np.zeros(1, np.int64), np.array([region]), global_dim)
        return bits_to_normal(bits).reshape(global_dim), float(psi)


def _uniform(seed: int, stream: int, ks: np.ndarray) -> np.ndarray:
    bits = hashed_bits(seed, stream, np.zeros(1, dtype=np.int64), ks, 1).reshape(-1)
    return (bits >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)

"""Tile addressing for Leaflet's CRS.Simple on an endless canvas.

At the native zoom one tile is one model chunk: tile (native, x, y) covers world pixels [256x, 256x + 256) x
[256y, 256y + 256). Each zoom level below halves the resolution, so tile (native - k, x, y) covers the 2**k x 2**k
block of native tiles whose top-left one is (2**k x, 2**k y). Each level above doubles it: tile (native + k, x, y)
covers native pixels [256x / 2**k, 256(x + 1) / 2**k) (and likewise in y), upscaled. x and y may be negative; y grows
downward.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from infinitygan.world import CHUNK_PX, COORD_LIMIT
from tiles.errors import TileOutOfBounds, ZoomOutOfRange

TILE_SIZE = CHUNK_PX


@dataclass(frozen=True)
class TileAddress:
    z: int
    x: int
    y: int


@dataclass(frozen=True)
class TileGrid:
    native_zoom: int = 5
    zoom_out_levels: int = 3  # how many levels below native are rendered by area-downsampling
    zoom_in_levels: int = 0  # how many levels above native are upscaled from native tiles

    def __post_init__(self) -> None:
        if not 0 <= self.zoom_out_levels <= self.native_zoom <= 30 or not 0 <= self.zoom_in_levels <= 8:
            raise ValueError(f"need 0 <= zoom_out_levels <= native_zoom <= 30 and zoom_in_levels <= 8, got {self}")

    @property
    def min_zoom(self) -> int:
        return self.native_zoom - self.zoom_out_levels

    @property
    def max_zoom(self) -> int:
        return self.native_zoom + self.zoom_in_levels

    def span(self, z: int) -> int:
        """Native tiles per side of one tile at zoom z (z <= native)."""
        return 1 << (self.native_zoom - z)

    def tile_native_px(self, z: int) -> int:
        """Native world pixels per side of one tile at zoom z: 256 * 2**(native - z) (at least 1 above native)."""
        return TILE_SIZE << (self.native_zoom - z) if z <= self.native_zoom else TILE_SIZE >> (z - self.native_zoom)

    def index_range(self, z: int) -> tuple[int, int]:
        """Inclusive (lowest, highest) tile index at zoom z that stays inside the coordinate limit."""
        limit_tiles = COORD_LIMIT // self.tile_native_px(z)
        return -limit_tiles, limit_tiles - 1

    def check(self, tile: TileAddress) -> None:
        if not self.min_zoom <= tile.z <= self.max_zoom:
            raise ZoomOutOfRange(f"zoom {tile.z} is outside {self.min_zoom}..{self.max_zoom}")
        lo, hi = self.index_range(tile.z)
        for name, value in (("x", tile.x), ("y", tile.y)):
            if not lo <= value <= hi:
                raise TileOutOfBounds(f"{name}={value} at zoom {tile.z} is outside [{lo}, {hi}] (world limit 2**40 px)")

    def world_bounds(self, tile: TileAddress) -> tuple[int, int, int]:
        """(left, top, size) of the tile in native world pixels."""
        size = self.tile_native_px(tile.z)
        return tile.x * size, tile.y * size, size

    def children(self, tile: TileAddress) -> list[TileAddress]:
        """The four tiles one zoom level up, in row-major order: top-left, top-right, bottom-left, bottom-right."""
        z, x, y = tile.z + 1, 2 * tile.x, 2 * tile.y
        return [TileAddress(z, x, y), TileAddress(z, x + 1, y), TileAddress(z, x, y + 1), TileAddress(z, x + 1, y + 1)]

    def tiles_covering(self, z: int, left: int, top: int, right: int, bottom: int) -> Iterator[TileAddress]:
        """Every tile at zoom z touching world pixels [left, right) x [top, bottom), clipped to the world limit."""
        if right <= left or bottom <= top:
            return
        size = self.tile_native_px(z)
        lo, hi = self.index_range(z)
        for y in range(max(lo, top // size), min(hi, (bottom - 1) // size) + 1):
            for x in range(max(lo, left // size), min(hi, (right - 1) // size) + 1):
                yield TileAddress(z, x, y)

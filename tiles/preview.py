"""A preview of an anchored world: the photo and the landscape the model grew around it, on every side.

Built from native tiles through the tile pipeline (so it shares their cache, singleflight and admission control, and
shows exactly the served pixels), then cached itself like a tile.
"""

from __future__ import annotations

import asyncio

import numpy as np

from infinitygan.anchor import Rect
from tiles.cache import KEY_VERSION
from tiles.errors import NotAnchored
from tiles.geometry import TILE_SIZE, TileAddress
from tiles.imaging import decode_png, encode_png
from tiles.service import TileService
from tiles.worlds import WorldRecord

MARGIN_FRACTION = 0.5  # the preview shows this much of the footprint's size beyond each of its sides


def preview_rect(footprint: tuple[int, int, int, int]) -> Rect:
    x, y, width, height = footprint
    dx, dy = round(width * MARGIN_FRACTION), round(height * MARGIN_FRACTION)
    return Rect(x - dx, y - dy, width + 2 * dx, height + 2 * dy)


def preview_key(render_id: str, world_id: str) -> str:
    return f"preview:{KEY_VERSION}:{render_id}:{world_id}.png"


async def stitch_native(service: TileService, world: WorldRecord, area: Rect) -> np.ndarray:
    """uint8 (height, width, 3) world pixels of `area`, assembled from served native tiles."""
    z = service.grid.native_zoom
    tiles = list(service.grid.tiles_covering(z, area.x, area.y, area.x + area.width, area.y + area.height))
    served = await asyncio.gather(*(service.tile(world, TileAddress(z, t.x, t.y)) for t in tiles))
    out = np.empty((area.height, area.width, 3), dtype=np.uint8)
    for tile, result in zip(tiles, served, strict=True):
        pixels = decode_png(result.png)
        left, top = tile.x * TILE_SIZE, tile.y * TILE_SIZE
        x0, x1 = max(area.x, left), min(area.x + area.width, left + TILE_SIZE)
        y0, y1 = max(area.y, top), min(area.y + area.height, top + TILE_SIZE)
        out[y0 - area.y : y1 - area.y, x0 - area.x : x1 - area.x] = pixels[y0 - top : y1 - top, x0 - left : x1 - left]
    return out


async def preview_png(service: TileService, world: WorldRecord) -> bytes:
    """PNG of the anchored world around its photo; raises NotAnchored for a world without one."""
    if world.footprint is None:
        raise NotAnchored(f"world {world.id} has no photo to preview")
    key = preview_key(service.renderer.render_id, world.id)
    png = await service.cache.get(key)
    if png is None:
        pixels = await stitch_native(service, world, preview_rect(world.footprint))
        png = await service.scheduler.run(encode_png, pixels)
        await service.cache.put(key, png)
    return png

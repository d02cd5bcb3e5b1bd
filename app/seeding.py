"""Pre-rendering an area into the shared cache (`infinitygan seed`), through the same pipeline as requests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tqdm import tqdm

from app.resources import open_resources
from app.settings import Settings
from tiles.geometry import TileAddress

SEED_CONCURRENCY = 8  # enough to keep the render threads busy; the scheduler bounds the real parallelism


@dataclass(frozen=True)
class SeedReport:
    tiles: int
    rendered: int  # tiles that were not in the cache (rendered now, or built from children)
    cached: int  # tiles that were already there


async def seed_tiles(
    settings: Settings, world_id: str, zooms: tuple[int, int], bbox: tuple[int, int, int, int], *, progress: bool
) -> SeedReport:
    """Render every tile of zoom levels zooms[0]..zooms[1] touching world pixels bbox = (x0, y0, x1, y1), x1 > x0 and
    y1 > y0 (ValueError otherwise). Native zoom first, so zoom-out tiles are built from cached children."""
    x0, y0, x1, y1 = bbox
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"the bbox [{x0}, {x1}) x [{y0}, {y1}) is empty: X1 must exceed X0 and Y1 must exceed Y0")
    # Seeding renders tiles only: no outpainting worker in this short-lived process.
    async with open_resources(settings.model_copy(update={"outpaint_worker": False})) as resources:
        world = resources.worlds.default if world_id == "default" else await resources.worlds.get(world_id)
        service = resources.tiles
        low, high = sorted(zooms)
        addresses: list[TileAddress] = []
        for z in range(high, low - 1, -1):
            service.grid.check(TileAddress(z, 0, 0))  # ZoomOutOfRange for a zoom the server cannot render
            addresses.extend(service.grid.tiles_covering(z, *bbox))
        gate = asyncio.Semaphore(SEED_CONCURRENCY)
        bar = tqdm(total=len(addresses), unit="tile", desc=f"seed {world.id}", disable=not progress)

        async def one(tile: TileAddress) -> bool:
            async with gate:
                served = await service.tile(world, tile)
                bar.update()
                return served.cache_hit

        # One zoom level at a time: every parent then finds its children in the cache.
        hits = []
        for z in range(high, low - 1, -1):
            hits += await asyncio.gather(*(one(t) for t in addresses if t.z == z))
        bar.close()
        return SeedReport(tiles=len(addresses), rendered=hits.count(False), cached=hits.count(True))

"""Pre-rendering an area into the shared cache (`infinitygan seed`), through the same pipeline as requests."""

from __future__ import annotations

import asyncio

from tqdm import tqdm

from app.resources import open_resources
from app.settings import Settings
from tiles.geometry import TileAddress

SEED_CONCURRENCY = 8  # enough to keep the render threads busy; the scheduler bounds the real parallelism


async def seed_tiles(
    settings: Settings, world_id: str, zooms: tuple[int, int], bbox: tuple[int, int, int, int], *, progress: bool
) -> int:
    """Render every tile of zoom levels zooms[0]..zooms[1] touching world pixels bbox = (x0, y0, x1, y1); returns the
    number of tiles. Native zoom first, so zoom-out tiles are built from cached children."""
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

        async def one(tile: TileAddress) -> None:
            async with gate:
                await service.tile(world, tile)
                bar.update()

        # One zoom level at a time: every parent then finds its children in the cache.
        for z in range(high, low - 1, -1):
            await asyncio.gather(*(one(t) for t in addresses if t.z == z))
        bar.close()
        return len(addresses)

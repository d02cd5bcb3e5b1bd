"""The tile pipeline: cache lookup, then one render per tile across all callers and replicas, then cache write.

Below the native zoom a tile is the 2x2 area-downsample of its four children, which come through this same
pipeline, so zoom-out tiles reuse whatever children (and native tiles) are already cached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from tiles.anchors import AnchorStore
from tiles.cache import TileCache, tile_key
from tiles.errors import RenderQueueFull
from tiles.geometry import TILE_SIZE, TileAddress, TileGrid
from tiles.imaging import UPSCALE_MARGIN_PX, decode_png, downsample_children, encode_png, upscale_crop
from tiles.memory_tier import MemoryTier
from tiles.metrics import TileMetrics
from tiles.renderer import TileRenderer
from tiles.scheduler import RenderScheduler
from tiles.singleflight import SingleFlight
from tiles.worlds import WorldRecord

log = logging.getLogger(__name__)

T = TypeVar("T")

# The lock holder renews its lock every third of the TTL for as long as it works on the tile (queue wait included),
# so a live holder keeps it however long the render takes, and a holder that died loses it within one TTL.
LOCK_TTL_MS = 5_000
LOCK_POLL_S = 0.05
LOCK_MAX_WAIT_S = 120.0  # a holder still renewing after this long is treated as stuck: render here


@dataclass(frozen=True)
class Tile:
    png: bytes
    etag: str  # strong ETag of png (tiles.memory_tier.png_etag)
    cache_hit: bool  # from the memory tier or Redis, not rendered for this request
    seconds: float  # time this request spent producing the tile


class TileService:
    def __init__(
        self,
        renderer: TileRenderer,
        cache: TileCache,
        scheduler: RenderScheduler,
        grid: TileGrid,
        metrics: TileMetrics,
        anchors: AnchorStore | None = None,
        *,
        memory: MemoryTier | None = None,
        lock_ttl_ms: int = LOCK_TTL_MS,
        lock_poll_s: float = LOCK_POLL_S,
        lock_max_wait_s: float = LOCK_MAX_WAIT_S,
    ) -> None:
        self.renderer = renderer
        self.cache = cache
        self.scheduler = scheduler
        self.grid = grid
        self.metrics = metrics
        self.anchors = anchors or AnchorStore(cache.link)
        self.memory = memory if memory is not None else MemoryTier(0)  # (an empty tier is falsy: it has a len)
        self.lock_ttl_ms = lock_ttl_ms
        self.lock_poll_s = lock_poll_s
        self.lock_max_wait_s = lock_max_wait_s
        self._flights: SingleFlight[bytes] = SingleFlight()

    @property
    def model_hash(self) -> str:
        return self.renderer.model_hash

    def cached(self, world: WorldRecord, tile: TileAddress) -> Tile | None:
        """The tile from the in-process memory tier, or None; no I/O, so a hot tile needs no task or await.
        Raises ZoomOutOfRange or TileOutOfBounds."""
        self.grid.check(tile)
        entry = self.memory.get(tile_key(self.renderer.render_id, world.id, tile))
        if entry is None:
            return None
        self.metrics.cache_lookups.labels("memory").inc()
        self.metrics.served.labels(str(tile.z), "hit").inc()
        return Tile(png=entry.png, etag=entry.etag, cache_hit=True, seconds=0.0)

    async def tile(self, world: WorldRecord, tile: TileAddress) -> Tile:
        """The tile's PNG: memory tier, then Redis, then one render across callers and replicas. Raises
        ZoomOutOfRange, TileOutOfBounds or RenderQueueFull."""
        hot = self.cached(world, tile)
        if hot is not None:
            return hot
        started = time.perf_counter()
        key = tile_key(self.renderer.render_id, world.id, tile)
        png = await self._lookup(key)
        hit = png is not None
        if png is None:
            png = await self._produce_admitted(world, tile, key)
        entry = self.memory.get(key) or self.memory.put(key, png)  # a joined render may have kept it already
        self.metrics.served.labels(str(tile.z), "hit" if hit else "miss").inc()
        return Tile(png=png, etag=entry.etag, cache_hit=hit, seconds=time.perf_counter() - started)

    async def _lookup(self, key: str) -> bytes | None:
        png = await self.cache.get(key)
        result = "hit" if png is not None else ("miss" if self.cache.link.up else "error")
        self.metrics.cache_lookups.labels(result).inc()
        self.metrics.redis_up.set(1 if self.cache.link.up else 0)
        return png

    async def _produce_admitted(self, world: WorldRecord, tile: TileAddress, key: str) -> bytes:
        # Zoom-out tiles are background work: the render threads take any native or zoom-in tile before them.
        background = tile.z < self.grid.native_zoom
        if key in self._flights:  # joining a render already under way costs no extra work
            return await self._flights.do(key, lambda: self._produce(world, tile, key, background))
        # Admission counts work: a cold zoom-out tile k levels below native may need 4^k native renders; a zoom-in
        # tile up to 4 (its neighbourhood can reach into neighbouring native tiles).
        cost = 4 ** max(1, self.grid.native_zoom - tile.z) if tile.z != self.grid.native_zoom else 1
        try:
            self.scheduler.admit(cost, background=background)
        except RenderQueueFull:
            self.metrics.rejected.inc()
            raise
        self.metrics.pending.inc(cost)
        try:
            return await self._flights.do(key, lambda: self._produce(world, tile, key, background))
        finally:
            self.scheduler.release(cost, background=background)
            self.metrics.pending.dec(cost)

    async def _tile_png(self, world: WorldRecord, tile: TileAddress, background: bool) -> bytes:
        """A source tile of a zoom-out or zoom-in render: cached or produced, without admission (the tile it serves
        was admitted)."""
        key = tile_key(self.renderer.render_id, world.id, tile)
        png = await self._lookup(key)
        if png is None:
            png = await self._flights.do(key, lambda: self._produce(world, tile, key, background))
        return png

    async def _produce(self, world: WorldRecord, tile: TileAddress, key: str, background: bool) -> bytes:
        token = await self._lock_or_tile(key)
        if isinstance(token, bytes):
            return token  # another replica rendered it while we waited
        keeper = asyncio.create_task(self._keep_lock(key, token)) if token is not None else None
        try:
            # The holder of the lock we just missed may have finished between our lookup and our lock.
            png = await self.cache.get(key) if token is not None else None
            if png is None:
                png = await self._render(world, tile, background)
                await self.cache.put(key, png)
            return png
        finally:
            if keeper is not None:
                keeper.cancel()
            if token is not None:
                await self.cache.release_lock(key, token)

    async def _lock_or_tile(self, key: str) -> str | bytes | None:
        """Our lock token; or the tile, if the replica holding the lock finishes it first; or None (render without
        a lock) when Redis is gone or the holder looks stuck. A lock that vanishes without a tile (its holder died or
        failed) is taken over."""
        deadline = time.monotonic() + self.lock_max_wait_s
        while True:
            token = await self.cache.acquire_lock(key, self.lock_ttl_ms)
            if token is not None:
                return token
            while True:
                await asyncio.sleep(self.lock_poll_s)
                png = await self.cache.get(key)
                if png is not None:
                    return png
                if not self.cache.link.up:
                    return None  # Redis went away: nobody can hand us the tile, render it ourselves
                if time.monotonic() > deadline:
                    log.warning("lock on %s held for over %.0f s; rendering it here", key, self.lock_max_wait_s)
                    return None
                if not await self.cache.lock_held(key):
                    break  # try to take the lock over

    async def _keep_lock(self, key: str, token: str) -> None:
        while True:
            await asyncio.sleep(self.lock_ttl_ms / 3000)
            if not await self.cache.renew_lock(key, token, self.lock_ttl_ms):
                return

    async def _render(self, world: WorldRecord, tile: TileAddress, background: bool) -> bytes:
        run = self.scheduler.run
        if tile.z == self.grid.native_zoom:
            kind = "native"
            anchor = await self.anchors.get(world.anchor) if world.anchor is not None else None
            png, seconds = await run(
                _timed, self.renderer.render_native_png, world.spec, tile, anchor, world.blend, background=background
            )
        elif tile.z < self.grid.native_zoom:
            kind = "zoomout"
            children = self.grid.children(tile)
            pngs = await asyncio.gather(*(self._tile_png(world, child, background) for child in children))
            png, seconds = await run(_timed, downsample_children, list(pngs), background=background)
        else:
            kind = "zoomin"
            left, top, size = self.grid.world_bounds(tile)
            m = UPSCALE_MARGIN_PX
            native = self.grid.native_zoom
            sources = list(self.grid.tiles_covering(native, left - m, top - m, left + size + m, top + size + m))
            pngs = await asyncio.gather(*(self._tile_png(world, source, background) for source in sources))
            factor = TILE_SIZE // size
            region = (left - m, top - m, size + 2 * m)
            png, seconds = await run(_timed, upscale_tile, sources, list(pngs), region, factor, background=background)
        self.metrics.render_seconds.labels(kind).observe(seconds)
        self.metrics.renders.labels(kind).inc()
        return png


def _timed(function: Callable[..., T], *args: object) -> tuple[T, float]:
    """Runs in the render thread, so the time excludes waiting in the executor's queue."""
    started = time.perf_counter()
    return function(*args), time.perf_counter() - started


def upscale_tile(sources: list[TileAddress], pngs: list[bytes], region: tuple[int, int, int], factor: int) -> bytes:
    """PNG of a zoom-in tile: the native pixels of region = (left, top, size) cut from the native tiles that cover it,
    upscaled by factor with their UPSCALE_MARGIN_PX of context, the margin cropped away."""
    left, top, size = region
    xs, ys = sorted({s.x for s in sources}), sorted({s.y for s in sources})
    mosaic = np.zeros((len(ys) * TILE_SIZE, len(xs) * TILE_SIZE, 3), dtype=np.uint8)
    for source, data in zip(sources, pngs, strict=True):
        row, col = ys.index(source.y) * TILE_SIZE, xs.index(source.x) * TILE_SIZE
        mosaic[row : row + TILE_SIZE, col : col + TILE_SIZE] = decode_png(data)
    x0, y0 = left - xs[0] * TILE_SIZE, top - ys[0] * TILE_SIZE
    cut = mosaic[y0 : y0 + size, x0 : x0 + size]
    margin = UPSCALE_MARGIN_PX * factor
    return encode_png(upscale_crop(cut, factor, (margin, margin, TILE_SIZE, TILE_SIZE)))

"""Exporting an area (`infinitygan export`): every tile of a bbox and zoom range, produced by the service's own tile
pipeline (TileService: the bytes are exactly what GET /worlds/{id}/tiles/{z}/{x}/{y}.png answers), written as a
PMTiles or MBTiles archive, or as a static site (the PMTiles archive plus an offline Leaflet viewer).

- Shared cache: like `infinitygan seed`, tiles come from a running server's Redis when one is reachable (REDIS_URL,
  or the default server's embedded Redis announced in var/redis/redis.url) and what the export renders goes into
  it; with no server the export renders everything itself (only the default world is known then).
- Resumable: every finished tile is committed to a sidecar sqlite file next to the output (`sidecar_path`); an
  interrupted export started again takes those and renders only the rest. The archive is written from the sidecar
  at the end under a temporary name and renamed into place; the sidecar is deleted once the archive is there.
- Constant memory in the area's size: tiles are generated and produced a few at a time, stored on disk, and
  streamed into the archive in tile id order.
- Addressing and metadata: tiles/export_layout.py; formats: tiles/archives.py; the site: app/static_site.py.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pmtiles.tile import zxy_to_tileid
from tqdm import tqdm

from app.resources import load_partners, tile_renderer
from app.settings import Settings
from app.static_site import check_site_target, write_site
from infinitygan.checkpoint import load_generator
from tiles.anchors import AnchorStore
from tiles.archives import write_mbtiles, write_pmtiles
from tiles.cache import TileCache, tile_key
from tiles.errors import UnknownWorld, WorldStoreUnavailable
from tiles.export_layout import ExportLayout
from tiles.export_store import StoreCache, TileStore
from tiles.geometry import TileAddress, TileGrid
from tiles.metrics import TileMetrics
from tiles.redis_link import RedisLink, connect
from tiles.renderer import TileRenderer
from tiles.scheduler import RenderScheduler
from tiles.service import TileService
from tiles.worlds import WORLD_ID_PATTERN, WorldRecord, WorldRegistry

FORMATS = ("pmtiles", "mbtiles", "site")
SUFFIX_FORMATS = {".pmtiles": "pmtiles", ".mbtiles": "mbtiles"}
# Admission control protects a server's latency; an export is a batch job of its own: never refuse its work.
UNBOUNDED_PENDING = sys.maxsize


@dataclass(frozen=True)
class ExportProgress:
    total: int  # tiles in the export
    done: int  # finished so far (this run and earlier ones)
    rendered: int  # produced by this run: rendered by the model, or built from children or native neighbours
    reused: int  # taken from the shared Redis tile cache
    resumed: int  # finished by an earlier, interrupted run (read back from the sidecar)


@dataclass(frozen=True)
class ExportReport:
    out: Path
    format: str
    world: WorldRecord
    layout: ExportLayout
    progress: ExportProgress
    shared_cache: str | None  # the Redis URL tiles were shared through; None = rendered here only


def sidecar_path(out: Path) -> Path:
    """Where an export to `out` keeps its finished tiles until the archive is written: `OUT.partial.sqlite`."""
    return out.with_name(out.name + ".partial.sqlite")


def export_format(out: Path, fmt: str | None) -> str:
    """The format asked for, or the one out's suffix names (.pmtiles, .mbtiles); ValueError if neither says."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        return fmt
    inferred = SUFFIX_FORMATS.get(out.suffix.lower())
    if inferred is None:
        raise ValueError(f"cannot tell the format from {out.name!r}: pass --format {'|'.join(FORMATS)}")
    return inferred


def grid_of(settings: Settings) -> TileGrid:
    return TileGrid(settings.native_zoom, settings.zoom_out_levels, settings.zoom_in_levels)


def check_target(out: Path, fmt: str) -> None:
    """Fail before any rendering when out cannot be written: OSError with a message for the user. Creates out's
    parent folder if needed."""
    if fmt == "site":
        check_site_target(out)
    elif out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; a {fmt} archive is one file: name the file")
    if out.parent.exists() and not out.parent.is_dir():
        raise NotADirectoryError(f"{out.parent} is a file, not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)


async def _world(settings: Settings, world_id: str, model_hash: str, link: RedisLink | None) -> WorldRecord:
    default = settings.default_world(model_hash)
    if world_id in ("default", default.id):
        return default
    if not WORLD_ID_PATTERN.fullmatch(world_id):
        raise UnknownWorld(f"unknown world {world_id!r}: a world id is 16 hex digits, or 'default'")
    if link is None:
        raise WorldStoreUnavailable(
            f"world {world_id} is not the default world and no server's Redis is reachable to look it up: start "
            "the server (bash scripts/serve.sh, from this folder) or set REDIS_URL to its Redis"
        )
    return await WorldRegistry(link, model_hash, default).get(world_id)


async def export_area(
    settings: Settings,
    world_id: str,
    bbox: tuple[int, int, int, int],
    zooms: tuple[int, int],
    out: Path,
    fmt: str,
    *,
    progress: bool = False,
    on_tile: Callable[[ExportProgress], None] | None = None,
) -> ExportReport:
    """Export every tile of world zooms zooms[0]..zooms[1] touching native world pixels bbox = (x0, y0, x1, y1)
    to out in fmt (one of FORMATS), through settings.redis_url's cache if set (None: no shared cache).

    Raises AreaError (a ValueError) for a bad area or zoom range and OSError for an unwritable out, both before the
    model loads; UnknownWorld or WorldStoreUnavailable for a world that cannot be found; SidecarError for a sidecar
    that is not one. `on_tile` is called after each finished tile (the CLI's tests interrupt an export with it)."""
    layout = ExportLayout.plan(grid_of(settings), bbox, zooms)
    check_target(out, fmt)
    store = TileStore(sidecar_path(out))
    try:
        model = await asyncio.to_thread(load_generator, settings.model)
        partners = await asyncio.to_thread(load_partners, settings.partner_models, model)
        renderer = await asyncio.to_thread(tile_renderer, settings, model, partners)
        link = RedisLink(connect(settings.redis_url)) if settings.redis_url is not None else None
        try:
            world = await _world(settings, world_id, renderer.model_hash, link)
            counts = await _produce(settings, layout, world, renderer, store, link, progress, on_tile)
        finally:
            if link is not None:
                await link.close()
        if store.finished() != layout.total:  # every level was awaited in full: this would be a bug
            raise RuntimeError(f"{store.finished()} of {layout.total} tiles finished")
        if fmt == "pmtiles":
            write_pmtiles(out, store.archive_tiles(), layout, world)
        elif fmt == "mbtiles":
            write_mbtiles(out, store.archive_tiles(), layout, world)
        else:
            write_site(out, store.archive_tiles(), layout, world)
    except BaseException:
        if len(store):
            store.close()  # kept: the next run resumes from it
        else:
            store.remove()  # nothing to resume
        raise
    store.remove()
    return ExportReport(out, fmt, world, layout, counts, settings.redis_url)


async def _produce(
    settings: Settings,
    layout: ExportLayout,
    world: WorldRecord,
    renderer: TileRenderer,
    store: TileStore,
    link: RedisLink | None,
    progress: bool,
    on_tile: Callable[[ExportProgress], None] | None,
) -> ExportProgress:
    """Every tile of the layout into the store, level by level in layout.production_order()."""
    shared = TileCache(link) if link is not None else None
    scheduler = RenderScheduler(
        settings.render_threads, UNBOUNDED_PENDING, settings.torch_threads, settings.retry_after_s
    )
    cache = StoreCache(store, shared)
    service = TileService(renderer, cache, scheduler, layout.grid, TileMetrics(), AnchorStore(cache.link))
    in_flight = 2 * settings.render_threads + 2  # enough to keep the render threads busy
    state = {"done": 0, "rendered": 0, "reused": 0, "resumed": 0}
    bar = tqdm(total=layout.total, unit="tile", desc=f"export {world.id}", disable=not progress)

    def finished(kind: str) -> None:
        state["done"] += 1
        state[kind] += 1
        bar.update()
        bar.set_postfix(rendered=state["rendered"], reused=state["reused"], resumed=state["resumed"], refresh=False)
        if on_tile is not None:
            on_tile(ExportProgress(total=layout.total, **state))

    async def one(tile: TileAddress, key: str, tile_id: int) -> None:
        served = await service.tile(world, tile)
        store.finish(tile_id, key, served.png)
        finished("reused" if served.cache_hit else "rendered")

    store.start_archive()
    try:
        for z in layout.production_order():  # a level's tiles are all finished before the next level starts
            tasks: set[asyncio.Task] = set()
            try:
                for tile in layout.tiles(z):
                    key = tile_key(renderer.render_id, world.id, tile)
                    tile_id = zxy_to_tileid(*layout.to_archive(tile))
                    if store.has(key):
                        store.finish(tile_id, key)
                        finished("resumed")
                        continue
                    tasks.add(asyncio.create_task(one(tile, key, tile_id)))
                    if len(tasks) >= in_flight:
                        done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                        for task in done:
                            task.result()
                while tasks:
                    done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        bar.close()
        scheduler.shutdown()
    return ExportProgress(total=layout.total, **state)

"""Everything the app holds open while it runs, built in the lifespan handler and closed after it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from app.settings import Settings
from infinitygan.checkpoint import CheckpointError, LoadedGenerator, load_generator
from tiles.anchors import AnchorStore
from tiles.cache import TileCache
from tiles.embedded_redis import EmbeddedRedis, supervise
from tiles.geometry import TileGrid
from tiles.jobs import JobQueue
from tiles.memory_tier import MemoryTier
from tiles.metrics import TileMetrics
from tiles.outpaint import OutpaintWorker, worker_link
from tiles.redis_link import RedisLink, connect
from tiles.renderer import TileRenderer
from tiles.scheduler import RenderScheduler, intra_op_threads
from tiles.service import TileService
from tiles.worlds import WorldRegistry

log = logging.getLogger(__name__)


@dataclass
class Resources:
    settings: Settings
    tiles: TileService
    worlds: WorldRegistry
    jobs: JobQueue
    worker: OutpaintWorker | None  # the embedded outpainting worker, if this process runs one
    metrics: TileMetrics
    link: RedisLink
    redis_url: str
    embedded_redis: EmbeddedRedis | None  # the private redis-server this process supervises, if any
    cache_warning: str | None
    partner_hashes: dict[str, str]  # layer-swapping partner name (file stem) -> model hash

    @property
    def redis_embedded(self) -> bool:
        return self.embedded_redis is not None


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def load_partners(folder: Path | None, model: LoadedGenerator) -> dict[str, LoadedGenerator]:
    """Layer-swapping partners of `model`: the *.safetensors under `folder` (sub-folders too) with its architecture,
    by file stem. One folder can so hold partners for several served architectures (the teacher's beside
    `students/`); the others are skipped.

    Raises CheckpointError for an unreadable file or two partners of the served architecture with one name."""
    if folder is None or not Path(folder).is_dir():
        return {}
    partners: dict[str, LoadedGenerator] = {}
    found: dict[str, Path] = {}
    for path in sorted(Path(folder).rglob("*.safetensors")):
        partner = load_generator(path)
        if partner.generator.config.to_json() != model.generator.config.to_json():
            log.info("partner model %s skipped: not the served model's architecture", path)
            continue
        if path.stem in found:
            raise CheckpointError(f"partner models {found[path.stem]} and {path} are both named {path.stem!r}")
        partners[path.stem], found[path.stem] = partner, path
    return partners


def tile_renderer(settings: Settings, model: LoadedGenerator, partners: dict[str, LoadedGenerator]) -> TileRenderer:
    """The renderer with the settings' runtime, each render on the scheduler's share of threads."""
    return TileRenderer(
        model,
        {partner.model_hash: partner for partner in partners.values()},
        runtime=settings.runtime,
        threads=intra_op_threads(settings.render_threads, settings.torch_threads),
    )


def job_queue(link: RedisLink, model_hash: str, settings: Settings) -> JobQueue:
    return JobQueue(link, model_hash, lease_s=settings.outpaint_lease_s, max_attempts=settings.outpaint_max_attempts)


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    async with AsyncExitStack() as stack:
        model = await asyncio.to_thread(load_generator, settings.model)
        partners = await asyncio.to_thread(load_partners, settings.partner_models, model)
        renderer = await asyncio.to_thread(tile_renderer, settings, model, partners)
        redis_url, embedded = settings.redis_url, None
        if redis_url is None:
            embedded = EmbeddedRedis(
                maxmemory=settings.embedded_redis_maxmemory, data_dir=settings.embedded_redis_data_dir
            )
            await asyncio.to_thread(embedded.start)
            stack.callback(embedded.stop)
            supervisor = asyncio.create_task(supervise(embedded, settings.embedded_redis_supervise_s))
            stack.push_async_callback(_cancel, supervisor)  # stops before the server does (LIFO)
            redis_url = embedded.url
        link = RedisLink(connect(redis_url))
        stack.push_async_callback(link.close)
        scheduler = RenderScheduler(
            settings.render_threads, settings.max_pending_renders, settings.torch_threads, settings.retry_after_s
        )
        stack.callback(scheduler.shutdown)
        metrics = TileMetrics()
        cache = TileCache(link)
        grid = TileGrid(settings.native_zoom, settings.zoom_out_levels, settings.zoom_in_levels)
        default_world = settings.default_world(renderer.model_hash)
        jobs = job_queue(link, renderer.model_hash, settings)
        worker = None
        if settings.outpaint_worker:
            own_link = worker_link(redis_url)
            stack.push_async_callback(own_link.close)  # closed after the worker stops (the stack unwinds LIFO)
            worker = OutpaintWorker(
                model,
                job_queue(own_link, renderer.model_hash, settings),
                concurrency=settings.outpaint_concurrency,
                name="embedded-worker",
                max_aspect=settings.outpaint_max_aspect,
                max_job_memory_mb=settings.outpaint_max_job_memory_mb,
                torch_threads=settings.torch_threads,
            )
            await stack.enter_async_context(worker)
        warning = await cache.check_eviction_policy()
        if warning:
            log.warning(warning)
        where = f"embedded at {redis_url}" if embedded is not None else "external"
        log.info("model %s, redis %s", renderer.model_hash, where)
        yield Resources(
            settings=settings,
            tiles=TileService(
                renderer,
                cache,
                scheduler,
                grid,
                metrics,
                AnchorStore(link),
                memory=MemoryTier(int(settings.memory_cache_mb * 2**20)),
            ),
            worlds=WorldRegistry(link, renderer.model_hash, default_world),
            jobs=jobs,
            worker=worker,
            metrics=metrics,
            link=link,
            redis_url=redis_url,
            embedded_redis=embedded,
            cache_warning=warning,
            partner_hashes={name: partner.model_hash for name, partner in partners.items()},
        )

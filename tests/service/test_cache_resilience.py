"""The cache under stress: Redis dying mid-flight, memory filling up, replicas sharing a lock, a full queue."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.service.conftest import LiveServer, overfill_tile_cache, renders, service_settings
from tiles.cache import TileCache, tile_key
from tiles.embedded_redis import EmbeddedRedis
from tiles.geometry import TileAddress, TileGrid
from tiles.metrics import TileMetrics
from tiles.redis_link import RedisBusy, RedisLink, connect
from tiles.renderer import TileRenderer
from tiles.scheduler import RenderScheduler
from tiles.service import TileService
from tiles.worlds import WORLD_KEY_PREFIX, WorldRecord


def test_stopping_redis_mid_test_still_serves_tiles(tiny_model: Path) -> None:
    redis_server = EmbeddedRedis(maxmemory="64mb").start()
    try:
        with (
            LiveServer(service_settings(redis_server.url, tiny_model)) as server,
            httpx.Client(base_url=server.base_url, timeout=60) as client,
        ):
            world = client.post("/worlds", json={"seed": 99}).json()["id"]
            url = f"/worlds/{world}/tiles/5/0/0.png"
            cached = client.get(url)
            assert client.get(url).headers["x-cache"] == "HIT"
            assert client.get("/healthz").json()["status"] == "ok"

            redis_server.stop()

            again = client.get(url)  # hot: the memory tier still has it
            assert again.status_code == 200 and again.headers["x-cache"] == "HIT"
            assert again.content == cached.content
            server.resources.tiles.memory.clear()
            rendered = client.get(url)  # and without it, rendered again without Redis
            assert rendered.status_code == 200 and rendered.headers["x-cache"] == "MISS"
            assert rendered.content == cached.content
            for path in (f"/worlds/{world}/tiles/5/1/0.png", f"/worlds/{world}/tiles/4/0/0.png", "/tiles/5/9/9.png"):
                assert client.get(path).status_code == 200, path
            health = client.get("/healthz").json()
            assert health["status"] == "degraded"
            assert health["redis"]["status"] == "down" and health["redis"]["error"]
            # Creating a world needs the store: an honest 503, never cached.
            created = client.post("/worlds", json={"seed": 100})
            assert created.status_code == 503
            assert created.headers["retry-after"] and created.headers["cache-control"] == "no-store"
            assert 'tile_cache_lookups_total{result="error"}' in client.get("/metrics").text
    finally:
        redis_server.stop()


def test_filling_the_tile_cache_never_evicts_worlds(client: httpx.Client, redis_client: redis.Redis, redis_url) -> None:
    if os.environ.get("REDIS_URL"):
        pytest.skip("changes maxmemory; only done on the suite's private embedded Redis")
    worlds = [client.post("/worlds", json={"seed": seed}).json()["id"] for seed in range(300, 310)]
    old_limit = redis_client.config_get("maxmemory")["maxmemory"]
    try:
        overfill_tile_cache(redis_client, redis_url)
        assert redis_client.dbsize() < 800 + len(worlds)
        for world in worlds:
            assert redis_client.exists(WORLD_KEY_PREFIX + world)
            assert redis_client.ttl(WORLD_KEY_PREFIX + world) == -1  # no TTL: not an eviction candidate
    finally:
        redis_client.config_set("maxmemory", old_limit)


def build_replica(model, redis_url: str, lock_ttl_ms: int = 30_000) -> tuple[TileService, RedisLink]:
    link = RedisLink(connect(redis_url))
    service = TileService(
        TileRenderer(model),
        TileCache(link),
        RenderScheduler(threads=1, max_pending=8),
        TileGrid(),
        TileMetrics(),
        lock_ttl_ms=lock_ttl_ms,
        lock_poll_s=0.02,
    )
    return service, link


def test_replica_waits_for_the_lock_holder_instead_of_rendering(tiny_loaded, redis_client, redis_url) -> None:
    async def scenario() -> None:
        holder, holder_link = build_replica(tiny_loaded, redis_url)
        waiter, waiter_link = build_replica(tiny_loaded, redis_url)
        world = WorldRecord.create(holder.model_hash, 5)
        tile = TileAddress(5, 3, 4)
        key = tile_key(holder.renderer.render_id, world.id, tile)
        token = await holder.cache.acquire_lock(key, 30_000)
        assert token is not None and token != "local"
        waiting = asyncio.ensure_future(waiter.tile(world, tile))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # blocked on the other replica's lock, not rendering
        png = await holder.scheduler.run(holder.renderer.render_native_png, world.spec, tile)
        await holder.cache.put(key, png)
        await holder.cache.release_lock(key, token)
        result = await asyncio.wait_for(waiting, 5)
        assert result.png == png
        assert waiter.metrics.renders_total() == 0
        assert await holder.cache.acquire_lock(key, 1000) is not None  # released by compare-and-delete
        for service, link in ((holder, holder_link), (waiter, waiter_link)):
            service.scheduler.shutdown()
            await link.close()

    asyncio.run(scenario())


def test_a_live_holder_keeps_its_lock_past_the_ttl_by_renewing(tiny_loaded, redis_client, redis_url) -> None:
    async def scenario() -> None:
        holder, holder_link = build_replica(tiny_loaded, redis_url, lock_ttl_ms=300)
        waiter, waiter_link = build_replica(tiny_loaded, redis_url, lock_ttl_ms=300)
        world = WorldRecord.create(holder.model_hash, 8)
        tile = TileAddress(5, -3, 2)
        key = tile_key(holder.renderer.render_id, world.id, tile)
        token = await holder.cache.acquire_lock(key, 300)
        keeper = asyncio.ensure_future(holder._keep_lock(key, token))  # what a rendering holder runs
        waiting = asyncio.ensure_future(waiter.tile(world, tile))
        await asyncio.sleep(1.5)  # five lock lifetimes
        assert not waiting.done() and waiter.metrics.renders_total() == 0
        png = await holder.scheduler.run(holder.renderer.render_native_png, world.spec, tile)
        await holder.cache.put(key, png)
        keeper.cancel()
        await holder.cache.release_lock(key, token)
        assert (await asyncio.wait_for(waiting, 5)).png == png
        assert waiter.metrics.renders_total() == 0
        for service, link in ((holder, holder_link), (waiter, waiter_link)):
            service.scheduler.shutdown()
            await link.close()

    asyncio.run(scenario())


def test_lock_release_only_deletes_our_own_lock(tiny_loaded, redis_client, redis_url) -> None:
    async def scenario() -> None:
        service, link = build_replica(tiny_loaded, redis_url)
        ours = await service.cache.acquire_lock("k", 60_000)
        await service.cache.release_lock("k", "someone-else")
        assert await service.cache.acquire_lock("k", 60_000) is None  # still held by us
        await service.cache.release_lock("k", ours)
        assert await service.cache.acquire_lock("k", 60_000) is not None
        service.scheduler.shutdown()
        await link.close()

    asyncio.run(scenario())


def test_abandoned_lock_is_taken_over_once_it_lapses(tiny_loaded, redis_client, redis_url) -> None:
    async def scenario() -> None:
        service, link = build_replica(tiny_loaded, redis_url, lock_ttl_ms=300)
        world = WorldRecord.create(service.model_hash, 6)
        tile = TileAddress(5, 0, 0)
        # A replica that crashed while rendering: its lock is never released nor renewed, and no tile is written.
        redis_client.set("lock:" + tile_key(service.renderer.render_id, world.id, tile), "crashed-replica", px=300)
        result = await asyncio.wait_for(service.tile(world, tile), 10)
        assert result.png and service.metrics.renders_total() == 1
        service.scheduler.shutdown()
        await link.close()

    asyncio.run(scenario())


def test_full_render_queue_answers_503_with_retry_after(redis_url, tiny_model, redis_client) -> None:
    settings = service_settings(redis_url, tiny_model, max_pending_renders=2)
    with LiveServer(settings) as server:

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
                return await asyncio.gather(*(http.get(f"/tiles/5/{x}/50.png") for x in range(12)))

        responses = asyncio.run(burst())
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) == {200, 503}, statuses
        rejected = [r for r in responses if r.status_code == 503]
        assert all(r.headers["retry-after"] == "2" and r.headers["cache-control"] == "no-store" for r in rejected)
        assert "detail" in rejected[0].json()
        with httpx.Client(base_url=server.base_url) as client:
            assert renders(client) == statuses.count(200)


def test_a_burst_beyond_the_pool_waits_for_connections_instead_of_marking_redis_down(redis_url) -> None:
    """150 concurrent commands (a zoomed-out view's burst) on one link: with redis-py's default pool of 100 the
    excess failed with "Too many connections" and the link went down for its cool-down."""

    async def burst() -> tuple[list[object], bool]:
        link = RedisLink(connect(redis_url))
        try:
            results = await asyncio.gather(
                *(link.run(lambda r: r.blpop(["infinitygan:test:empty"], timeout=0.2)) for _ in range(150)),
                return_exceptions=True,
            )
            return results, link.up
        finally:
            await link.close()

    results, up = asyncio.run(burst())
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert up


def test_a_pool_busy_past_its_wait_is_not_an_outage(redis_url) -> None:
    async def starve() -> tuple[list[object], bool, bool]:
        link = RedisLink(connect(redis_url, max_connections=2, pool_wait_s=0.1))
        try:
            results = await asyncio.gather(
                *(link.run(lambda r: r.blpop(["infinitygan:test:empty"], timeout=0.5)) for _ in range(4)),
                return_exceptions=True,
            )
            still_up = link.up
            after = await link.run(lambda r: r.ping())  # no cool-down: the next command goes straight through
            return results, still_up, after
        finally:
            await link.close()

    results, still_up, after = asyncio.run(starve())
    busy = [r for r in results if isinstance(r, BaseException)]
    assert busy and all(isinstance(r, RedisBusy) for r in busy)
    assert still_up and after is True


def test_admission_counts_zoom_out_work_and_native_tiles_go_first(redis_url, tiny_model, redis_client) -> None:
    """A cold zoom-2 tile is 64 native renders. Admission counted it as one request, so with it in flight cold native
    tiles queued behind all 64 renders (36 s each with the real model) and nothing was shed. Now zoom-out work is
    admitted by its renders into its own budget, and the render threads take native tiles first."""
    settings = service_settings(redis_url, tiny_model, max_pending_renders=64, render_threads=1)
    with LiveServer(settings) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        world = client.post("/worlds", json={"seed": 777}).json()["id"]
        warm = f"/worlds/{world}/tiles/5/40/40.png"
        assert client.get(warm).status_code == 200  # cached before the flood

        async def flood_then_probe():
            async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as http:
                zoom_out = asyncio.create_task(http.get(f"/worlds/{world}/tiles/2/0/0.png"))
                pending = 0
                for _ in range(400):
                    pending = (await http.get("/healthz")).json()["pending_renders"]
                    if pending >= 64 or zoom_out.done():
                        break
                    await asyncio.sleep(0.005)
                second = await http.get(f"/worlds/{world}/tiles/2/5/5.png")  # the zoom-out budget is full
                cold = await http.get(f"/worlds/{world}/tiles/5/-30/30.png")  # ahead of the queued renders
                cached = await http.get(warm)
                still_running = not zoom_out.done()
                return second, cold, cached, await zoom_out, pending, still_running

        second, cold, cached, zoom_out, pending, still_running = asyncio.run(flood_then_probe())
        assert pending == 64  # the zoom-out tile was admitted for its 64 native renders
        assert second.status_code == 503 and second.headers["retry-after"] == "2"  # more zoom-out work is shed
        assert cold.status_code == 200 and still_running  # a native tile did not wait for the zoom-out's renders
        assert cached.status_code == 200 and cached.headers["x-cache"] == "HIT"  # cached tiles keep flowing
        assert zoom_out.status_code == 200


def test_a_render_nobody_waits_for_is_never_started(tiny_loaded, redis_url) -> None:
    """The client went away (its request was cancelled) while every render thread was busy: the render is dropped
    instead of being run for nobody."""

    async def scenario() -> tuple[int, float]:
        service, link = build_replica(tiny_loaded, redis_url)  # one render thread
        try:
            blocker = asyncio.create_task(service.scheduler.run(time.sleep, 0.5))  # the only thread is busy
            await asyncio.sleep(0.05)
            world = WorldRecord.create(service.model_hash, 918_273)
            request = asyncio.create_task(service.tile(world, TileAddress(5, 3, 3)))
            await asyncio.sleep(0.15)  # looked up, locked, waiting for the thread
            request.cancel()  # the client disconnected
            await blocker
            await asyncio.sleep(0.3)
            return service.scheduler.skipped, service.metrics.renders_total()
        finally:
            service.scheduler.shutdown()
            await link.close()

    skipped, rendered = asyncio.run(scenario())
    assert skipped == 1 and rendered == 0

"""The deployed topology as real processes on loopback: one redis-server (append-only file on), two `infinitygan
serve` replicas sharing it, driven over HTTP. Replicas get SIGTERM and SIGKILL, Redis gets restarted and crashed,
mid-load; what a load balancer can retry must never surface as an error, and the cache must stay correct."""

from __future__ import annotations

import io
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from infinitygan.checkpoint import load_generator
from infinitygan.world import WorldSpec
from tests.model_fixtures import served_world
from tests.system.conftest import native_renders
from tests.system.load import LoadResult, run_load
from tests.system.topology import Topology
from tiles.cache import TILE_TTL_S
from tiles.geometry import TILE_SIZE
from tiles.service import LOCK_TTL_MS
from tiles.worlds import WORLD_KEY_PREFIX, biomes_from

NATIVE_ZOOM = 5  # Settings.native_zoom default
PHOTO = Path(__file__).resolve().parents[1] / "fixtures" / "picosdeeuropa_341x256.jpg"
TIMEOUT_S = 90.0


def new_world(base_url: str) -> dict:
    """A world nobody has rendered yet, so its first tiles are cold."""
    seed = random.SystemRandom().randrange(2**40)
    response = httpx.post(f"{base_url}/worlds", json={"seed": seed}, timeout=TIMEOUT_S)
    assert response.status_code == 201, response.text
    return response.json()


def tile_path(world_id: str, x: int, y: int, z: int = NATIVE_ZOOM) -> str:
    return f"/worlds/{world_id}/tiles/{z}/{x}/{y}.png"


def get(base_url: str, path: str) -> httpx.Response:
    return httpx.get(base_url + path, timeout=TIMEOUT_S)


def warm(topology: Topology, paths: list[str]) -> None:
    """Render these tiles (round-robin over replicas) and make every replica know their world."""
    urls = topology.base_urls()
    for i, path in enumerate(paths):
        assert get(urls[i % len(urls)], path).status_code == 200
    for url in urls:
        assert get(url, paths[0]).headers["x-cache"] == "HIT"


def load_in_background(topology: Topology, paths: list[str], duration_s: float, **kwargs) -> tuple:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(run_load, topology.base_urls(), paths, duration_s=duration_s, timeout_s=TIMEOUT_S, **kwargs)
    pool.shutdown(wait=False)
    return future


def assert_no_lost_requests(result: LoadResult) -> None:
    assert result.requests > 0
    assert result.server_errors == 0, result.summary()
    assert not result.unanswered, result.summary()
    assert set(result.statuses) == {200}, result.summary()


def assert_stalls_end_with_the_lock(result: LoadResult) -> None:
    """Render locks taken just before the event (by the dead replica, or held across the Redis restart, whose release
    could not be written) make other requests for those tiles wait until the lock expires, then render: the slowest
    request is bounded by the lock TTL (plus a render on a busy machine), never a hang."""
    assert result.percentile_ms(100) / 1000 < LOCK_TTL_MS / 1000 + 25, result.summary()


def test_a_tile_rendered_by_one_replica_is_a_cache_hit_on_the_other(topology: Topology) -> None:
    first, second = topology.base_urls()
    world = new_world(first)["id"]
    path = tile_path(world, 3, -2)

    rendered = get(first, path)
    served = get(second, path)

    assert rendered.status_code == served.status_code == 200
    assert rendered.headers["x-cache"] == "MISS"
    assert served.headers["x-cache"] == "HIT"
    assert served.content == rendered.content and served.headers["etag"] == rendered.headers["etag"]
    # A world created on one replica is known to the other (it lives in Redis, not in the process).
    assert httpx.get(f"{second}/worlds/{world}", timeout=TIMEOUT_S).json()["seed"] is not None


def test_concurrent_cold_requests_across_replicas_render_the_tile_once(topology: Topology) -> None:
    urls = topology.base_urls()
    world = new_world(urls[0])["id"]
    for url in urls:  # every replica knows the world before the race, so the race is about the tile only
        assert httpx.get(f"{url}/worlds/{world}", timeout=TIMEOUT_S).status_code == 200
    before = native_renders(urls)
    path = tile_path(world, -7, 11)
    start = threading.Barrier(12)

    def request(index: int) -> httpx.Response:
        start.wait()
        return get(urls[index % len(urls)], path)

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(request, range(12)))

    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert native_renders(urls) - before == 1


def test_sigterm_drains_requests_in_flight_and_refuses_new_ones(topology: Topology) -> None:
    stopping, other = topology.replicas
    world = new_world(stopping.base_url)["id"]
    # Zoom-out tiles two levels up render 16 native tiles each: seconds of work, well inside --graceful-timeout.
    paths = [tile_path(world, x, 0, z=NATIVE_ZOOM - 2) for x in range(2)]

    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        in_flight = [pool.submit(get, stopping.base_url, path) for path in paths]
        wait_until(lambda: pending_renders(stopping.base_url) > 0, timeout_s=30)
        stopping.signal(signal.SIGTERM)
        wait_until(lambda: refuses_connections(stopping.base_url), timeout_s=10)  # a balancer moves on to `other`
        still_running = sum(not future.done() for future in in_flight)
        responses = [future.result(timeout=TIMEOUT_S) for future in in_flight]

    assert still_running > 0  # the refusal above happened while requests were in flight
    assert [r.status_code for r in responses] == [200] * len(paths)
    # uvicorn re-raises the SIGTERM it caught once the lifespan shutdown (render threads drained) is done.
    assert stopping.wait() == -signal.SIGTERM
    log = stopping.log_path.read_text(errors="replace")
    assert "Application shutdown complete" in log and "timeout graceful shutdown exceeded" not in log
    # What it rendered is in the shared cache: the other replica serves it without rendering.
    assert all(get(other.base_url, path).headers["x-cache"] == "HIT" for path in paths)


def test_a_replica_killed_mid_load_loses_no_request(topology: Topology, system_model: Path) -> None:
    victim = topology.replicas[0]
    world = new_world(victim.base_url)
    warm_paths = [tile_path(world["id"], x, y) for x in range(4) for y in range(2)]
    warm(topology, warm_paths)
    cold_paths = [tile_path(world["id"], x, y) for x in range(10, 40) for y in range(2)]

    load = load_in_background(topology, warm_paths + cold_paths, duration_s=6.0, concurrency=8)
    time.sleep(2.0)
    victim.kill()
    result = load.result(timeout=180)

    print(result.summary())
    assert_no_lost_requests(result)
    assert result.retries > 0  # the kill really happened mid-load
    assert_stalls_end_with_the_lock(result)
    assert_cached_tiles_are_complete_and_correct(topology, world, system_model)


def test_redis_restart_mid_load_gives_no_5xx_and_recovers_by_itself(topology: Topology) -> None:
    urls = topology.base_urls()
    world = new_world(urls[0])["id"]
    warm_paths = [tile_path(world, x, y) for x in range(4) for y in range(2)]
    warm(topology, warm_paths)
    cold_paths = [tile_path(world, x, y) for x in range(-40, -10) for y in range(2)]

    load = load_in_background(topology, warm_paths + cold_paths, duration_s=7.0, concurrency=8)
    time.sleep(1.5)
    topology.redis.stop(signal.SIGTERM)
    time.sleep(1.5)  # serving without Redis for a while
    topology.redis.start()
    result = load.result(timeout=180)

    print(result.summary())
    assert_no_lost_requests(result)
    assert_stalls_end_with_the_lock(result)
    # No manual action: every replica reconnects, reports healthy and serves hits again.
    for url in urls:
        wait_until(lambda url=url: httpx.get(f"{url}/healthz", timeout=5).json()["status"] == "ok", timeout_s=30)
        wait_until(lambda url=url: get(url, warm_paths[0]).headers["x-cache"] == "HIT", timeout_s=30)
    with topology.redis.client() as client:
        assert client.exists(WORLD_KEY_PREFIX + world)


def test_a_redis_crash_loses_no_world(topology: Topology) -> None:
    """SIGKILL, not a clean shutdown: a world acknowledged to the client is in the append-only file already."""
    urls = topology.base_urls()
    worlds = [new_world(urls[i % 2])["id"] for i in range(5)]

    topology.redis.restart(signal.SIGKILL)

    with topology.redis.client() as client:
        for world in worlds:
            assert client.exists(WORLD_KEY_PREFIX + world), world
            assert client.ttl(WORLD_KEY_PREFIX + world) == -1  # no TTL: volatile-lru can never evict it
    # Every replica's pooled connections died with the server: the very first store operations after the restart
    # (creating a world, looking up one this replica never saw) succeed anyway, without waiting or retrying.
    for url in urls:
        assert httpx.post(f"{url}/worlds", json={"seed": 7}, timeout=TIMEOUT_S).status_code == 201, url
    unseen = [world for i, world in enumerate(worlds) if i % 2 == 0]  # created through replica 0 only
    for world in unseen:
        assert get(urls[1], tile_path(world, 0, 0)).status_code == 200, world


def test_an_outpaint_job_survives_its_worker_being_killed(topology: Topology) -> None:
    """Submitted through one replica, followed through the other; the worker dies mid-job (SIGKILL: no hand-back),
    a new worker takes the orphaned job over once its lease lapses, and both replicas serve the new world."""
    submit_to, follow_on = (httpx.Client(base_url=url, timeout=TIMEOUT_S) for url in topology.base_urls())
    with submit_to, follow_on:
        submitted = submit_to.post(
            "/outpaint", files={"image": ("photo.jpg", PHOTO.read_bytes())}, data={"seed": str(random.randrange(2**40))}
        )
        assert submitted.status_code == 202, submitted.text
        job_url = submitted.headers["location"]
        assert follow_on.get(job_url).json()["status"] == "queued"  # replicas run no jobs themselves

        first = topology.start_worker()
        wait_until(lambda: job_state(follow_on, job_url)["progress"] > 0, timeout_s=120)
        first.kill()
        assert job_state(follow_on, job_url)["status"] == "running"  # orphaned until a reaper notices

        topology.start_worker()
        job = wait_until_value(lambda: terminal(job_state(follow_on, job_url)), timeout_s=150)

        assert job["status"] == "succeeded" and job["attempts"] == 2, job
        world = job["result"]["world_id"]
        tiles = [client.get(tile_path(world, 0, 0)) for client in (submit_to, follow_on)]
        assert [t.status_code for t in tiles] == [200, 200] and tiles[0].content == tiles[1].content


# helpers


def wait_until(condition, *, timeout_s: float, interval_s: float = 0.1) -> None:
    """Poll `condition` until it is true; transport errors count as not yet (and the last one is raised)."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
            last_error = None
        except httpx.TransportError as exc:
            last_error = exc
        time.sleep(interval_s)
    if last_error is not None:
        raise last_error
    raise AssertionError(f"condition not met within {timeout_s} s")


def wait_until_value(produce, *, timeout_s: float, interval_s: float = 0.2):
    """The first non-None value `produce` returns within the time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (value := produce()) is not None:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"nothing within {timeout_s} s")


def job_state(client: httpx.Client, job_url: str) -> dict:
    response = client.get(job_url)
    assert response.status_code == 200, response.text
    return response.json()


def terminal(job: dict) -> dict | None:
    return job if job["status"] in ("succeeded", "failed") else None


def refuses_connections(base_url: str) -> bool:
    try:
        httpx.get(f"{base_url}/healthz", timeout=2)
    except httpx.ConnectError:
        return True
    return False


def pending_renders(base_url: str) -> int:
    return httpx.get(f"{base_url}/healthz", timeout=5).json()["pending_renders"]


def assert_cached_tiles_are_complete_and_correct(
    topology: Topology, world: dict, model_path: Path, *, pixel_checks: int = 10
) -> None:
    """Every tile of the world in Redis is a whole PNG, and a sample has the pixels a fresh render gives: a killed
    replica never leaves a partial or wrong value behind (each tile is one SET of complete bytes)."""
    with topology.redis.client() as client:
        keys = list(client.scan_iter(match=f"tile:*:{world['id']}:*", count=1000))
        assert keys
        tiles = {}
        for key in keys:
            z, x, y = (int(part) for part in key.decode().removesuffix(".png").rsplit(":", 3)[1:])
            assert z == NATIVE_ZOOM
            image = Image.open(io.BytesIO(client.get(key)))
            image.load()  # decodes every row: a truncated PNG raises here
            assert image.size == (TILE_SIZE, TILE_SIZE)
            assert 0 < client.ttl(key) <= TILE_TTL_S
            tiles[(x, y)] = np.asarray(image.convert("RGB"))
    spec = WorldSpec(
        seed=world["seed"], psi=world["psi"], psi_local=world["psi_local"], biomes=biomes_from(world["biomes"])
    )
    reference = served_world(load_generator(model_path).generator, spec)
    for (x, y), pixels in random.Random(0).sample(sorted(tiles.items()), min(pixel_checks, len(tiles))):
        with torch.inference_mode():
            expected = reference.render_chunk(y, x)
        # Processes with other torch thread counts may differ by one level on a handful of values (oneDNN's
        # summation order); a wrong tile would differ everywhere.
        difference = np.abs(pixels.astype(np.int16) - expected.astype(np.int16))
        assert difference.max() <= 1 and np.count_nonzero(difference) <= 1e-4 * difference.size, (x, y)

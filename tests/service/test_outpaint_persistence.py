"""Outpainting jobs survive restarts: the service stopped mid-job and after it, a worker process killed mid-job, and
the tile cache filled past its memory limit. Real redis-server with its append-only file, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from PIL import Image

from infinitygan.invert import place_photo
from tests.service.conftest import LiveServer, overfill_tile_cache, service_settings
from tests.service.outpaint_helpers import PHOTO, decode, submit, wait_for_job, wait_until
from tiles.anchors import anchor_key
from tiles.embedded_redis import EmbeddedRedis
from tiles.jobs import image_key, job_key
from tiles.worlds import WORLD_KEY_PREFIX

REPO = Path(__file__).resolve().parents[2]
LONG_JOB_STEPS = 30  # long enough to be caught (and stopped) mid-run however fast the machine, short enough to finish


def without_urls(job: dict) -> dict:
    """A job body minus its absolute URLs (each server listens on its own port)."""
    result = {k: v for k, v in (job["result"] or {}).items() if k not in ("tilejson", "preview")}
    return {**job, "result": result}


def photo_pixels_inside_tile(client: httpx.Client, world_id: str, job: dict) -> None:
    """Tile (5, -1, 0) holds part of the photo: deep inside the footprint (past the widest band over which the photo
    fades in, a sixth of its height) it must be the photo's own pixels."""
    fp = job["result"]["footprint"]
    rgb = np.asarray(Image.open(PHOTO).convert("RGB"))
    photo, footprint = place_photo(rgb, fp["height"], job["result"]["horizon"])
    assert (footprint.x, footprint.y) == (fp["x"], fp["y"])
    tile = decode(client.get(f"/worlds/{world_id}/tiles/5/-1/0.png").content)  # world x [-256, 0), y [0, 256)
    margin = fp["height"] // 6 + 2
    x0, y1 = fp["x"] + margin, fp["y"] + fp["height"] - margin
    served = tile[0:y1, x0 + 256 : 256 - margin]
    expected = photo[-fp["y"] : y1 - fp["y"], x0 - fp["x"] : -fp["x"] - margin]
    assert served.size > 0 and np.array_equal(served, expected)


def test_restarting_the_service_mid_job_and_after_it_loses_nothing(tiny_model: Path, tmp_path: Path) -> None:
    # The embedded default: no REDIS_URL, the embedded Redis persisting to a data directory.
    settings = service_settings(
        None, tiny_model, embedded_redis_data_dir=tmp_path / "redis", outpaint_steps=LONG_JOB_STEPS
    )

    with LiveServer(settings) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        job_id = submit(client, PHOTO.read_bytes(), seed=3).json()["id"]
        running = wait_until(client, job_id, lambda j: j["status"] == "running" and j["progress"] > 0)
        assert 0 < running["progress"] < 100
    # Stopped cleanly mid-run: the job went back to the queue, and this attempt does not count.

    with LiveServer(settings) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        resumed = client.get(f"/jobs/{job_id}").json()
        assert resumed["status"] in ("queued", "running"), resumed
        job = wait_for_job(client, job_id)
        assert job["status"] == "succeeded" and job["attempts"] == 1, job
        world_id = job["result"]["world_id"]
        first = client.get(f"/worlds/{world_id}/tiles/5/0/0.png")
        assert first.status_code == 200

    with LiveServer(settings) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        assert without_urls(client.get(f"/jobs/{job_id}").json()) == without_urls(job)
        assert client.get(f"/worlds/{world_id}").json()["footprint"] == job["result"]["footprint"]
        again = client.get(f"/worlds/{world_id}/tiles/5/0/0.png")
        assert again.headers["x-cache"] == "HIT" and again.content == first.content  # the tile cache persisted too
        # A tile never rendered before: its pixels come from the anchor this fresh process read back from disk.
        photo_pixels_inside_tile(client, world_id, job)
        assert client.get(f"/worlds/{world_id}/preview.png").status_code == 200


def start_worker(redis_url: str, model: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": redis_url, "INFINITYGAN_MODEL": str(model), "INFINITYGAN_OUTPAINT_LEASE_S": "1"}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], cwd=REPO, env=env, stdout=out, stderr=out)


def test_a_job_whose_worker_process_is_killed_is_retried_by_another(tiny_model: Path, tmp_path: Path) -> None:
    redis_server = EmbeddedRedis(maxmemory="64mb", data_dir=tmp_path / "redis").start()
    workers: list[subprocess.Popen] = []
    log = tmp_path / "workers.log"
    try:
        settings = service_settings(redis_server.url, tiny_model, outpaint_worker=False, outpaint_steps=LONG_JOB_STEPS)
        with LiveServer(settings) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
            job_id = submit(client, PHOTO.read_bytes(), seed=5).json()["id"]
            assert client.get(f"/jobs/{job_id}").json()["status"] == "queued"  # the API process runs no jobs

            workers.append(start_worker(redis_server.url, tiny_model, log))
            wait_until(client, job_id, lambda j: j["status"] == "running" and j["progress"] > 0, timeout_s=180)
            workers[0].kill()  # no chance to hand the job back
            workers[0].wait()
            assert client.get(f"/jobs/{job_id}").json()["status"] == "running"  # orphaned, until a reaper sees it

            workers.append(start_worker(redis_server.url, tiny_model, log))
            job = wait_for_job(client, job_id)
            assert job["status"] == "succeeded" and job["attempts"] == 2, (job, log.read_text())
            assert client.get(f"/worlds/{job['result']['world_id']}/tiles/5/0/0.png").status_code == 200

            workers[1].send_signal(signal.SIGTERM)
            try:
                assert workers[1].wait(timeout=120) == 0, log.read_text()
            except subprocess.TimeoutExpired:
                raise AssertionError(f"the worker did not stop on SIGTERM:\n{log.read_text()}") from None
            assert "worker stopped after 1 jobs" in log.read_text()
        with redis.Redis.from_url(redis_server.url) as r:
            assert r.keys("outpaint:*") == []  # queue and processing lists are empty (Redis drops empty lists)
            assert not r.exists(image_key(job_id))  # the upload is dropped once the job is done
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        redis_server.stop()


def test_filling_the_tile_cache_keeps_jobs_worlds_and_anchors(
    client: httpx.Client, redis_client: redis.Redis, redis_url: str, tiny_model: Path
) -> None:
    if os.environ.get("REDIS_URL"):
        pytest.skip("changes maxmemory; only done on the suite's private embedded Redis")
    job = wait_for_job(client, submit(client, PHOTO.read_bytes(), seed=11).json()["id"])
    assert job["status"] == "succeeded"
    job_id, world_id = job["id"], job["result"]["world_id"]
    kept = [job_key(job_id), anchor_key(job_id), WORLD_KEY_PREFIX + world_id]
    old_limit = redis_client.config_get("maxmemory")["maxmemory"]
    try:
        overfill_tile_cache(redis_client, redis_url)
        for key in kept:
            assert redis_client.exists(key), key
            assert redis_client.ttl(key) == -1, key  # no TTL: never an eviction candidate
    finally:
        redis_client.config_set("maxmemory", old_limit)
    # A fresh server process (nothing memoised) still has the job, and renders the world from the stored anchor.
    with LiveServer(service_settings(redis_url, tiny_model)) as server, httpx.Client(base_url=server.base_url) as fresh:
        assert without_urls(fresh.get(f"/jobs/{job_id}").json()) == without_urls(job)
        photo_pixels_inside_tile(fresh, world_id, job)

"""Outpainting jobs that must not run: one that keeps killing its workers, and one whose cost is unbounded."""

from __future__ import annotations

import asyncio
import io
import uuid

import pytest
from PIL import Image

from tiles.jobs import JobQueue, JobRequest, lease_key
from tiles.outpaint import OutpaintWorker
from tiles.redis_link import RedisLink, connect


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_job_whose_worker_died_twice_is_failed_not_run_again(redis_url) -> None:
    """A job that OOM-kills its worker stayed queued in the persisted Redis and killed the next worker, attempt after
    attempt. One death (a deploy) is retried; a second one fails the job."""

    async def scenario() -> list[object]:
        link = RedisLink(connect(redis_url))
        queue = JobQueue(link, f"test-{uuid.uuid4().hex[:8]}", lease_s=30.0)
        seen = []
        try:
            record, _ = await queue.submit(png(64, 48), JobRequest(1, 0.8, "fast", 3))
            for _ in range(3):
                claim = await queue.claim(1.0)
                seen.append((claim.stale, claim.record.attempts, claim.record.lost_workers))
                if claim.stale:
                    break
                await link.run(lambda r: r.delete(lease_key(record.id)))  # the worker died: its lease lapsed
                assert await queue.reap(record.id)
            seen.append(await queue.get(record.id))
        finally:
            await link.close()
        return seen

    *claims, final = asyncio.run(scenario())
    assert claims == [(False, 1, 0), (False, 2, 1), (True, 3, 2)]
    assert final.status == "failed" and "died 2 times" in final.error


def test_a_queued_job_with_an_unbounded_footprint_fails_cleanly_in_the_worker(redis_url, tiny_loaded) -> None:
    """Jobs queued before the aspect limit existed (or by another client of the queue) are checked again."""

    async def scenario():
        link = RedisLink(connect(redis_url))
        queue = JobQueue(link, f"test-{uuid.uuid4().hex[:8]}", lease_s=30.0)
        try:
            record, _ = await queue.submit(png(10000, 10), JobRequest(1, 0.8, "fast", 3))
            async with OutpaintWorker(tiny_loaded, queue, name="limits-test"):
                for _ in range(200):
                    job = await queue.get(record.id)
                    if job.status in ("failed", "succeeded"):
                        return job
                    await asyncio.sleep(0.05)
            return await queue.get(record.id)
        finally:
            await link.close()

    job = asyncio.run(scenario())
    assert job.status == "failed" and "10000x10" in job.error and "aspect" in job.error


def test_a_photo_whose_job_would_need_more_memory_than_the_limit_is_refused(redis_url, tiny_model) -> None:
    """A job's memory is bounded by INFINITYGAN_OUTPAINT_MAX_JOB_MEMORY_MB: estimated from the photo's size before
    anything is queued (422), and checked again by the worker (the job fails without running)."""
    import httpx

    from tests.service.conftest import LiveServer, service_settings
    from tests.service.outpaint_helpers import submit
    from tiles.outpaint import estimated_job_mb

    settings = service_settings(redis_url, tiny_model, outpaint_worker=False, outpaint_max_job_memory_mb=256)
    with LiveServer(settings) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        refused = submit(client, png(1024, 256), "wide.png")
        assert refused.status_code == 422 and "MB" in refused.json()["detail"], refused.text
        renderer = server.resources.tiles.renderer
        needed = estimated_job_mb(renderer.generator, 1024, 256, renderer.scene_height)
        assert f"{needed:.0f} MB" in refused.json()["detail"] and needed > 256
    roomy = service_settings(redis_url, tiny_model, outpaint_worker=False, outpaint_max_job_memory_mb=needed + 1)
    with LiveServer(roomy) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        assert submit(client, png(1024, 256), "wide.png").status_code == 202  # within the limit: queued


def test_the_memory_estimate_grows_with_the_footprint(tiny_loaded) -> None:
    from tiles.outpaint import JOB_BASE_MB, estimated_job_mb

    generator, height = tiny_loaded.generator, tiny_loaded.scene_height
    square, wide, wider = (estimated_job_mb(generator, w, 256, height) for w in (256, 512, 1024))
    assert JOB_BASE_MB < square < wide < wider
    assert estimated_job_mb(generator, 1024, 683, height) < wide  # a 3:2 photo is narrower than 2:1


def test_a_running_job_past_its_memory_limit_fails_and_the_next_job_runs(tiny_generator) -> None:
    """The estimate can be wrong (another model, a setting): the child process's RLIMIT_DATA is the bound that holds.
    The job fails with a clear error, the child is replaced, and the next job (under a roomy limit) runs."""
    import os

    from tiles.inversion_process import InversionJob, InversionProcess, JobMemoryExceeded

    job = InversionJob(png(1024, 256), seed=1, psi=0.8, quality="fast", steps=2, max_aspect=4.0, horizon=0.5)
    tight = InversionProcess(tiny_generator, 256, limit_mb=128, threads=1)
    try:
        with pytest.raises(JobMemoryExceeded, match="memory limit of 128 MB"):
            tight.run(job)
        assert tight.pid() is None  # recycled: the next job gets a fresh heap
    finally:
        tight.close()
    roomy = InversionProcess(tiny_generator, 256, limit_mb=4096, threads=1)
    try:
        output = roomy.run(job)
        assert output.footprint == (-512, -128, 1024, 256) and output.anchor
        child = roomy.pid()
        assert child is not None and child != os.getpid()
    finally:
        roomy.close()


def test_a_killed_inversion_process_fails_its_job_and_is_replaced(tiny_generator) -> None:
    import os
    import signal
    import threading
    import time

    from tiles.inversion_process import InversionJob, InversionProcess, InversionProcessDied

    process = InversionProcess(tiny_generator, 256, limit_mb=4096, threads=1)
    long_job = InversionJob(png(1024, 256), seed=1, psi=0.8, quality="fast", steps=500, max_aspect=4.0)
    try:

        def kill_when_running() -> None:
            deadline = time.monotonic() + 120
            while process.step < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(process.pid(), signal.SIGKILL)  # what the kernel's OOM killer does

        killer = threading.Thread(target=kill_when_running)
        killer.start()
        with pytest.raises(InversionProcessDied, match="died"):
            process.run(long_job)
        killer.join()
        quick = InversionJob(png(64, 48), seed=1, psi=0.8, quality="fast", steps=2, max_aspect=4.0)
        assert process.run(quick).anchor  # a new child took over
    finally:
        process.close()


def test_the_worker_fails_a_job_past_its_memory_limit_cleanly(redis_url, tiny_loaded, monkeypatch) -> None:
    """Through the queue: the estimate lets the photo through (set to nothing here), the child's cap stops it, the
    job ends `failed` with the cap in its message (no traceback), and the worker keeps taking jobs."""
    import tiles.outpaint

    monkeypatch.setattr(tiles.outpaint, "JOB_BASE_MB", 0.0)
    monkeypatch.setattr(tiles.outpaint, "JOB_MB_PER_WINDOW_PX", 0.0)

    async def scenario():
        link = RedisLink(connect(redis_url))
        queue = JobQueue(link, f"test-{uuid.uuid4().hex[:8]}", lease_s=30.0)
        try:
            first, _ = await queue.submit(png(1024, 256), JobRequest(1, 0.8, "fast", 2))
            second, _ = await queue.submit(png(1000, 256), JobRequest(1, 0.8, "fast", 2))
            async with OutpaintWorker(tiny_loaded, queue, name="memory-test", max_job_memory_mb=64, torch_threads=1):
                for _ in range(1200):
                    jobs = [await queue.get(first.id), await queue.get(second.id)]
                    if all(job.status in ("failed", "succeeded") for job in jobs):
                        return jobs
                    await asyncio.sleep(0.1)
            return jobs
        finally:
            await link.close()

    jobs = asyncio.run(scenario())
    for job in jobs:
        assert job.status == "failed" and "memory limit of 64 MB" in job.error, job
        assert "Traceback" not in job.error

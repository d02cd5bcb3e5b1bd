"""`infinitygan worker`: a process that only runs outpainting jobs from the shared Redis queue, until signalled."""

from __future__ import annotations

import asyncio
import logging
import signal

from app.resources import job_queue
from app.settings import Settings
from infinitygan.checkpoint import load_generator
from tiles.outpaint import OutpaintWorker, worker_link

log = logging.getLogger(__name__)


async def run_worker(settings: Settings, stop: asyncio.Event) -> int:
    """Process jobs until `stop` is set; a job running then goes back to the queue. Returns the jobs finished."""
    assert settings.redis_url is not None, "a separate worker needs the server's REDIS_URL"
    model = await asyncio.to_thread(load_generator, settings.model)
    link = worker_link(settings.redis_url)
    try:
        jobs = job_queue(link, model.model_hash, settings)
        async with OutpaintWorker(
            model,
            jobs,
            concurrency=settings.outpaint_concurrency,
            max_aspect=settings.outpaint_max_aspect,
            max_job_memory_mb=settings.outpaint_max_job_memory_mb,
            torch_threads=settings.torch_threads,  # None: the cores shared among the concurrent jobs
        ) as worker:
            await stop.wait()
        return worker.jobs_done
    finally:
        await link.close()


def main_loop(settings: Settings) -> int:
    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_worker(settings, stop)

    return asyncio.run(run())

"""The outpainting worker: takes jobs from the queue, inverts each photo into an anchor, stores the anchored world.

Runs inside the API process (the embedded default) or as `infinitygan worker`; either way a fixed number of slots,
each with its own child process holding its own copy of the generator (`tiles.inversion_process`: the job's memory
is capped there, so a photo that needs too much fails alone) and one thread in a dedicated pool that waits on it, so
tile rendering keeps its own threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor

from infinitygan.checkpoint import LoadedGenerator
from infinitygan.generator import Generator
from infinitygan.invert import QUALITY, inversion_windows, photo_footprint
from tiles.errors import TileError, UnprocessableImage
from tiles.inversion_process import (
    Interrupted,
    InversionJob,
    InversionProcess,
    InversionProcessDied,
    JobMemoryExceeded,
)
from tiles.jobs import Claim, JobQueue, JobResult
from tiles.redis_link import RedisLink, RedisUnavailable, connect
from tiles.uploads import MAX_ASPECT, check_aspect, header_size
from tiles.worlds import WorldRecord

log = logging.getLogger(__name__)

CLAIM_WAIT_S = 1.0  # a blocking claim returns this often to notice a stop
# The worker's own connection: blocking claims must not time out on a busy machine, and its failures must not mark
# the API's link down (tiles and world creation would answer from their outage path for a cool-down).
WORKER_COMMAND_TIMEOUT_S = CLAIM_WAIT_S + 10.0
PROGRESS_INTERVAL_S = 0.5
INVERSION_SHARE = 95  # progress while fitting; storing the anchor and world is the rest
REDIS_RETRY_S = 1.0


# Memory one inversion job adds to its process once the model is loaded, measured as the smallest RLIMIT_DATA (the
# bound `tiles.inversion_process` enforces) under which it finishes, with the shipped "small" model on this machine
# kind: 256x256, 1024x683 and 1024x256 photos (fitted windows of 86k, 123k and 311k pixels) need 498, 638 and
# 1037 MB (to 40 MB). A fixed cost plus a cost per pixel of the window, fitted above all three.
JOB_BASE_MB = 400.0
JOB_MB_PER_WINDOW_PX = 2.2 / 1024


def estimated_job_mb(generator: Generator, photo_width: int, photo_height: int, scene_height: int) -> float:
    """Upper estimate of an inversion job's peak memory (MB) from the photo's size alone (before decoding it)."""
    footprint = photo_footprint(photo_width, photo_height, scene_height)
    rows, columns = inversion_windows(generator.geometry, footprint, QUALITY["fast"])  # pad_px: every quality's
    return JOB_BASE_MB + rows.size * columns.size * JOB_MB_PER_WINDOW_PX


def check_job_memory(generator: Generator, photo_shape: tuple[int, ...], scene_height: int, limit_mb: float) -> None:
    """UnprocessableImage when the job would need more than limit_mb (INFINITYGAN_OUTPAINT_MAX_JOB_MEMORY_MB)."""
    needed = estimated_job_mb(generator, photo_shape[1], photo_shape[0], scene_height)
    if needed > limit_mb:
        raise UnprocessableImage(
            f"outpainting this {photo_shape[1]}x{photo_shape[0]} photo needs about {needed:.0f} MB; the limit is "
            f"{limit_mb:.0f} MB: crop it narrower"
        )


def worker_link(redis_url: str) -> RedisLink:
    return RedisLink(connect(redis_url, command_timeout_s=WORKER_COMMAND_TIMEOUT_S))


class OutpaintWorker:
    def __init__(
        self,
        model: LoadedGenerator,
        queue: JobQueue,
        *,
        concurrency: int = 1,
        name: str = "worker",
        max_aspect: float = MAX_ASPECT,
        max_job_memory_mb: float = 1536.0,
        torch_threads: int | None = None,
    ) -> None:
        """max_job_memory_mb: a job whose photo is estimated to need more fails without running, and one that
        needs more while running fails when it gets there (`tiles.inversion_process`). torch_threads: per job
        (default: the cores shared among the slots)."""
        self.queue = queue
        self.max_job_memory_mb = max_job_memory_mb
        self.max_aspect = max_aspect  # checked again here: jobs queued before a limit existed must not run unbounded
        self.concurrency = concurrency
        self.name = name
        self.model_hash = model.model_hash
        self.scene_height = model.scene_height
        self._generator = model.generator
        threads = torch_threads or max(1, (os.cpu_count() or 1) // concurrency)
        self._processes = [
            InversionProcess(model.generator, model.scene_height, limit_mb=max_job_memory_mb, threads=threads)
            for _ in range(concurrency)
        ]
        # One thread per slot waits on its child; tile rendering keeps its own threads.
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="outpaint")
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        self.jobs_done = 0

    # ---- life --------------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._slot(i), name=f"{self.name}-slot-{i}") for i in range(self.concurrency)
        ]
        self._tasks.append(asyncio.create_task(self._reaper(), name=f"{self.name}-reaper"))
        log.info("%s: %d slot(s) on queue %s", self.name, self.concurrency, self.queue.queue_key)

    async def stop(self) -> None:
        """Stop taking jobs; a running inversion stops at its next step and its job goes back to the queue."""
        self._stopping = True
        log.info("%s: stopping", self.name)
        for process in self._processes:
            process.interrupt()
        for task in self._tasks:
            if task.get_name().endswith("reaper"):
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("%s: slots stopped; closing the inversion processes", self.name)
        await asyncio.to_thread(self._close_processes)
        log.info("%s: stopped", self.name)

    def _close_processes(self) -> None:
        for process in self._processes:
            process.close()
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def __aenter__(self) -> OutpaintWorker:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- slots -------------------------------------------------------------------------------------------------------
    async def _slot(self, index: int) -> None:
        while not self._stopping:
            try:
                claim = await self.queue.claim(CLAIM_WAIT_S)
            except RedisUnavailable as exc:
                log.warning("%s: queue unreachable (%s); retrying", self.name, exc)
                await asyncio.sleep(REDIS_RETRY_S)
                continue
            if claim is None or claim.stale:
                continue
            await self._run_claimed(self._processes[index], claim)

    def _check(self, image: bytes) -> None:
        """Refuse, before running, what the photo's header says is out of bounds (aspect ratio, estimated memory)."""
        width, height = header_size(image)
        check_aspect(width, height, self.max_aspect)
        check_job_memory(self._generator, (height, width), self.scene_height, self.max_job_memory_mb)

    async def _run_claimed(self, process: InversionProcess, claim: Claim) -> None:
        record = claim.record
        assert record is not None
        request = record.request
        job = InversionJob(
            claim.image, request.seed, request.psi, request.quality, request.steps, self.max_aspect,
            reach_px=request.reach, horizon=request.horizon, psi_local=request.psi_local,
        )  # fmt: skip
        heartbeat = asyncio.create_task(self._heartbeat(record.id, process))
        try:
            self._check(claim.image)
            output = await asyncio.get_running_loop().run_in_executor(self._pool, process.run, job)
            heartbeat.cancel()
            world = WorldRecord.create(
                self.model_hash, request.seed, request.psi, anchor=record.id, footprint=output.footprint,
                biomes=request.biomes, psi_local=request.psi_local,
            )  # fmt: skip
            result = JobResult(world.id, output.footprint, output.reconstruction_psnr, output.seconds, output.horizon)
            await self.queue.complete(record.id, world, output.anchor, result)
            self.jobs_done += 1
            log.info("%s: job %s -> world %s in %.1f s", self.name, record.id, world.id, result.seconds)
        except Interrupted:
            heartbeat.cancel()
            with contextlib.suppress(RedisUnavailable):  # if Redis is gone the lease expires and a reaper requeues
                await self.queue.hand_back(record.id)
            log.info("%s: stopping; job %s handed back to the queue", self.name, record.id)
        except RedisUnavailable as exc:
            heartbeat.cancel()  # the lease expires and a reaper retries the job once Redis is back
            log.warning("%s: job %s could not be stored (%s); it will be retried", self.name, record.id, exc)
        except (TileError, JobMemoryExceeded, InversionProcessDied) as exc:
            heartbeat.cancel()  # the photo's fault: a clear message, no traceback, not retried
            log.warning("%s: job %s failed: %s", self.name, record.id, exc)
            with contextlib.suppress(RedisUnavailable):
                await self.queue.fail(record.id, str(exc))
        except Exception as exc:
            heartbeat.cancel()
            log.exception("%s: job %s failed", self.name, record.id)
            with contextlib.suppress(RedisUnavailable):
                await self.queue.fail(record.id, f"{type(exc).__name__}: {exc}")
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, job_id: str, process: InversionProcess) -> None:
        """Keep the lease alive and publish progress while the child works."""
        interval = min(PROGRESS_INTERVAL_S, self.queue.lease_ms / 3000)
        while True:
            percent = min(INVERSION_SHARE, INVERSION_SHARE * process.step // process.total_steps)
            with contextlib.suppress(RedisUnavailable):
                await self.queue.heartbeat(job_id, percent)
            await asyncio.sleep(interval)

    # ---- recovery ----------------------------------------------------------------------------------------------------
    async def _reaper(self) -> None:
        """Requeue jobs of lost workers: ids unleased at two scans a lease apart (a job claimed a moment ago gets its
        lease within milliseconds, so it is never unleased twice)."""
        suspects: set[str] = set()
        while True:
            try:
                unleased = await self.queue.unleased()
                for job_id in unleased & suspects:
                    if await self.queue.reap(job_id):
                        log.warning("%s: job %s lost its worker; queued again", self.name, job_id)
                suspects = unleased - suspects
            except RedisUnavailable as exc:
                log.warning("%s: reaper cannot reach the queue (%s)", self.name, exc)
            await asyncio.sleep(self.queue.lease_ms / 1000)

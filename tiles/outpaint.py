"""The outpainting worker: takes jobs from the queue, inverts each photo into an anchor, stores the anchored world.

Runs inside the API process (the embedded default) or as `infinitygan worker`; either way a fixed number of slots,
each with its own copy of the generator (inversion toggles requires_grad on the weights it is given, which must not
race with another inversion) and one thread in a dedicated pool, so tile rendering keeps its own threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from infinitygan.checkpoint import LoadedGenerator
from infinitygan.generator import Generator
from infinitygan.invert import QUALITY, inversion_windows, invert_photo, photo_footprint, place_photo
from infinitygan.world import WorldSpec
from tiles.errors import UnprocessableImage
from tiles.jobs import Claim, JobQueue, JobRecord, JobResult
from tiles.redis_link import RedisLink, RedisUnavailable, connect
from tiles.uploads import MAX_ASPECT, decode_photo
from tiles.worlds import WorldRecord

log = logging.getLogger(__name__)

CLAIM_WAIT_S = 1.0  # a blocking claim returns this often to notice a stop
# The worker's own connection: blocking claims must not time out on a busy machine, and its failures must not mark
# the API's link down (tiles and world creation would answer from their outage path for a cool-down).
WORKER_COMMAND_TIMEOUT_S = CLAIM_WAIT_S + 10.0
PROGRESS_INTERVAL_S = 0.5
INVERSION_SHARE = 95  # progress while fitting; storing the anchor and world is the rest
REDIS_RETRY_S = 1.0
UNLIMITED = 1 << 62  # the upload was checked on submission; limits may since have changed, the job must not


class Interrupted(Exception):
    """The worker is stopping: the running inversion gives up at its next step and the job goes back on the queue."""


# Peak resident memory of one inversion job, measured with the shipped "small" model on this machine kind (256x256,
# 1024x683 and 1024x256 photos: 385, 588 and 1043 MB above the loaded model for windows of 86k, 123k and 311k
# pixels): a fixed cost plus a cost per pixel of the fitted window, both rounded up.
JOB_BASE_MB = 200.0
JOB_MB_PER_WINDOW_PX = 3.2 / 1024


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


@dataclasses.dataclass
class _Progress:
    """Written by the inversion thread, read by the heartbeat task: the latest step, no locking needed."""

    step: int = 0
    steps: int = 1

    @property
    def percent(self) -> int:
        return min(INVERSION_SHARE, INVERSION_SHARE * self.step // max(1, self.steps))


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
    ) -> None:
        self.queue = queue
        self.max_job_memory_mb = max_job_memory_mb
        self.max_aspect = max_aspect  # checked again here: jobs queued before a limit existed must not run unbounded
        self.concurrency = concurrency
        self.name = name
        self.model_hash = model.model_hash
        self.scene_height = model.scene_height
        self._generators = [copy.deepcopy(model.generator).eval() for _ in range(concurrency)]
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="outpaint")
        self._stop = threading.Event()  # read by inversion threads at every step
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
        self._stop.set()
        for task in self._tasks:
            if task.get_name().endswith("reaper"):
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def __aenter__(self) -> OutpaintWorker:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- slots -------------------------------------------------------------------------------------------------------
    async def _slot(self, index: int) -> None:
        while not self._stop.is_set():
            try:
                claim = await self.queue.claim(CLAIM_WAIT_S)
            except RedisUnavailable as exc:
                log.warning("%s: queue unreachable (%s); retrying", self.name, exc)
                await asyncio.sleep(REDIS_RETRY_S)
                continue
            if claim is None or claim.stale:
                continue
            await self._run_claimed(index, claim)

    async def _run_claimed(self, index: int, claim: Claim) -> None:
        record = claim.record
        assert record is not None
        progress = _Progress(steps=record.request.steps)
        heartbeat = asyncio.create_task(self._heartbeat(record.id, progress))
        try:
            world, anchor_bytes, result = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._invert, self._generators[index], record, claim.image, progress
            )
            heartbeat.cancel()
            await self.queue.complete(record.id, world, anchor_bytes, result)
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
        except Exception as exc:
            heartbeat.cancel()
            log.exception("%s: job %s failed", self.name, record.id)
            with contextlib.suppress(RedisUnavailable):
                await self.queue.fail(record.id, f"{type(exc).__name__}: {exc}")
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, job_id: str, progress: _Progress) -> None:
        """Keep the lease alive and publish progress while the inversion thread works."""
        interval = min(PROGRESS_INTERVAL_S, self.queue.lease_ms / 3000)
        while True:
            with contextlib.suppress(RedisUnavailable):
                await self.queue.heartbeat(job_id, progress.percent)
            await asyncio.sleep(interval)

    def _invert(
        self, generator: Generator, record: JobRecord, image: bytes, progress: _Progress
    ) -> tuple[WorldRecord, bytes, JobResult]:
        """In a pool thread: decode, place, fit, serialise."""
        request = record.request
        photo = decode_photo(image, max_bytes=UNLIMITED, max_pixels=UNLIMITED, max_aspect=self.max_aspect)
        check_job_memory(generator, photo.shape, self.scene_height, self.max_job_memory_mb)
        placed, footprint = place_photo(np.ascontiguousarray(photo), self.scene_height)
        placed = np.array(placed)  # writable: the anchor's safetensors export wraps it in a tensor
        config = dataclasses.replace(QUALITY[request.quality], steps=request.steps)

        def on_step(step: int, steps: int) -> None:
            progress.step, progress.steps = step, steps
            if self._stop.is_set():
                raise Interrupted

        if self._stop.is_set():
            raise Interrupted
        spec = WorldSpec(seed=request.seed, psi=request.psi)
        anchor, report = invert_photo(generator, spec, placed, footprint, config, progress=on_step)
        fp = (footprint.x, footprint.y, footprint.width, footprint.height)
        world = WorldRecord.create(self.model_hash, request.seed, request.psi, anchor=record.id, footprint=fp)
        psnr = report.reconstruction_psnr if math.isfinite(report.reconstruction_psnr) else 99.0
        result = JobResult(world_id=world.id, footprint=fp, reconstruction_psnr=psnr, seconds=report.seconds)
        return world, anchor.to_bytes(), result

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

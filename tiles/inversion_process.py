"""Inversion jobs in a child process whose memory is capped: a job that needs more fails, the service does not.

An outpainting job's cost depends on the photo, and a photo can make it grow past what the machine has (issue 11: a
10000x10 PNG drove a server from 1.1 to 8.4 GB). The estimate checked before a job is queued (`tiles.outpaint`)
refuses the photos it can foresee; this module is the bound that holds whatever the estimate misses. Each worker slot
owns one spawned child process that holds its own copy of the generator and runs one job at a time under
RLIMIT_DATA = (its data size once the model is loaded) + the job limit (`INFINITYGAN_OUTPAINT_MAX_JOB_MEMORY_MB`).
Past the limit, malloc fails, torch raises, and the job fails with `JobMemoryExceeded` while the child survives (it
is replaced anyway, so the next job starts from a clean heap). If the child dies all the same (killed by the kernel's
OOM killer or by hand) the job fails with `InversionProcessDied` and the next job gets a new child. Either way the
worker process, and the API process the worker may live in, keep their memory.

Progress and stop requests cross the process boundary through shared memory (a step counter and an Event), so the
parent can heartbeat the job's lease and hand a job back at a clean stop. Only the photo's bytes, the request and the
result cross it by pickling (IPC, nothing stored).
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import multiprocessing
import resource
import signal
import time
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from infinitygan.generator import Generator
from infinitygan.invert import QUALITY, outpaint_photo
from infinitygan.world import WorldSpec
from tiles.uploads import decode_photo_alpha

UNLIMITED = 1 << 62  # the upload was checked on submission; limits may since have changed, the job must not


class Interrupted(Exception):
    """The worker is stopping: the running inversion gave up at its last step (the job goes back on the queue)."""


class JobMemoryExceeded(Exception):
    """The job needed more memory than its limit; the message says how much the limit was."""


class InversionProcessDied(Exception):
    """The child process running the job died (out of memory, or killed)."""


@dataclass(frozen=True)
class InversionJob:
    """What a child needs to run one job: the uploaded bytes and the request's parameters."""

    image: bytes
    seed: int
    psi: float
    quality: str
    steps: int
    max_aspect: float
    reach_px: int | None = None  # world pixels the photo's styles reach; None: the whole world
    horizon: float | None = None  # the photo's horizon row (fraction of its height); None: estimated
    psi_local: float = 1.0  # truncation of z_l (infinitygan.world.WorldSpec)


@dataclass(frozen=True)
class InversionOutput:
    footprint: tuple[int, int, int, int]  # world pixels: x, y, width, height
    anchor: bytes  # `infinitygan.anchor.Anchor.to_bytes()`
    reconstruction_psnr: float  # dB; 99 when the fit is exact
    seconds: float
    horizon: float  # the photo's row placed on the world's horizon (given or estimated)


# ---- the child's side ----------------------------------------------------------------------------------------------
_generator: Generator | None = None
_scene_height = 0
_limit_mb = 0.0
_step: multiprocessing.sharedctypes.Synchronized | None = None  # type: ignore[name-defined]
_total: multiprocessing.sharedctypes.Synchronized | None = None  # type: ignore[name-defined]
_stop: multiprocessing.synchronize.Event | None = None  # type: ignore[name-defined]


def _data_bytes() -> int:
    """This process's data segment (VmData, what RLIMIT_DATA limits), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmData in /proc/self/status")


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the worker that started it dies (a killed worker leaves no orphan job).

    The signal follows the thread that started the child: the slot's waiting thread, alive as long as the worker."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def _init_child(generator: Generator, scene_height: int, limit_mb: float, threads: int, step, total, stop) -> None:
    global _generator, _scene_height, _limit_mb, _step, _total, _stop
    _die_with_parent()
    torch.set_num_threads(threads)
    _generator = generator.eval()
    _scene_height, _limit_mb, _step, _total, _stop = scene_height, limit_mb, step, total, stop
    Image.init()  # import every image plugin now: a lazy import under the limit fails in obscure ways
    limit = _data_bytes() + int(limit_mb * 2**20)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))


# How torch reports a failed allocation: its CPU allocator, oneDNN (which cannot build a kernel without scratch
# memory), and C++'s bad_alloc.
ALLOCATION_FAILURES = ("allocate memory", "could not create a primitive", "bad_alloc", "out of memory")


def _out_of_memory(exc: BaseException | None) -> bool:
    """Whether a failed allocation caused exc (also when it surfaced as another error, e.g. in a lazy import)."""
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, MemoryError) or (
            isinstance(exc, RuntimeError) and any(text in str(exc) for text in ALLOCATION_FAILURES)
        ):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _run_in_child(job: InversionJob) -> InversionOutput:
    assert _generator is not None and _step is not None and _total is not None and _stop is not None
    _step.value, _total.value = 0, job.steps

    def on_step(step: int, steps: int) -> None:
        _step.value, _total.value = step, steps
        if _stop.is_set():
            raise Interrupted

    try:
        photo, alpha = decode_photo_alpha(
            job.image, max_bytes=UNLIMITED, max_pixels=UNLIMITED, max_aspect=job.max_aspect
        )
        if _stop.is_set():
            raise Interrupted
        config = dataclasses.replace(QUALITY[job.quality], steps=job.steps, reach_px=job.reach_px)
        spec = WorldSpec(seed=job.seed, psi=job.psi, psi_local=job.psi_local)
        anchor, report = outpaint_photo(
            _generator, spec, np.ascontiguousarray(photo), _scene_height, config,
            alpha=alpha, horizon=job.horizon, progress=on_step,
        )  # fmt: skip
        anchor_bytes = anchor.to_bytes()
    except BaseException as exc:
        if _out_of_memory(exc):
            raise JobMemoryExceeded(
                f"the job needed more than its memory limit of {_limit_mb:.0f} MB "
                "(INFINITYGAN_OUTPAINT_MAX_JOB_MEMORY_MB): try a smaller or narrower photo"
            ) from None
        raise
    psnr = report.reconstruction_psnr if math.isfinite(report.reconstruction_psnr) else 99.0
    footprint = anchor.footprint
    fp = (footprint.x, footprint.y, footprint.width, footprint.height)
    return InversionOutput(fp, anchor_bytes, psnr, report.seconds, report.horizon)


# ---- the parent's side ---------------------------------------------------------------------------------------------
class InversionProcess:
    """One worker slot's child process: `run` one job at a time; safe to call from one thread (the slot's)."""

    def __init__(self, generator: Generator, scene_height: int, *, limit_mb: float, threads: int = 1) -> None:
        """limit_mb: the most memory one job may add to the loaded model (MB, > 0). threads: torch threads."""
        if limit_mb <= 0:
            raise ValueError(f"limit_mb must be positive, not {limit_mb}")
        self._context = multiprocessing.get_context("spawn")  # never fork a process holding threads and sockets
        self._generator = generator
        self._scene_height = scene_height
        self.limit_mb = limit_mb
        self._threads = max(1, threads)
        self._step = self._context.Value("i", 0, lock=False)
        self._total = self._context.Value("i", 1, lock=False)
        self._stop = self._context.Event()
        self._pool: ProcessPoolExecutor | None = None

    @property
    def step(self) -> int:
        """The running job's last finished inversion step (0 before the first)."""
        return int(self._step.value)

    @property
    def total_steps(self) -> int:
        """The running job's inversion steps in all (trial fits for its horizon included)."""
        return max(1, int(self._total.value))

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=self._context,
                initializer=_init_child,
                initargs=(
                    self._generator,
                    self._scene_height,
                    self.limit_mb,
                    self._threads,
                    self._step,
                    self._total,
                    self._stop,
                ),  # fmt: skip
            )
        return self._pool

    def _recycle(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def pid(self) -> int | None:
        """The child's pid while one is running (tests use it to kill the child)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return next(iter(processes), None)

    def run(self, job: InversionJob) -> InversionOutput:
        """Run one job in the child (starting it on first use, a few seconds). Blocks; call it from a thread.

        Raises Interrupted (after `interrupt`), JobMemoryExceeded, InversionProcessDied, or the job's own errors
        (tiles.errors.UnprocessableImage for photos the worker must not run)."""
        started = time.perf_counter()
        try:
            return self._executor().submit(_run_in_child, job).result()
        except BrokenExecutor:
            self._recycle()
            raise InversionProcessDied(
                f"the inversion process died after {time.perf_counter() - started:.0f} s (out of memory, or killed)"
            ) from None
        except JobMemoryExceeded:
            self._recycle()  # a fresh heap for the next job
            raise

    def interrupt(self) -> None:
        """Ask the running job (and any later one) to stop at its next step."""
        self._stop.set()

    def close(self) -> None:
        self.interrupt()
        self._recycle()

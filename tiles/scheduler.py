"""Rendering off the event loop: render threads fed from a priority queue, with admission control in front.

Two classes of work: foreground (a tile someone asked for at or above the native zoom) and background (the native
renders a cold zoom-out tile needs). The threads always take foreground work first, so a flood of zoom-outs cannot
make a native tile wait behind hundreds of renders; each class has its own admission budget, in native renders.
A render whose future was cancelled before a thread took it (everyone waiting for it went away) is never started.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from tiles.errors import RenderQueueFull

T = TypeVar("T")
FOREGROUND, BACKGROUND = 0, 1
_STOP = -1  # sorts before any work: threads stop at once on shutdown


def intra_op_threads(render_threads: int, torch_threads: int | None = None) -> int:
    """Threads one render uses: `torch_threads`, or an equal share of the cores per render thread (more intra-op
    threads than cores only adds contention)."""
    return torch_threads or max(1, (os.cpu_count() or 1) // render_threads)


class RenderScheduler:
    def __init__(
        self, threads: int = 2, max_pending: int = 64, torch_threads: int | None = None, retry_after_s: int = 2
    ) -> None:
        """`max_pending` bounds the work waiting at once, in native renders, for each class (foreground tiles, and
        background zoom-out work: a cold tile k zoom levels below native may need 4^k native renders)."""
        self.threads = threads
        self.max_pending = max_pending
        self.retry_after_s = retry_after_s
        torch.set_num_threads(intra_op_threads(threads, torch_threads))
        self._queue: queue.PriorityQueue[tuple[int, int, Any]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._pending = {FOREGROUND: 0, BACKGROUND: 0}
        self.skipped = 0  # renders dropped before they started because nobody waited for them any more
        self._workers = [threading.Thread(target=self._work, name=f"render-{i}", daemon=True) for i in range(threads)]
        for worker in self._workers:
            worker.start()

    @property
    def pending(self) -> int:
        """Admitted work waiting or running, in native renders, both classes together."""
        return self._pending[FOREGROUND] + self._pending[BACKGROUND]

    def admit(self, cost: int = 1, *, background: bool = False) -> None:
        """Admit `cost` native renders of work in its class, or raise RenderQueueFull when they do not fit; call
        `release(cost, background=...)` once per successful `admit`. An idle class admits anything."""
        kind = BACKGROUND if background else FOREGROUND
        if self._pending[kind] > 0 and self._pending[kind] + cost > self.max_pending:
            raise RenderQueueFull(
                f"{self._pending[kind]} native renders are queued and this tile needs up to {cost} more; retry shortly",
                self.retry_after_s,
            )
        self._pending[kind] += cost

    def release(self, cost: int = 1, *, background: bool = False) -> None:
        self._pending[BACKGROUND if background else FOREGROUND] -= cost

    async def run(self, function: Callable[..., T], *args: object, background: bool = False) -> T:
        """function(*args) on a render thread; foreground work goes before any background work already queued."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        priority = BACKGROUND if background else FOREGROUND
        self._queue.put((priority, next(self._order), (function, args, future, loop)))
        return await future

    def _work(self) -> None:
        while True:
            priority, _, item = self._queue.get()
            if priority == _STOP:
                return
            function, args, future, loop = item
            if future.cancelled():
                self.skipped += 1
                continue
            try:
                result = function(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

    def shutdown(self) -> None:
        """Stop the threads after the renders they are running; queued renders are cancelled."""
        for _ in self._workers:
            self._queue.put((_STOP, next(self._order), None))
        for worker in self._workers:
            worker.join()
        while not self._queue.empty():
            priority, _, item = self._queue.get_nowait()
            if priority != _STOP:
                _, _, future, loop = item
                if not loop.is_closed():
                    loop.call_soon_threadsafe(future.cancel)


def _settle(future: asyncio.Future, result: object, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)

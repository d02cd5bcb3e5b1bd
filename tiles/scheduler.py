"""Rendering off the event loop: a small thread pool sized to the CPU, with admission control in front of it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from tiles.errors import RenderQueueFull

T = TypeVar("T")


class RenderScheduler:
    def __init__(
        self, threads: int = 2, max_pending: int = 64, torch_threads: int | None = None, retry_after_s: int = 2
    ) -> None:
        """`max_pending` bounds the work waiting at once, in native renders: a cold tile k zoom levels below native
        may need 4^k of them, and is admitted for that many."""
        self.threads = threads
        self.max_pending = max_pending
        self.retry_after_s = retry_after_s
        # Each render thread gets an equal share of the cores: more intra-op threads than cores only adds contention.
        torch.set_num_threads(torch_threads or max(1, (os.cpu_count() or 1) // threads))
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="render")
        self.pending = 0

    def admit(self, cost: int = 1) -> None:
        """Admit `cost` native renders of work, or raise RenderQueueFull when they do not fit; call `release(cost)`
        once per successful `admit`. An idle scheduler admits anything, so no tile is refused forever."""
        if self.pending > 0 and self.pending + cost > self.max_pending:
            raise RenderQueueFull(
                f"{self.pending} native renders are queued and this tile needs up to {cost} more; retry shortly",
                self.retry_after_s,
            )
        self.pending += cost

    def release(self, cost: int = 1) -> None:
        self.pending -= cost

    async def run(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

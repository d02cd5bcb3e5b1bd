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
        """`max_pending` bounds the tiles (requests, not internal jobs) waiting for a render at once."""
        self.threads = threads
        self.max_pending = max_pending
        self.retry_after_s = retry_after_s
        # Each render thread gets an equal share of the cores: more intra-op threads than cores only adds contention.
        torch.set_num_threads(torch_threads or max(1, (os.cpu_count() or 1) // threads))
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="render")
        self.pending = 0

    def admit(self) -> None:
        """Raise RenderQueueFull when the queue is full; call `release` once per successful `admit`."""
        if self.pending >= self.max_pending:
            raise RenderQueueFull(f"{self.pending} tiles are waiting to render; retry shortly", self.retry_after_s)
        self.pending += 1

    def release(self) -> None:
        self.pending -= 1

    async def run(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

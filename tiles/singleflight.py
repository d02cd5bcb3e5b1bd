"""Per-process request coalescing: concurrent callers for one key share one computation.

The computation is cancelled when its last caller goes away (a client disconnected), so work nobody waits for any
more is dropped, at the latest before it reaches a render thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Future[T]] = {}
        self._waiters: dict[Hashable, int] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._flights

    def __len__(self) -> int:
        return len(self._flights)

    async def do(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(work())
            self._flights[key] = flight
            self._waiters[key] = 0
            flight.add_done_callback(lambda _: (self._flights.pop(key, None), self._waiters.pop(key, None)))
        self._waiters[key] += 1
        try:
            # shield: one caller going away (client disconnect) must not cancel the work the others wait for.
            return await asyncio.shield(flight)
        except asyncio.CancelledError:
            if self._flights.get(key) is flight:
                self._waiters[key] -= 1
                if self._waiters[key] == 0 and not flight.done():
                    flight.cancel()  # nobody is left to receive it
            raise

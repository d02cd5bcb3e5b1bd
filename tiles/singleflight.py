"""Per-process request coalescing: concurrent callers for one key share one computation.

The computation is cancelled when its last caller goes away (a client disconnected), so work nobody waits for any
more is dropped, at the latest before it reaches a render thread. A cancelled computation is forgotten at once: a
caller arriving while it unwinds (its cleanup may still await, e.g. to release a Redis lock) starts a fresh one
instead of joining one that can only end cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class _Flight(Generic[T]):
    future: asyncio.Future[T]
    waiters: int = 0


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight[T]] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._flights

    def __len__(self) -> int:
        return len(self._flights)

    async def do(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        """work()'s result, computed once for all concurrent callers of key. Raises what work raises, and
        asyncio.CancelledError when this caller is cancelled (the others keep waiting)."""
        flight = self._flights.get(key)
        if flight is None:
            flight = _Flight(asyncio.ensure_future(work()))
            self._flights[key] = flight
            flight.future.add_done_callback(lambda _: self._forget(key, flight))
        flight.waiters += 1
        try:
            # shield: one caller going away (client disconnect) must not cancel the work the others wait for.
            return await asyncio.shield(flight.future)
        except asyncio.CancelledError:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.future.done():
                self._forget(key, flight)
                flight.future.cancel()  # nobody is left to receive it
            raise

    def _forget(self, key: Hashable, flight: _Flight[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

"""A bounded HTTP load against replicas behind a simulated load balancer, from asyncio (one thread does it all).

The balancer is round-robin; a transport error (connection refused, reset, closed mid-response) moves the request
on to the next replica, as nginx's `proxy_next_upstream error timeout` does for idempotent GETs. HTTP answers,
5xx included, come back as they are and are counted.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

RETRY_ROUNDS = 3
ROUND_PAUSE_S = 0.2


@dataclass
class LoadResult:
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)  # no replica answered within RETRY_ROUNDS
    retries: int = 0
    elapsed_s: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + len(self.unanswered)

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        if not ordered:
            return float("nan")
        return 1000 * ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    def summary(self) -> str:
        return (
            f"{self.requests} requests in {self.elapsed_s:.1f} s ({self.requests_per_s:.1f} req/s), "
            f"p50 {self.percentile_ms(50):.1f} ms, p99 {self.percentile_ms(99):.1f} ms, "
            f"statuses {dict(sorted(self.statuses.items()))}, unanswered {len(self.unanswered)}, "
            f"retried {self.retries}"
        )


class Balancer:
    def __init__(self, base_urls: Sequence[str], *, concurrency: int, timeout_s: float) -> None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self.clients = [httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) for url in base_urls]
        self._turn = itertools.count()

    async def get(self, path: str, result: LoadResult) -> httpx.Response | None:
        start = next(self._turn)
        for attempt in range(RETRY_ROUNDS * len(self.clients)):
            client = self.clients[(start + attempt) % len(self.clients)]
            try:
                return await client.get(path)
            except httpx.TransportError:
                result.retries += 1
                if (attempt + 1) % len(self.clients) == 0:
                    await asyncio.sleep(ROUND_PAUSE_S)  # every replica failed this round: give them a moment
        result.unanswered.append(path)
        return None

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


PathChoice = Sequence[str] | Callable[[random.Random], str]


async def _drive(
    base_urls: Sequence[str], paths: PathChoice, duration_s: float, concurrency: int, timeout_s: float, seed: int
) -> LoadResult:
    result = LoadResult()
    balancer = Balancer(base_urls, concurrency=concurrency, timeout_s=timeout_s)
    started = time.perf_counter()
    deadline = started + duration_s

    async def user(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        pick = paths if callable(paths) else lambda rng: rng.choice(paths)
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            response = await balancer.get(pick(rng), result)
            if response is not None:
                result.statuses[response.status_code] += 1
                if response.status_code == 200:
                    result.latencies_s.append(time.perf_counter() - sent)

    try:
        await asyncio.gather(*(user(i) for i in range(concurrency)))
    finally:
        await balancer.aclose()
    result.elapsed_s = time.perf_counter() - started
    return result


def run_load(
    base_urls: Sequence[str],
    paths: PathChoice,
    *,
    duration_s: float,
    concurrency: int = 8,
    timeout_s: float = 60.0,
    seed: int = 0,
) -> LoadResult:
    """`concurrency` users each send one GET at a time until `duration_s` has passed: a random one of `paths`, or
    what `paths(rng)` returns. Requests already sent then finish, so the run takes a little longer than `duration_s`."""
    return asyncio.run(_drive(base_urls, paths, duration_s, concurrency, timeout_s, seed))

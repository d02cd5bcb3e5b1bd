"""One Redis connection pool with failure tracking: callers get RedisUnavailable instead of a hang or a crash.

After a failure the link stays "down" for a short cool-down and fails fast, so an outage costs each tile request
microseconds rather than a connection timeout; the next call after the cool-down tries the server again.

The pool is bounded and *blocking*: a burst of requests (a zoomed-out browser view asks for a hundred tiles at once)
waits up to POOL_WAIT_S for a free connection instead of failing with "Too many connections". A command that still
finds no connection raises RedisBusy: that request goes without Redis, but the link is not marked down, because the
server is fine.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECT_TIMEOUT_S = 0.5
COMMAND_TIMEOUT_S = 2.0
COOL_DOWN_S = 1.0
RECONNECT_RETRIES = 1
POOL_MAX_CONNECTIONS = 64
POOL_WAIT_S = 5.0


class RedisUnavailable(Exception):
    """Redis could not be reached or refused the command."""


class RedisBusy(RedisUnavailable):
    """Every pooled connection stayed busy for the whole pool wait: this command went without Redis."""


def connect(
    url: str,
    *,
    command_timeout_s: float = COMMAND_TIMEOUT_S,
    max_connections: int = POOL_MAX_CONNECTIONS,
    pool_wait_s: float = POOL_WAIT_S,
) -> aioredis.Redis:
    """A client on a blocking pool of at most max_connections; a command waits up to pool_wait_s for one."""
    # After a Redis restart every pooled connection is dead, and without a retry the first command on each one fails
    # ("Connection closed by server"): a 503 for a world lookup or job submission. One immediate retry on a fresh
    # connection absorbs that. Connection errors only: a timed-out command may have run, so it is not resent.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_wait_s,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=command_timeout_s,
        health_check_interval=30,
        retry=Retry(NoBackoff(), RECONNECT_RETRIES),
        retry_on_error=[RedisConnectionError],
    )
    return aioredis.Redis.from_pool(pool)


def _pool_exhausted(exc: BaseException) -> bool:
    # redis-py's BlockingConnectionPool turns its wait timing out into ConnectionError("No connection available.").
    return isinstance(exc, RedisConnectionError) and isinstance(exc.__cause__, TimeoutError)


class RedisLink:
    def __init__(self, client: aioredis.Redis, *, cool_down_s: float = COOL_DOWN_S) -> None:
        self.client = client
        self.cool_down_s = cool_down_s
        self.last_error: str | None = None
        self._down_until = 0.0

    @property
    def up(self) -> bool:
        return self.last_error is None

    async def run(self, command: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        if self.last_error is not None and time.monotonic() < self._down_until:
            raise RedisUnavailable(self.last_error)
        try:
            result = await command(self.client)
        except (RedisError, OSError) as exc:
            if _pool_exhausted(exc):
                log.warning("redis connection pool busy for %.1f s: one command went without Redis", POOL_WAIT_S)
                raise RedisBusy("every Redis connection stayed busy") from None
            self._mark_down(exc)
            raise RedisUnavailable(self.last_error) from None
        if self.last_error is not None:
            log.warning("redis is reachable again")
            self.last_error = None
        return result

    async def ping(self) -> bool:
        """Always asks the server (ignores the cool-down): health checks must see recovery promptly."""
        self._down_until = 0.0
        try:
            await self.run(lambda r: r.ping())
        except RedisUnavailable:
            return False
        return True

    def _mark_down(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if self.last_error is None:
            log.error("redis failed, serving without cache: %s", message)
        self.last_error = message
        self._down_until = time.monotonic() + self.cool_down_s

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()

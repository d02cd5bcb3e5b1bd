"""Tile service benchmark on loopback: cold and warm tile latency, warm throughput at concurrency 32 (from the
in-process memory tier, and with that tier off so every hit is a Redis GET), the cost of a zoom-out tile relative to
a native one, and whether a zoom-out burst makes the server report Redis as failed.

    python bench/bench_tiles.py [--duration 10] [--concurrency 32] [--model PATH]

Starts its own servers (uvicorn + embedded Redis, the service's defaults) as subprocesses, drives them from a
separate load process, stops them by itself, and scans their logs. Uses the shipped model (the service's default, the
distilled student) if present, else an untrained "small-mobile" generator (the same cost per tile; the pixels are
noise), and says which.
The load process uses aiohttp: httpx's async client topped out near 240 req/s on this machine, so it measured
itself rather than the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infinitygan.checkpoint import SHIPPED_MODEL  # noqa: E402

SERVER_START_TIMEOUT_S = 120
NATIVE_ZOOM = 5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def fmt_ms(values: list[float]) -> str:
    p50, p99 = percentile(values, 50) * 1000, percentile(values, 99) * 1000
    return f"p50 {p50:8.1f} ms   p99 {p99:8.1f} ms   (n={len(values)})"


def pick_model(explicit: str | None, workdir: Path) -> tuple[Path, str]:
    if explicit:
        return Path(explicit), f"{explicit} (given)"
    if SHIPPED_MODEL.is_file():
        return SHIPPED_MODEL, f"shipped model {SHIPPED_MODEL.name}"
    from infinitygan.checkpoint import save_generator
    from infinitygan.generator import build_generator

    path = save_generator(build_generator("small-mobile", init_seed=0), workdir / "untrained.safetensors")
    return path, "untrained 'small-mobile' generator (no shipped model in this checkout)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: Path, port: int, workdir: Path, log: Path | None = None, **settings: str) -> subprocess.Popen:
    """The service on loopback with an embedded Redis in workdir; settings are INFINITYGAN_* overrides; its
    stderr (the log) goes to `log` when given."""
    env = {**os.environ, "INFINITYGAN_MODEL": str(model), "INFINITYGAN_MAX_PENDING_RENDERS": "256"}
    env.update({f"INFINITYGAN_{name.upper()}": value for name, value in settings.items()})
    # The embedded Redis persists by default: a fresh data dir per run, or "cold" tiles would be last run's hits.
    env["INFINITYGAN_EMBEDDED_REDIS_DATA_DIR"] = str(workdir / "redis")
    env.pop("REDIS_URL", None)  # measure against the embedded Redis, never someone's real one
    command = [sys.executable, "-m", "uvicorn", "app.main:create_app_from_env", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    stderr = log.open("ab") if log is not None else None
    try:
        return subprocess.Popen(command, cwd=ROOT, env=env, stderr=stderr)
    finally:
        if stderr is not None:
            stderr.close()  # the child holds its own descriptor


def wait_healthy(base_url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not become healthy")


def timed_get(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def load_process(base_url: str, urls: list[str], concurrency: int, duration_s: float, results: mp.Queue) -> None:
    """Runs in its own process so the load generator does not share the server's interpreter: `concurrency`
    keep-alive connections, each sending its next request when the last answer is read."""
    import aiohttp

    async def worker(session: aiohttp.ClientSession, deadline: float, latencies: list[float], errors: list[int]):
        rng = random.Random()
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                async with session.get(rng.choice(urls)) as response:
                    await response.read()
                    if response.status != 200:
                        errors.append(response.status)
                        continue
            except aiohttp.ClientError:
                errors.append(-1)
                continue
            latencies.append(time.perf_counter() - started)

    async def run() -> tuple[list[float], list[int], float]:
        latencies: list[float] = []
        errors: list[int] = []
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:
            started = time.perf_counter()
            deadline = started + duration_s
            await asyncio.gather(*(worker(session, deadline, latencies, errors) for _ in range(concurrency)))
            return latencies, errors, time.perf_counter() - started

    results.put(asyncio.run(run()))


def warm_load(base_url: str, urls: list[str], args: argparse.Namespace) -> tuple[list[float], list[int], float]:
    results: mp.Queue = mp.get_context("spawn").Queue()
    loader = mp.get_context("spawn").Process(
        target=load_process, args=(base_url, urls, args.concurrency, args.duration, results)
    )
    loader.start()
    outcome = results.get(timeout=args.duration + 120)
    loader.join(timeout=30)
    return outcome


def zoom_out_burst(base_url: str, tile: str, concurrency: int) -> Counter:
    """What a browser sends when someone zooms out over new ground: every tile of two zoom-out levels at once."""

    async def run() -> Counter:
        urls = [tile.format(z=NATIVE_ZOOM - 2, x=700 + i, y=300 + j) for i in range(4) for j in range(3)]
        urls += [tile.format(z=NATIVE_ZOOM - 1, x=1400 + i, y=600 + j) for i in range(8) for j in range(6)]
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=300) as client:
            responses = await asyncio.gather(*(client.get(url) for url in urls))
        return Counter(response.status_code for response in responses)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of warm load")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cold", type=int, default=20, help="cold native tiles to time")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-tiles-") as workdir:
        model, model_note = pick_model(args.model, Path(workdir))
        log = Path(workdir) / "server.log"
        with serving(model, Path(workdir) / "default", log) as base_url:
            run_benchmark(base_url, args, model_note, log)
        # The same warm load with the memory tier off: every hit is a Redis GET.
        with serving(model, Path(workdir) / "redis-only", log, memory_cache_mb="0") as base_url:
            with httpx.Client(base_url=base_url, timeout=300) as client:
                urls = warm_tile_urls(client)
            latencies, errors, elapsed = warm_load(base_url, urls, args)
        print(
            f"warm tile, memory tier off (Redis GET per hit), concurrency {args.concurrency}: {fmt_ms(latencies)}\n"
            f"    throughput {len(latencies) / elapsed:8.1f} req/s, errors {len(errors)}"
        )
        failures = [line for line in log.read_text(errors="replace").splitlines() if "redis failed" in line]
        print(f"'redis failed' lines in the server logs: {len(failures)}")
        for line in failures[:5]:
            print(f"    {line}")


@contextlib.contextmanager
def serving(model: Path, workdir: Path, log: Path, **settings: str) -> Iterator[str]:
    workdir.mkdir()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = start_server(model, port, workdir, log, **settings)
    try:
        wait_healthy(base_url, server)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def warm_tile_urls(client: httpx.Client) -> list[str]:
    """64 native tiles of a new world, each requested once so they are cached."""
    world = client.post("/worlds", json={"seed": random.SystemRandom().randrange(2**62)}).json()["id"]
    urls = [f"/worlds/{world}/tiles/{NATIVE_ZOOM}/{x}/{y}.png" for x in range(8) for y in range(8)]
    for url in urls:
        client.get(url).raise_for_status()
    return urls


def run_benchmark(base_url: str, args: argparse.Namespace, model_note: str, log: Path) -> None:
    print(f"model: {model_note}")
    print(f"machine: {os.cpu_count()} cores; server: uvicorn, 1 process, the service's defaults, embedded Redis")
    with httpx.Client(base_url=base_url, timeout=300) as client:
        seed = random.SystemRandom().randrange(2**62)  # a world nobody has rendered: every first request is cold
        world = client.post("/worlds", json={"seed": seed}).json()["id"]
        tile = f"/worlds/{world}/tiles/{{z}}/{{x}}/{{y}}.png"
        timed_get(client, tile.format(z=NATIVE_ZOOM, x=-1000, y=-1000))  # warm-up: first-call costs (torch, PIL)

        # Cold native tiles, sequential, well apart so no two share anything.
        cold = [timed_get(client, tile.format(z=NATIVE_ZOOM, x=10 * i, y=7)) for i in range(args.cold)]
        # Cold zoom-out tiles in untouched areas: every child is rendered too (4 natives at z-1, 64 at z-3).
        zoom1 = [timed_get(client, tile.format(z=NATIVE_ZOOM - 1, x=100 + 5 * i, y=40)) for i in range(5)]
        zoom3 = [timed_get(client, tile.format(z=NATIVE_ZOOM - 3, x=50 + 3 * i, y=20)) for i in range(2)]
        # Zoom-out with its four children already cached: only the downsample and PNG work.
        for i in range(5):
            for dx in (0, 1):
                for dy in (0, 1):
                    client.get(tile.format(z=NATIVE_ZOOM, x=2 * (300 + 5 * i) + dx, y=2 * 60 + dy))
        zoom1_cached = [timed_get(client, tile.format(z=NATIVE_ZOOM - 1, x=300 + 5 * i, y=60)) for i in range(5)]

        warm_urls = warm_tile_urls(client)
        warm_sequential = [timed_get(client, url) for url in warm_urls * 3]

    latencies, errors, elapsed = warm_load(base_url, warm_urls, args)
    burst = zoom_out_burst(base_url, tile, args.concurrency)

    native_p50 = percentile(cold, 50)
    print()
    print(f"cold native tile (z={NATIVE_ZOOM}, sequential):       {fmt_ms(cold)}")
    print(f"cold zoom-out z={NATIVE_ZOOM - 1} (renders 4 children):   {fmt_ms(zoom1)}")
    print(f"cold zoom-out z={NATIVE_ZOOM - 3} (renders 64 natives):   {fmt_ms(zoom3)}")
    print(f"zoom-out z={NATIVE_ZOOM - 1}, children already cached:   {fmt_ms(zoom1_cached)}")
    print(f"warm tile, sequential (1 connection):    {fmt_ms(warm_sequential)}")
    print(
        f"warm tile, concurrency {args.concurrency} for {elapsed:.1f} s:  {fmt_ms(latencies)}\n"
        f"    throughput {len(latencies) / elapsed:8.1f} req/s, errors {len(errors)}"
    )
    levels = f"z={NATIVE_ZOOM - 2} and z={NATIVE_ZOOM - 1}"
    print(f"zoom-out burst (60 cold tiles at {levels} at once): statuses {dict(burst)}")
    print()
    print("ratios (p50):")
    print(f"  zoom-out z-1 cold / native cold:         {percentile(zoom1, 50) / native_p50:6.2f}x")
    print(f"  zoom-out z-3 cold / native cold:         {percentile(zoom3, 50) / native_p50:6.2f}x")
    print(f"  zoom-out z-1 from cached children / native cold: {percentile(zoom1_cached, 50) / native_p50:6.2f}x")
    print(f"  native cold / warm hit (sequential):     {native_p50 / percentile(warm_sequential, 50):6.1f}x")


if __name__ == "__main__":
    main()

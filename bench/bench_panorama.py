"""Very large renders: seconds and peak resident memory of `infinitygan render --out X.tif` (a tiled BigTIFF
streamed one 256-row band at a time), for 8192x8192 and 65536x2048 by default.

    python bench/bench_panorama.py [--sizes 8192x8192 65536x2048] [--model PATH]

Each render runs in its own process; its peak RSS comes from the kernel (getrusage of the child). The shipped model
is used when present, else an untrained "small" generator (same cost per chunk).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_tiles import pick_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["8192x8192", "65536x2048"])
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-panorama-") as workdir:
        model, note = pick_model(args.model, Path(workdir))
        print(f"model: {note}; torch threads: default")
        for size in args.sizes:
            width, height = (int(v) for v in size.split("x"))
            out = Path(workdir) / f"{size}.tif"
            command = [sys.executable, "-m", "infinitygan", "render", "--checkpoint", str(model), "--seed", "1",
                       "--x", str(-width // 2), "--y", str(-height // 2), "--width", str(width),
                       "--height", str(height), "--out", str(out), "--quiet"]  # fmt: skip
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            started = time.perf_counter()
            subprocess.run(command, check=True, cwd=ROOT)
            seconds = time.perf_counter() - started
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            note_peak = "" if peak_mb * 1024 > before else " (not above an earlier render's peak)"
            megapixels = width * height / 1e6
            print(
                f"{size:>11}: {seconds:7.1f} s ({megapixels / seconds:.2f} MP/s), peak RSS {peak_mb:.0f} MB"
                f"{note_peak}, file {os.path.getsize(out) / 2**20:.0f} MB"
            )
            out.unlink()


if __name__ == "__main__":
    main()

"""Training throughput on this machine: full iterations (D step, G step, lazy R1 and path length, EMA) per second.

    .venv/bin/python bench/bench_training.py [--presets small tiny] [--batch 8] [--patch-cells 9] [--threads 1]

Uses data/landscapes when present, otherwise synthetic images. The first iterations (one-time allocations) are not
timed; the timed span covers a multiple of the R1 interval (16) so lazy regularisation is counted at its real rate.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from infinitygan.train import TrainConfig, Trainer

REPO = Path(__file__).resolve().parent.parent


def synthetic_landscapes(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(4):
        rows = np.arange(256)[:, None, None]
        sky = np.broadcast_to(np.array([90, 140, 230]) - rows * 0.3, (256, 400, 3))
        ground = np.array([60 + 20 * i, 110, 40]) + rng.normal(0, 25, (256, 400, 3))
        Image.fromarray(np.where(rows < 128, sky, ground).clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def bench(preset: str, data: Path, batch: int, cells: int, iterations: int, warmup: int) -> tuple[float, int]:
    config = TrainConfig(preset=preset, batch=batch, patch_cells=cells, sample_every=0)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(config, data, out)
        for _ in range(warmup):
            trainer.train_step()
        start = time.perf_counter()
        for _ in range(iterations):
            trainer.train_step()
        return iterations / (time.perf_counter() - start), trainer.patch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "tiny"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch-cells", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1, help="1 beat 2 on the shared 2-core machine")
    parser.add_argument("--iterations", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        data = REPO / "data" / "landscapes"
        source = "data/landscapes"
        if not data.is_dir():
            data, source = synthetic_landscapes(Path(scratch)), "synthetic images"
        print(f"torch {torch.__version__}, {args.threads} thread(s), data: {source}")
        for preset in args.presets:
            rate, patch = bench(preset, data, args.batch, args.patch_cells, args.iterations, args.warmup)
            images = rate * args.batch
            print(
                f"{preset:>6}: {rate:.2f} it/s  ({images:.1f} images/s; batch {args.batch}, {patch}x{patch} px patches,"
                f" {args.patch_cells} z_S cells; {3600 * rate:.0f} it/h)"
            )


if __name__ == "__main__":
    main()

"""Training throughput on this machine: full iterations (D step, G step, lazy R1 and path length, EMA, DiffAugment)
per second, in fp32 and under bf16 autocast, measured in one run, with their ratio and the precision "auto" picks.

    .venv/bin/python bench/bench_training.py [--presets small] [--precisions fp32 bf16] [--batch 8] [--threads 1]
        [--scene-weight 3 --scene-batch 4 --scene-diversity-weight 1]   # the whole-scene critic's steps too

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

from infinitygan.training import TrainConfig, Trainer
from infinitygan.training.config import fast_bf16

REPO = Path(__file__).resolve().parent.parent


def synthetic_landscapes(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(4):
        rows = np.arange(256)[:, None, None]
        sky = np.broadcast_to(np.array([90, 140, 230]) - rows * 0.3, (256, 400, 3))
        ground = np.array([60 + 20 * i, 110, 40]) + rng.normal(0, 25, (256, 400, 3))
        Image.fromarray(np.where(rows < 128, sky, ground).clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def bench(config: TrainConfig, data: Path, iterations: int, warmup: int) -> tuple[float, int]:
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
    parser.add_argument("--presets", nargs="+", default=["small"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--d-input", default="rgb", choices=["rgb", "wavelet"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch-cells", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1, help="1 beat 2 on the shared 2-core machine")
    parser.add_argument("--scene-weight", type=float, default=0.0, help="with the whole-scene critic (TrainConfig)")
    parser.add_argument("--scene-batch", type=int, default=2)
    parser.add_argument("--scene-diversity-weight", type=float, default=0.0)
    parser.add_argument("--iterations", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        data = REPO / "data" / "landscapes"
        source = "data/landscapes"
        if not data.is_dir():
            data, source = synthetic_landscapes(Path(scratch)), "synthetic images"
        auto = "bf16" if fast_bf16("cpu") else "fp32"
        print(
            f"torch {torch.__version__}, {args.threads} thread(s), data: {source}; CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}, oneDNN bf16 kernels: {fast_bf16('cpu')} -> auto = {auto}"
        )
        for preset in args.presets:
            rates = {}
            for precision in args.precisions:
                config = TrainConfig(
                    preset=preset,
                    batch=args.batch,
                    patch_cells=args.patch_cells,
                    sample_every=0,
                    precision=precision,
                    d_input=args.d_input,
                    scene_weight=args.scene_weight,
                    scene_batch=args.scene_batch,
                    scene_diversity_weight=args.scene_diversity_weight,
                )
                rate, patch = bench(config, data, args.iterations, args.warmup)
                rates[precision] = rate
                print(
                    f"{preset:>13} {precision}: {rate:.3f} it/s  ({rate * args.batch:.1f} images/s; batch {args.batch},"
                    f" {patch}x{patch} px patches; {3600 * rate:.0f} it/h)",
                    flush=True,
                )
            if {"fp32", "bf16"} <= rates.keys():
                faster = max(rates, key=rates.get)
                print(f"{preset:>13} bf16 / fp32 = {rates['bf16'] / rates['fp32']:.3f}  (faster: {faster})")


if __name__ == "__main__":
    main()

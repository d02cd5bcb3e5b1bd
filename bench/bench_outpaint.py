"""Outpainting cost: wall time of one inversion job for a 256x256 and a 1024x683 photo, and the PSNR it reached.

Uses the shipped model when present (else an untrained small generator, and says so). Goal: the "fast" setting
under 30 s per job on this CPU.

    .venv/bin/python -m bench.bench_outpaint [--quality fast best] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from infinitygan import (
    CheckpointError,
    LoadedGenerator,
    World,
    WorldSpec,
    build_generator,
    load_generator,
    render_region,
)
from infinitygan.invert import QUALITY, invert_photo, place_photo, psnr

PHOTOS = Path(__file__).parent / "photos"


def served_psnr(world: World, anchor) -> float:
    """PSNR of served pixels against the photo inside the footprint, excluding the feather band."""
    fp, band = anchor.footprint, anchor.feather_px + 1
    served = render_region(world, fp.x, fp.y, fp.width, fp.height)[band:-band, band:-band]
    photo = anchor.photo[band:-band, band:-band]
    as_tensor = lambda a: torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1  # noqa: E731
    return psnr(as_tensor(served), as_tensor(photo))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", nargs="+", default=["fast"], choices=sorted(QUALITY))
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()
    try:
        model, which = load_generator(args.checkpoint), args.checkpoint or "shipped model"
    except CheckpointError:
        model = LoadedGenerator.in_memory(build_generator("small"))
        which = "UNTRAINED small generator (no shipped model found)"
    generator, scene_height = model.generator, model.scene_height
    print(f"model: {which}; scene height {scene_height} px; {torch.get_num_threads()} threads")
    print(f"{'photo':<26} {'quality':<8} {'steps':>5} {'seconds':>8} {'recon PSNR':>11} {'served PSNR':>12}")
    for name in ("life_256x256.jpg", "aitzgorri_1024x683.jpg"):
        photo = np.asarray(Image.open(PHOTOS / name).convert("RGB"))
        placed, footprint = place_photo(photo, scene_height)
        for quality in args.quality:
            spec = WorldSpec(seed=1)
            start = time.perf_counter()
            anchor, report = invert_photo(generator, spec, placed, footprint, QUALITY[quality])
            seconds = time.perf_counter() - start
            served = served_psnr(World(generator, spec, anchor), anchor)
            print(
                f"{name:<26} {quality:<8} {report.steps:>5} {seconds:>8.1f} {report.reconstruction_psnr:>10.2f}dB"
                f" {served:>10.2f}dB"
            )


if __name__ == "__main__":
    main()

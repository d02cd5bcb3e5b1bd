"""Outpainting quality and cost (issue 13): per photo, the job's wall time, the generator's reconstruction PSNR and
the continuation score, on the two evaluation-split photos and the two bench photos, at the served defaults (the
photo's look governs the whole world, its horizon estimated by trial fits).

Continuation score (`infinitygan.evaluate.continuation_score`): the colour SWD between the band one photo-width to
each side of the footprint and the photo's own pixels, divided by the same for the base world without the photo
(1.0 = no better than not outpainting; target <= 0.5). Previews (photo in the middle, the world continuing it on both
sides) are written to --previews. Targets: PSNR >= 20 dB, `fast` <= 30 s for the 1024x683 photo.

    .venv/bin/python -m bench.bench_outpaint [--quality fast best] [--checkpoint PATH] [--previews docs/outpaint]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from infinitygan import CheckpointError, LoadedGenerator, World, WorldSpec, build_generator, load_generator
from infinitygan.evaluate import continuation_score
from infinitygan.invert import QUALITY, outpaint_photo
from infinitygan.world import render_region

PHOTOS = Path(__file__).parent / "photos"
EVAL_PHOTOS = Path(__file__).resolve().parents[1] / "data" / "landscapes" / "eval"
BENCH_PHOTOS = ("aitzgorri_1024x683.jpg", "life_256x256.jpg")
PREVIEW_HEIGHT = 256


def photos() -> list[Path]:
    found = sorted(EVAL_PHOTOS.glob("*.jpg")) if EVAL_PHOTOS.is_dir() else []
    if not found:
        print(f"(no evaluation split at {EVAL_PHOTOS}: `infinitygan data fetch --out data/landscapes` adds it)")
    return found + [PHOTOS / name for name in BENCH_PHOTOS]


def recorded_horizon(path: Path) -> float | None:
    """The horizon the recipe records for this photo (the bench photos are recipe photos too), if any."""
    from infinitygan.recipe import LANDSCAPE_RECIPE

    for item in LANDSCAPE_RECIPE:
        if path.stem.startswith(item.output_stem.split("_by_")[0]):
            return item.horizon
    return None


def load_photo(path: Path, max_side: int = 1024) -> np.ndarray:
    """The photo as an upload would be: RGB, at most max_side wide (the evaluation photos are several MP)."""
    image = Image.open(path).convert("RGB")
    if max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    return np.asarray(image)


def preview(generator, spec: WorldSpec, anchor) -> np.ndarray:
    """Three photo-widths of the world around the photo, the photo in the middle, one scene tall."""
    fp = anchor.footprint
    return render_region(World(generator, spec, anchor), fp.x - fp.width, fp.y, 3 * fp.width, fp.height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quality", nargs="+", default=["fast"], choices=sorted(QUALITY))
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--previews", type=Path, default=None, help="write <photo>.png previews into this folder")
    args = parser.parse_args()
    try:
        model, which = load_generator(args.checkpoint), args.checkpoint or "shipped model"
    except CheckpointError:
        model = LoadedGenerator.in_memory(build_generator("small"))
        which = "UNTRAINED small generator (no shipped model found)"
    generator, scene_height = model.generator, model.scene_height
    print(f"model: {which}; scene height {scene_height} px; {torch.get_num_threads()} threads")
    header = f"{'photo':<34} {'quality':<7} {'steps':>5} {'seconds':>8} {'PSNR':>8} {'horizon (recorded)':>19}"
    header += f" {'continuation':>13}"
    print(header + f" {'(anchored / base SWD)':>22}")
    if args.previews:
        args.previews.mkdir(parents=True, exist_ok=True)
    for path in photos():
        photo = load_photo(path)
        for quality in args.quality:
            spec = WorldSpec(seed=args.seed)
            start = time.perf_counter()
            anchor, report = outpaint_photo(generator, spec, photo, scene_height, QUALITY[quality])
            seconds = time.perf_counter() - start
            score = continuation_score(generator, spec, anchor)
            name = f"{path.stem} {photo.shape[1]}x{photo.shape[0]}"
            print(
                f"{name:<34} {quality:<7} {report.steps:>5} {seconds:>8.1f} {report.reconstruction_psnr:>6.2f}dB"
                f" {report.horizon:>8.2f} ({recorded_horizon(path) if recorded_horizon(path) is not None else '-':>6})"
                f" {score['score']:>13.3f} {score['anchored']:>10.1f} / {score['base']:.1f}",
                flush=True,
            )
            if args.previews:
                Image.fromarray(preview(generator, spec, anchor)).save(args.previews / f"{path.stem}-{quality}.png")


if __name__ == "__main__":
    main()

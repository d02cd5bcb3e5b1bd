"""Fine detail drawn by generators against real photos: how much of the picture lies in the finest band.

    .venv/bin/python -m bench.bench_grain CHECKPOINT [CHECKPOINT ...] [--data data/landscapes] [--patches 512]

For the eval's training patches (the same real sample `infinitygan eval` scores, two disjoint halves) and as many
generated patches of each checkpoint (psi 1, the patches' own vertical positions), the luminance of the finest
Laplacian-pyramid band (the band SWD's finest level reads; [-1, 1] image units): quantiles of its magnitude and the
share of pixels brighter than their surroundings by more than 0.2 and 0.4. Real photos' grain (gravel, grass, fleece,
glitter on water) and a model's white speckle both land here, so equal numbers mean as much fine detail, not the same
kind: where the speckle is, is for the eye (MODEL_CARD.md, the fourteenth session).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from infinitygan.checkpoint import load_generator
from infinitygan.evaluate import EvalOptions, RealSet, fake_patches, laplacian_pyramid

QUANTILES = (0.5, 0.9, 0.99, 0.999)
BRIGHT = (0.2, 0.4)


def grain_stats(images: torch.Tensor, *, sample: int = 1_000_000, seed: int = 0) -> dict[str, float]:
    """Quantiles of |finest band| (luminance) of images (N, 3, H, W) in [-1, 1], on at most `sample` pixels, and
    the share of pixels whose band value exceeds each BRIGHT threshold."""
    band = laplacian_pyramid(images)[0].mean(1).flatten()
    rng = torch.Generator().manual_seed(seed)
    picked = band[torch.randperm(band.numel(), generator=rng)[:sample]].abs()
    stats = {
        f"q{q * 100:g}": float(v)
        for q, v in zip(QUANTILES, torch.quantile(picked, torch.tensor(QUANTILES)), strict=True)
    }
    stats |= {f">{t}": float((band > t).float().mean()) for t in BRIGHT}
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, default=Path("data/landscapes"))
    parser.add_argument("--patches", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = EvalOptions(patches=args.patches)
    loaded = [(path.name, load_generator(path)) for path in args.checkpoints]
    first = loaded[0][1]  # like `infinitygan eval`: the first model's scene height and training patch for all
    patch_px = first.generator.geometry.texture_size(first.patch_cells)
    reals, top_px = RealSet(args.data, first.scene_height, options).patches("train", patch_px)
    n = args.patches
    rows = [("real (first half)", reals[:n]), ("real (second half)", reals[n:])]
    with torch.no_grad():
        for name, model in loaded:
            cells = model.generator.geometry.cells_covering(patch_px)
            fakes = fake_patches(model.generator, top_px[:n], cells, psi=1.0, seed=0, batch=32, size=patch_px)
            rows.append((name, fakes))
    print(f"{n} patches of {patch_px} px each; finest Laplacian band, luminance, [-1, 1] units")
    header = [f"q{q * 100:g}" for q in QUANTILES] + [f">{t}" for t in BRIGHT]
    print(f"| images | {' | '.join(header)} |\n| --- |{' --- |' * len(header)}")
    for name, images in rows:
        stats = grain_stats(images)
        print(f"| {name} | " + " | ".join(f"{stats[k]:.4f}" for k in header) + " |", flush=True)


if __name__ == "__main__":
    main()

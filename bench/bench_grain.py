"""Fine detail drawn by generators against real photos: how much of the picture lies in the finest band.

    .venv/bin/python -m bench.bench_grain CHECKPOINT [CHECKPOINT ...] [--data data/landscapes] [--patches 512]

For the eval's training patches (the same real sample `infinitygan eval` scores, two disjoint halves) and as many
generated patches of each checkpoint (psi 1, the patches' own vertical positions), the luminance of the finest
Laplacian-pyramid band (the band SWD's finest level reads; [-1, 1] image units): quantiles of its magnitude and the
share of pixels brighter than their surroundings by more than 0.2 and 0.4. Real photos' grain (gravel, grass, fleece,
glitter on water) and a model's white speckle both land here, so equal numbers mean as much fine detail, not the same
kind. Where it is: "on edges" is the share of those bright pixels (> 0.2) that lie on the scene's edges, the pixels
whose coarse gradient (luminance blurred over 5 x 5 px, differenced over 4 px) is in the top EDGE_SHARE of the real
first half's. Photos put about half of their bright grain there; the trained models about a third, the rest in flat
sky, water and fields (MODEL_CARD.md, the fourteenth and fifteenth sessions).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from infinitygan.checkpoint import load_generator
from infinitygan.evaluate import EvalOptions, RealSet, fake_patches, laplacian_pyramid

QUANTILES = (0.5, 0.9, 0.99, 0.999)
BRIGHT = (0.2, 0.4)
EDGE_SHARE = 0.1  # edges: the real patches' top 10% of coarse gradient


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


def coarse_gradient(images: torch.Tensor) -> torch.Tensor:
    """(N, H - 4, W - 4) magnitude of the luminance gradient at a coarse scale: 5 x 5 box blur, central differences
    over 4 px; pixel (i, j) of the result is pixel (i + 2, j + 2) of the image."""
    blur = F.avg_pool2d(images.mean(1, keepdim=True), 5, stride=1, padding=2, count_include_pad=False)[:, 0]
    dx = blur[:, 2:-2, 4:] - blur[:, 2:-2, :-4]
    dy = blur[:, 4:, 2:-2] - blur[:, :-4, 2:-2]
    return torch.sqrt(dx * dx + dy * dy)


def grain_on_edges(images: torch.Tensor, edge_threshold: float, bright: float = BRIGHT[0]) -> float:
    """Share of images' bright finest-band pixels (band > bright) whose coarse gradient exceeds edge_threshold;
    nan when there are none."""
    band = laplacian_pyramid(images)[0].mean(1)[:, 2:-2, 2:-2]
    hits = band > bright
    if not hits.any():
        return float("nan")
    return float((coarse_gradient(images) > edge_threshold)[hits].float().mean())


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
    edge_threshold = float(torch.quantile(coarse_gradient(reals[:n]).flatten(), 1.0 - EDGE_SHARE))
    print(f"{n} patches of {patch_px} px each; finest Laplacian band, luminance, [-1, 1] units")
    header = [f"q{q * 100:g}" for q in QUANTILES] + [f">{t}" for t in BRIGHT]
    print(f"| images | {' | '.join(header)} | >{BRIGHT[0]} on edges |\n| --- |{' --- |' * (len(header) + 1)}")
    for name, images in rows:
        stats = grain_stats(images)
        cells = [f"{stats[k]:.4f}" for k in header] + [f"{grain_on_edges(images, edge_threshold):.3f}"]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()

"""Evaluation without pretrained networks: sliced Wasserstein distances (PGGAN-style), seams and diversity.

- swd: multi-scale SWD between real training-size patches of the training split and generated patches (same rows
  relative to the horizon), on Laplacian-pyramid 7x7 descriptors, x1e3 as PGGAN reports it; lower is better.
  EvalOptions.patch_px sets the patch side instead (`infinitygan eval A B` uses A's for every model: a student
  trained on larger windows than its teacher is then scored on the teacher's patches). patch_px says which.
- swd_real_floor: the same between two disjoint sets of real patches: what "indistinguishable" scores;
  swd_floor_ratio = swd / swd_real_floor.
- swd_eval, swd_eval_real_floor, swd_eval_floor_ratio: the same against the evaluation split (photos training never
  read), when the data folder has one.
- swd_scaleinv_4x: render a scene_height-square region of each world with the world API (the full scene height,
  ~3.7x the 69 px training patch), framed like a random whole-height crop of a training photo (as many rows above
  the horizon), downsample both 4x and compare: does the model still look like the data when asked for much more
  than it was trained on? scaleinv_ratio = swd_scaleinv_4x / swd. As many squares as patches by default (512), so
  both SWDs carry the same sample-size bias: with 64 squares the real floor was 62.7, 2.5x the patch floor, and a
  perfect model would have scored scaleinv_ratio ~2.5; with 512 it is 19.6, 0.8x the patch floor.
  swd_scaleinv_4x_real_floor: the same distance between two disjoint sets of real squares; scaleinv_floor_ratio =
  swd_scaleinv_4x / its floor, to set beside swd_floor_ratio.
- seam_score: mean gradient magnitude across 256 px chunk boundaries over the mean across the latent-cell boundaries
  one cell either side of them (same phase of the latent grid, same neighbourhood), on stitched render_region output
  (the horizon row, a chunk boundary with real content on it, is left out). ~1.0 = seamless.
- diversity: mean absolute pixel difference (in [0, 1]) between renders of the same region for different seeds.
- zs_gain: G_T's gain with respect to z_S (losses.structure_gain) over training-size windows around the horizon at
  the served psi: by how many % of its RMS the image moves for a 1% isotropic change of z_S. What a distilled
  student's own G_S must beat: its relative z_S error times this gain is its image error before G_T's own.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from infinitygan.anchor import Anchor
from infinitygan.biomes import Biomes
from infinitygan.checkpoint import LoadedGenerator
from infinitygan.generator import Generator, WindowInputs
from infinitygan.losses import structure_gain
from infinitygan.sampling import sample_fake_inputs
from infinitygan.world import CHUNK_PX, DEFAULT_PSI, DEFAULT_PSI_LOCAL, World, WorldSpec, render_region

SCALEINV_DOWNSAMPLE = 4  # swd_scaleinv_4x: whole-height squares mean-pooled this many times before SWD

DESCRIPTOR_SIZE = 7
SWD_DIRECTIONS = 128  # per repeat, as PGGAN
SWD_REPEATS = 4
MIN_PYRAMID_SIZE = 16


@dataclass
class EvalOptions:
    patches: int = 512  # real and fake patches each for swd (and for each half of the real floor)
    descriptors_per_image: int = 32
    scaleinv_images: int = 512  # whole-height squares for swd_scaleinv_4x (as many as patches: same SWD bias)
    seeds: int = 8  # worlds for diversity, seams and the contact sheet
    seam_seeds: int = 16  # one world's seam ratio varies by ~0.1 (std); 16 worlds bring the mean to ~+-0.025
    seed: int = 0
    psi: float = 1.0  # metrics judge the untruncated distribution
    psi_local: float = 1.0  # (of z_l too)
    patch_px: int | None = None  # SWD patch side; default: the model's training patch (texture_size(patch_cells))
    scene_height: int | None = None  # default: the checkpoint's training value, else 256
    batch: int = 32
    large_render_px: tuple[int, int] = (1024, 512)  # width, height of the stitched render


# ---- sliced Wasserstein distance --------------------------------------------------------------------------------


def _blur(images: torch.Tensor) -> torch.Tensor:
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    kernel = torch.outer(taps, taps).expand(images.shape[1], 1, 5, 5).to(images)
    return F.conv2d(F.pad(images, (2, 2, 2, 2), mode="reflect"), kernel, groups=images.shape[1])


def laplacian_pyramid(images: torch.Tensor, min_size: int = MIN_PYRAMID_SIZE) -> list[torch.Tensor]:
    """Band-pass levels, finest first; the last level is the low-pass residual (as PGGAN's SWD)."""
    gaussian = [images]
    while min(gaussian[-1].shape[-2:]) // 2 >= min_size:
        gaussian.append(_blur(gaussian[-1])[..., ::2, ::2])
    levels = []
    for fine, coarse in itertools.pairwise(gaussian):
        up = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        levels.append(fine - up)
    levels.append(gaussian[-1])
    return levels


def descriptors(level: torch.Tensor, per_image: int, rng: torch.Generator) -> torch.Tensor:
    """(N * per_image, 3 * 7 * 7) random 7x7 neighbourhoods, normalised per channel over the whole set."""
    n, c, h, w = level.shape
    k = DESCRIPTOR_SIZE
    ys = torch.randint(0, h - k + 1, (n, per_image), generator=rng)
    xs = torch.randint(0, w - k + 1, (n, per_image), generator=rng)
    picked = neighbourhoods(level, ys, xs).view(n * per_image, c, k, k)
    mean = picked.mean(dim=(0, 2, 3), keepdim=True)
    std = picked.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)
    return ((picked - mean) / std).flatten(1)


def neighbourhoods(level: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """(B * P, C * 7 * 7): the 7x7 neighbourhoods of a (B, C, H, W) level whose top-left corners are (ys, xs), each
    (B, P) integer tensors within [0, H - 7] and [0, W - 7], as they are (not normalised). Differentiable."""
    n, c = level.shape[:2]
    per_image, k = ys.shape[1], DESCRIPTOR_SIZE
    patches = level.unfold(2, k, 1).unfold(3, k, 1)  # (n, c, h-k+1, w-k+1, k, k): a view
    return patches[torch.arange(n)[:, None], :, ys, xs].reshape(n * per_image, c * k * k)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, rng: torch.Generator) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between the projected sets."""
    count = min(a.shape[0], b.shape[0])
    a, b = a[:count].float(), b[:count].float()
    total = 0.0
    for _ in range(SWD_REPEATS):
        directions = torch.randn(SWD_DIRECTIONS, a.shape[1], generator=rng)
        directions /= directions.norm(dim=1, keepdim=True)
        # (directions, count): sorting along the contiguous axis is ~7x faster than along the strided one.
        proj_a, _ = torch.sort(directions @ a.T, dim=1)
        proj_b, _ = torch.sort(directions @ b.T, dim=1)
        total += float((proj_a - proj_b).abs().mean())
    return total / SWD_REPEATS


def colour_swd(a: np.ndarray, b: np.ndarray, *, samples: int = 16384, seed: int = 0) -> float:
    """Sliced Wasserstein distance between the colour distributions of two pixel sets (uint8 (..., 3)), in [0, 1]
    colour units x1e3: `samples` pixels drawn from each with replacement, fixed seed."""
    rng = torch.Generator().manual_seed(seed)
    a_t = torch.from_numpy(np.ascontiguousarray(a).reshape(-1, 3)).float() / 255.0
    b_t = torch.from_numpy(np.ascontiguousarray(b).reshape(-1, 3)).float() / 255.0
    if not len(a_t) or not len(b_t):
        raise ValueError("colour_swd needs two non-empty pixel sets")
    a_t = a_t[torch.randint(0, len(a_t), (samples,), generator=rng)]
    b_t = b_t[torch.randint(0, len(b_t), (samples,), generator=rng)]
    return 1e3 * sliced_wasserstein(a_t, b_t, rng)


def continuation_score(generator: Generator, spec: WorldSpec, anchor: Anchor) -> dict[str, float]:
    """How well an outpainted world continues its photo (issue 13's measure): the colour SWD between the band one
    photo-width to each side of the footprint (same rows) and the photo's own (opaque) pixels, for the anchored
    world, divided by the same distance for the base world without the photo. 1.0: no better than the base world;
    0: the surroundings have the photo's colours. Returns {"score", "anchored", "base"} (SWDs x1e3)."""
    fp = anchor.footprint
    photo = anchor.photo if anchor.weight is None else anchor.photo[anchor.weight > 0]

    def bands(world: World) -> np.ndarray:
        left = render_region(world, fp.x - fp.width, fp.y, fp.width, fp.height)
        right = render_region(world, fp.x + fp.width, fp.y, fp.width, fp.height)
        return np.concatenate([left, right], axis=1)

    anchored = colour_swd(bands(World(generator, spec, anchor)), photo)
    base = colour_swd(bands(World(generator, spec)), photo)
    return {"score": anchored / max(base, 1e-9), "anchored": anchored, "base": base}


def swd(images_a: torch.Tensor, images_b: torch.Tensor, *, per_image: int = 64, seed: int = 0) -> dict[str, Any]:
    """Multi-scale SWD (x1e3) between two image sets in [-1, 1] of the same size; mean over pyramid levels."""
    rng = torch.Generator().manual_seed(seed)
    levels_a, levels_b = laplacian_pyramid(images_a.float()), laplacian_pyramid(images_b.float())
    per_level = []
    for level_a, level_b in zip(levels_a, levels_b, strict=True):
        desc_a = descriptors(level_a, per_image, rng)
        desc_b = descriptors(level_b, per_image, rng)
        per_level.append(1e3 * sliced_wasserstein(desc_a, desc_b, rng))
    return {"mean": float(np.mean(per_level)), "levels": [round(v, 3) for v in per_level]}


# ---- image sources ------------------------------------------------------------------------------------------------


@dataclass
class RealSet:
    """Real images of one data folder, sampled once per evaluation run and shared by every model scored in it, so
    their numbers are comparable. Patches are cached per (split, patch size)."""

    data_dir: Path
    scene_height: int
    options: EvalOptions
    _patches: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    _squares: tuple[torch.Tensor, list[int]] | None = None

    def patches(self, split: str, patch_px: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (2n, 3, P, P) in [-1, 1], top_px (2n,) float64): two disjoint halves of n random patches."""
        from infinitygan.data import PatchDataset

        key = (split, patch_px)
        if key not in self._patches:
            count = 2 * self.options.patches
            seed = self.options.seed + (1_000_003 if split == "train" else 2_000_003)
            dataset = PatchDataset(
                self.data_dir, scene_height=self.scene_height, patch_size=patch_px, length=count, seed=seed, split=split
            )
            items = [dataset[i] for i in range(count)]
            images = torch.stack([item["image"] for item in items])
            top_px = torch.tensor([float(item["top_px"]) for item in items], dtype=torch.float64)
            self._patches[key] = (images, top_px)
        return self._patches[key]

    def scene_squares(self) -> tuple[torch.Tensor, list[int]]:
        """(squares (2N, 3, H, H) in [-1, 1], horizon row of each): whole-height crops of the training photos, N =
        scaleinv_images; the first N are what generated squares are compared with, the second N give the floor."""
        from infinitygan.data import load_scenes

        if self._squares is None:
            scenes = load_scenes(self.data_dir, self.scene_height, split="train")
            rng = np.random.default_rng(self.options.seed + 17)
            squares, horizons = [], []
            size = self.scene_height
            for _ in range(2 * self.options.scaleinv_images):
                scene = scenes[rng.integers(len(scenes))]
                left = int(rng.integers(scene.pixels.shape[2] - size + 1))
                crop = scene.pixels[:, :, left : left + size]
                crop = crop.flip(-1) if rng.random() < 0.5 else crop
                squares.append(crop.float().div(127.5).sub(1.0))
                horizons.append(math.floor(scene.horizon_row + 0.5))
            self._squares = (torch.stack(squares), horizons)
        return self._squares


@torch.no_grad()
def fake_patches(
    generator: Generator,
    top_px: torch.Tensor,
    cells: int,
    *,
    psi: float,
    seed: int,
    batch: int,
    size: int | None = None,
    psi_local: float = 1.0,
) -> torch.Tensor:
    """Generated patches of `cells` z_S cells whose top rows lie at top_px (random horizontal phase, no jitter),
    cropped to their top-left size x size (default: whole): (n, 3, P, P) in [-1, 1]. psi and psi_local truncate as
    a world's (infinitygan.world.WorldSpec)."""
    generator.eval()
    rng = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    out = []
    for start in range(0, top_px.shape[0], batch):
        fake = sample_fake_inputs(
            generator, top_px[start : start + batch], cells, rng, device, mixing=0.0, pairs=None, jitter=False
        )
        styles = generator.texture_styles(fake.z_global, psi=psi)
        inputs = fake.inputs  # z_l * 1.0 is z_l to the bit: no special case for the untruncated metrics
        inputs = WindowInputs(
            local_latents=inputs.local_latents * psi_local, coords=inputs.coords, noises=inputs.noises
        )
        image = generator(inputs, fake.z_global * psi, styles).clamp(-1, 1).cpu()
        out.append(image if size is None else image[..., :size, :size])
    return torch.cat(out)


@torch.no_grad()
def structure_gain_probe(
    generator: Generator, cells: int, *, psi: float, seed: int = 0, windows: int = 16, batch: int = 8
) -> float:
    """Mean losses.structure_gain of G_T over `windows` fixed windows of `cells` z_S cells whose tops lie within
    two windows of the horizon, at truncation psi (the same probe for every model: seed fixes it)."""
    generator.eval()
    rng = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    span = 2 * generator.geometry.texture_size(cells)
    gains = []
    for start in range(0, windows, batch):
        count = min(batch, windows - start)
        top_px = (torch.rand(count, generator=rng) * 2 - 1) * span
        fake = sample_fake_inputs(generator, top_px, cells, rng, device, mixing=0.0, pairs=None, jitter=False)
        styles = list(generator.texture_styles(fake.z_global, psi=psi).unbind(1))
        images, z_s = generator.synthesize(fake.inputs, fake.z_global * psi, styles)
        gains.append(structure_gain(generator.texture, z_s, images, styles, fake.inputs.noises, rng))
    return float(torch.cat(gains).mean())


def uint8_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def scene_squares(world: World, scene_height: int, column: int, top: int | None = None) -> np.ndarray:
    """A scene_height-square render whose top row is `top` (default: centred on the horizon, row 0)."""
    top = -scene_height // 2 if top is None else top
    return render_region(world, column, top, scene_height, scene_height)


# ---- metrics on worlds ----------------------------------------------------------------------------------------------


def seam_ratio(pixels: np.ndarray, x0: int, y0: int, period: int = 1, skip_rows: tuple[int, ...] = (0,)) -> float:
    """Mean |difference| across chunk-boundary pixel pairs over the mean across the control pairs beside them.

    x0, y0: world position of pixels[0, 0]. The controls of a boundary at c are the pairs straddling c - period and
    c + period (the neighbouring latent-cell boundaries, the same phase of the latent grid): a generator may draw a
    faint cell-periodic pattern, and its statistics change with the row (sky is smoother than ground), so a control
    taken from the same neighbourhood keeps both out of the ratio. Boundaries in skip_rows (world rows) are ignored
    entirely; controls stay inside the image. ~1.0 = seamless.
    """
    image = pixels.astype(np.float64)
    dx = np.abs(image[:, 1:] - image[:, :-1]).mean(axis=2)  # pair (c-1, c) at index c-1
    dy = np.abs(image[1:] - image[:-1]).mean(axis=2)
    cols = np.arange(1, image.shape[1]) + x0
    rows = np.arange(1, image.shape[0]) + y0
    col_seam = cols % CHUNK_PX == 0
    row_seam = (rows % CHUNK_PX == 0) & ~np.isin(rows, skip_rows)
    col_control = np.isin(cols, np.concatenate([cols[col_seam] - period, cols[col_seam] + period])) & ~col_seam
    row_control = np.isin(rows, np.concatenate([rows[row_seam] - period, rows[row_seam] + period]))
    row_control &= ~np.isin(rows, rows[rows % CHUNK_PX == 0])
    seam = np.concatenate([dx[:, col_seam].ravel(), dy[row_seam].ravel()])
    control = np.concatenate([dx[:, col_control].ravel(), dy[row_control].ravel()])
    return float(seam.mean() / max(control.mean(), 1e-12))


def contact_sheet(tiles: list[np.ndarray], columns: int = 4, gap: int = 4) -> np.ndarray:
    height, width = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / columns)
    sheet = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * (height + gap) : r * (height + gap) + height, c * (width + gap) : c * (width + gap) + width] = tile
    return sheet


# ---- the evaluation -------------------------------------------------------------------------------------------------


def _swd_against(fakes: torch.Tensor, reals: torch.Tensor, n: int, options: EvalOptions) -> tuple[dict, dict]:
    """(SWD of fakes vs the first n reals, SWD of the other n reals vs the same: the real floor)."""
    real_a, real_b = reals[:n], reals[n:]
    per_image = options.descriptors_per_image
    return swd(fakes, real_a, per_image=per_image, seed=options.seed), swd(
        real_b, real_a, per_image=per_image, seed=options.seed
    )


def patch_swd(generator: Generator, reals: RealSet, cells: int, split: str = "train") -> tuple[float, float]:
    """(SWD, real floor) of generator's cells-cell patches against one split: the headline number of evaluate(),
    alone, for checking a model during training."""
    options = reals.options
    n = options.patches
    images, top_px = reals.patches(split, generator.geometry.texture_size(cells))
    fakes = _fake_patches_for(generator, top_px[:n], cells, options)
    fake_swd, floor_swd = _swd_against(fakes, images, n, options)
    return fake_swd["mean"], floor_swd["mean"]


def _fake_patches_for(
    generator: Generator, top_px: torch.Tensor, cells: int, options: EvalOptions, size: int | None = None
) -> torch.Tensor:
    """fake_patches at the options' truncation, seed and batch."""
    return fake_patches(
        generator,
        top_px,
        cells,
        psi=options.psi,
        seed=options.seed,
        batch=options.batch,
        size=size,
        psi_local=options.psi_local,
    )


def evaluate(
    model: LoadedGenerator,
    data_dir: Path,
    options: EvalOptions | None = None,
    out_dir: Path | None = None,
    reals: RealSet | None = None,
) -> dict[str, Any]:
    """Score one model against data_dir's training split and, when data_dir has one, its evaluation split.

    Pass the same `reals` to score several models on identical real samples (what `infinitygan eval A B` does), and
    the same options.patch_px when their training patches differ (a student's and its teacher's), so that their SWDs
    compare patches of one size.
    SWD values are x1e3 (PGGAN); *_floor is the same distance between two disjoint real halves."""
    options = options or EvalOptions()
    generator = model.generator.eval()
    scene_height = options.scene_height or model.scene_height
    reals = reals or RealSet(Path(data_dir), scene_height, options)
    patch_px = options.patch_px or generator.geometry.texture_size(model.patch_cells)
    cells = generator.geometry.cells_covering(patch_px)
    n = options.patches

    result: dict[str, Any] = {}
    for split, prefix in (("train", "swd"), ("eval", "swd_eval")):
        if split == "eval" and not has_split(Path(data_dir), "eval"):
            continue
        images, top_px = reals.patches(split, patch_px)
        fakes = _fake_patches_for(generator, top_px[:n], cells, options, size=patch_px)
        fake_swd, floor_swd = _swd_against(fakes, images, n, options)
        result[prefix] = round(fake_swd["mean"], 3)
        result[f"{prefix}_levels"] = fake_swd["levels"]
        result[f"{prefix}_real_floor"] = round(floor_swd["mean"], 3)
        result[f"{prefix}_floor_ratio"] = round(fake_swd["mean"] / max(floor_swd["mean"], 1e-9), 3)

    # Scale-invariance: each image is a different world, at a different chunk-aligned column, framed like its real
    # counterpart (the same rows above and below the horizon).
    real_squares, horizons = reals.scene_squares()
    count = options.scaleinv_images
    real_squares, floor_squares, horizons = real_squares[:count], real_squares[count:], horizons[:count]
    fake_squares = []
    for i, horizon in enumerate(horizons):
        world = _metric_world(generator, options.seed * 7919 + i, options)
        pixels = scene_squares(world, scene_height, column=CHUNK_PX * (i % 5 - 2), top=-horizon)
        fake_squares.append(uint8_to_tensor(pixels))
    scaleinv = swd(
        F.avg_pool2d(torch.stack(fake_squares), SCALEINV_DOWNSAMPLE),
        F.avg_pool2d(real_squares, SCALEINV_DOWNSAMPLE),
        per_image=options.descriptors_per_image,
        seed=options.seed,
    )
    scaleinv_floor = swd(
        F.avg_pool2d(floor_squares, SCALEINV_DOWNSAMPLE),
        F.avg_pool2d(real_squares, SCALEINV_DOWNSAMPLE),
        per_image=options.descriptors_per_image,
        seed=options.seed,
    )
    world_renders = []
    for i in range(options.seeds):
        world = _metric_world(generator, options.seed * 7919 + i, options)
        world_renders.append(scene_squares(world, scene_height, column=CHUNK_PX * (i % 5 - 2)))

    diversity = _diversity(generator, options, scene_height)
    seams = []
    for i in range(options.seam_seeds):
        world = _metric_world(generator, options.seed * 7919 + i, options)
        x0, y0 = -CHUNK_PX, -2 * CHUNK_PX
        pixels = render_region(world, x0, y0, 3 * CHUNK_PX, 4 * CHUNK_PX)
        seams.append(seam_ratio(pixels, x0, y0, period=generator.geometry.cell_px))

    result.update(
        {
            "swd_scaleinv_4x": round(scaleinv["mean"], 3),
            "scaleinv_ratio": round(scaleinv["mean"] / max(result["swd"], 1e-9), 3),
            "swd_scaleinv_4x_real_floor": round(scaleinv_floor["mean"], 3),
            "scaleinv_floor_ratio": round(scaleinv["mean"] / max(scaleinv_floor["mean"], 1e-9), 3),
            "seam_score": round(float(np.mean(seams)), 4),
            "diversity": round(diversity, 4),
            "zs_gain": round(structure_gain_probe(generator, cells, psi=options.psi, seed=options.seed), 2),
            "patch_px": patch_px,
            "patches": n,
            "scene_height": scene_height,
            "psi": options.psi,
            "psi_local": options.psi_local,
            "trained_iterations": model.metadata.get("trained_iterations"),
            "model_hash": model.model_hash,
        }
    )
    if out_dir is not None:
        _write_images(generator, world_renders, options, out_dir)
    return result


def _metric_world(generator: Generator, seed: int, options: EvalOptions) -> World:
    return World(generator, WorldSpec(seed=seed, psi=options.psi, psi_local=options.psi_local))


def has_split(data_dir: Path, split: str) -> bool:
    from infinitygan.data import MANIFEST_JSON

    return (Path(data_dir) / split / MANIFEST_JSON).is_file()


def _diversity(generator: Generator, options: EvalOptions, scene_height: int) -> float:
    """Same region, different seeds: mean |a - b| over all seed pairs, pixels in [0, 1]."""
    renders = []
    for i in range(max(2, options.seeds)):
        world = _metric_world(generator, options.seed * 7919 + 100 + i, options)
        renders.append(scene_squares(world, scene_height, column=0).astype(np.float64) / 255)
    distances = [np.abs(a - b).mean() for a, b in itertools.combinations(renders, 2)]
    return float(np.mean(distances))


def _write_images(generator: Generator, renders: list[np.ndarray], options: EvalOptions, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(contact_sheet(renders)).save(out_dir / "contact_sheet.png")
    width, height = options.large_render_px
    world = World(generator, WorldSpec(seed=options.seed))  # as served: DEFAULT_PSI, DEFAULT_PSI_LOCAL
    large = render_region(world, -width // 2, -height // 2, width, height)
    Image.fromarray(large).save(out_dir / "large_render.png")


TABLE_COLUMNS = (
    ("swd", "SWD"),
    ("swd_real_floor", "floor"),
    ("swd_floor_ratio", "xfloor"),
    ("swd_eval", "SWD eval"),
    ("swd_eval_real_floor", "floor"),
    ("swd_eval_floor_ratio", "xfloor"),
    ("swd_scaleinv_4x", "SWD 4x"),
    ("scaleinv_ratio", "4x/1x"),
    ("swd_scaleinv_4x_real_floor", "4x floor"),
    ("scaleinv_floor_ratio", "4x xfloor"),
    ("seam_score", "seam"),
    ("diversity", "diversity"),
    ("zs_gain", "z_S gain"),
    ("trained_iterations", "iterations"),
)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """A Markdown table, one row per model, of the headline numbers of evaluate()."""
    header = "| model | " + " | ".join(title for _, title in TABLE_COLUMNS) + " |"
    lines = [header, "|" + " --- |" * (len(TABLE_COLUMNS) + 1)]
    for name, result in results.items():
        cells = [str(result.get(key, "-")) for key, _ in TABLE_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sample_strip(
    generators: dict[str, Generator],
    scene_height: int,
    *,
    seeds: int = 4,
    psi: float = DEFAULT_PSI,
    psi_local: float = DEFAULT_PSI_LOCAL,
    seed: int = 0,
) -> Image.Image:
    """One row per model: `seeds` scene-height squares centred on the horizon (the same world seeds and columns for
    every model), its name written above; for comparing models by eye."""
    from PIL import ImageDraw

    gap, label = 4, 16
    width = seeds * (scene_height + gap) - gap
    sheet = Image.new("RGB", (width, len(generators) * (scene_height + label + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row, (name, generator) in enumerate(generators.items()):
        top = row * (scene_height + label + gap)
        draw.text((2, top + 2), name, fill=(0, 0, 0))
        for i in range(seeds):
            world = World(generator.eval(), WorldSpec(seed=seed * 7919 + i, psi=psi, psi_local=psi_local))
            pixels = scene_squares(world, scene_height, column=CHUNK_PX * (i % 5 - 2))
            sheet.paste(Image.fromarray(pixels), (i * (scene_height + gap), top + label))
    return sheet


def horizon_sheet(
    generator: Generator,
    *,
    seeds: int = 8,
    width: int = 1024,
    height: int = 512,
    psi: float = DEFAULT_PSI,
    psi_local: float = DEFAULT_PSI_LOCAL,
    biomes: Biomes | None = None,
    seed: int = 0,
    columns: int = 2,
) -> Image.Image:
    """A contact sheet for judging a model by eye: world seeds seed..seed+seeds-1, each a width x height region
    centred on the horizon (world rows -height/2 .. height/2, columns -width/2 .. width/2) at psi and psi_local, with
    `biomes` if given, `columns` per row, the seed written above each. Raises ValueError for a non-positive size or
    count."""
    label = f"psi {psi:g}, psi_local {psi_local:g}" + (f", biomes {biomes.region_px}" if biomes is not None else "")
    panels = [(f"seed {seed + i}, {label}", generator, seed + i) for i in range(seeds)]
    return _sheet(panels, width=width, height=height, psi=psi, psi_local=psi_local, columns=columns, biomes=biomes)


def swap_sheet(
    base: Generator,
    partner: Generator,
    swap_levels: list[float],
    *,
    seeds: int = 3,
    width: int = 256,
    height: int = 256,
    psi: float = DEFAULT_PSI,
    psi_local: float = DEFAULT_PSI_LOCAL,
    seed: int = 0,
) -> Image.Image:
    """Layer swapping at a glance: one row per swap level (layers above it from `partner`, the rest from `base`:
    -1 is the partner alone, the top level the base alone), one column per world seed, each panel centred on the
    horizon. Raises ValueError for a bad size, count or level."""
    from infinitygan.blend import blend_generators

    panels = []
    for level in swap_levels:
        blended = blend_generators(base, partner, level)
        panels += [(f"swap level {level:g}, seed {seed + i}", blended, seed + i) for i in range(seeds)]
    return _sheet(panels, width=width, height=height, psi=psi, psi_local=psi_local, columns=seeds)


def _sheet(
    panels: list[tuple[str, Generator, int]],
    *,
    width: int,
    height: int,
    psi: float,
    psi_local: float,
    columns: int,
    biomes: Biomes | None = None,
):
    from PIL import ImageDraw

    if not panels or width < 1 or height < 1 or columns < 1:
        raise ValueError(f"need panels and a positive size: {len(panels)}, {width}, {height}, {columns}")
    gap, label = 8, 16
    rows = math.ceil(len(panels) / columns)
    sheet = Image.new("RGB", (columns * (width + gap) - gap, rows * (height + label + gap) - gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (text, generator, world_seed) in enumerate(panels):
        left, top = (i % columns) * (width + gap), (i // columns) * (height + label + gap)
        draw.text((left + 2, top + 2), text, fill=(0, 0, 0))
        world = World(generator.eval(), WorldSpec(seed=world_seed, psi=psi, psi_local=psi_local, biomes=biomes))
        pixels = render_region(world, -width // 2, -height // 2, width, height)
        sheet.paste(Image.fromarray(pixels), (left, top + label))
    return sheet

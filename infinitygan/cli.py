"""`infinitygan` command line: one subcommand per job; user errors print one clear line and exit non-zero."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CLIError(Exception):
    """An error whose message is meant for the user, without a traceback."""


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _lr_step(text: str) -> tuple[int, float]:
    from infinitygan.training.config import parse_lr_step

    try:
        return parse_lr_step(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


TIFF_SUFFIXES = (".tif", ".tiff")
TIFF_TILE = 256


def write_tiled_tiff(world, x: int, y: int, width: int, height: int, out: Path, *, progress: bool) -> None:
    """Stream a region into a tiled, deflate-compressed BigTIFF (tifffile) one 256-row band at a time: memory stays
    about two bands (~100 MB for a 65536 px wide panorama) whatever the height. Written to a temporary name and
    renamed, so an interrupted render leaves no half file."""
    import numpy as np
    import tifffile

    from infinitygan.world import iter_row_bands

    def tiles():
        for band in iter_row_bands(world, x, y, width, height, TIFF_TILE, progress=progress):
            padded = np.zeros((TIFF_TILE, -(-width // TIFF_TILE) * TIFF_TILE, 3), dtype=np.uint8)
            padded[: band.shape[0], :width] = band
            for left in range(0, width, TIFF_TILE):
                yield padded[:, left : left + TIFF_TILE]

    partial = out.with_name(f".{out.name}.partial")
    try:
        tifffile.imwrite(
            partial,
            tiles(),
            shape=(height, width, 3),
            dtype=np.uint8,
            tile=(TIFF_TILE, TIFF_TILE),
            photometric="rgb",
            compression="zlib",
            bigtiff=True,
        )
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)


def _cmd_render(args: argparse.Namespace) -> None:
    from PIL import Image

    from infinitygan.checkpoint import load_generator
    from infinitygan.world import World, WorldSpec, render_region, validate_region

    validate_region(args.x, args.y, args.width, args.height)  # fail before the (slow) model load
    biomes = _biomes(args)
    spec = WorldSpec(seed=args.seed, psi=args.psi, mix_seed=args.mix_seed, biomes=biomes, psi_local=args.psi_local)
    generator = load_generator(args.checkpoint).generator
    if args.blend_partner is not None:
        from infinitygan.blend import blend_generators

        if args.swap_level is None:
            raise CLIError("--blend-partner needs --swap-level")
        partner = load_generator(args.blend_partner).generator
        generator = blend_generators(generator, partner, args.swap_level, args.swap_smooth)
    elif args.swap_level is not None:
        raise CLIError("--swap-level needs --blend-partner")
    session = None
    if args.runtime != "eager" and args.blend_partner is None:  # as the service: a blend renders eagerly
        import torch

        from infinitygan.runtime import ChunkSession, RuntimeUnavailable, chunk_graph_bytes

        try:
            session = ChunkSession(chunk_graph_bytes(generator), threads=torch.get_num_threads())
        except RuntimeUnavailable as exc:
            raise CLIError(f"{exc}; --runtime eager renders without it") from None
    world = World(generator, spec, session=session)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in TIFF_SUFFIXES:
        write_tiled_tiff(world, args.x, args.y, args.width, args.height, out, progress=not args.quiet)
    else:
        pixels = render_region(world, args.x, args.y, args.width, args.height, progress=not args.quiet)
        Image.fromarray(pixels).save(out, format="PNG")
    if not args.quiet:
        print(f"wrote {out} ({args.width}x{args.height})", file=sys.stderr)


def _biomes(args: argparse.Namespace):
    """Biomes from --biomes REGION_PX[:TRANSITION_PX] and --biome-style SEED[:PSI] ...; None without --biomes."""
    from infinitygan.biomes import Biomes, BiomeStyle

    if args.biomes is None:
        if args.biome_style:
            raise CLIError("--biome-style needs --biomes REGION_PX[:TRANSITION_PX]")
        return None
    try:
        region, _, transition = args.biomes.partition(":")
        styles = []
        for text in args.biome_style or ():
            seed, _, psi = text.partition(":")
            styles.append(BiomeStyle(int(seed, 0), float(psi) if psi else args.psi))
        region_px = int(region, 0)
        return Biomes(region_px, int(transition, 0) if transition else max(1, region_px // 4), tuple(styles))
    except ValueError as exc:
        raise CLIError(f"bad biomes: {exc}") from None


def _add_psi_local(p: argparse.ArgumentParser) -> None:
    from infinitygan.world import DEFAULT_PSI_LOCAL

    p.add_argument(
        "--psi-local",
        type=float,
        default=DEFAULT_PSI_LOCAL,
        help=f"truncation of the local latents z_l, 0..2 (default: the served {DEFAULT_PSI_LOCAL}; 1: untruncated)",
    )


def _add_biome_arguments(p: argparse.ArgumentParser) -> None:
    from infinitygan.biomes import SERVED_REGION_PX, SERVED_TRANSITION_PX

    p.add_argument(
        "--biomes",
        default=None,
        metavar="REGION_PX[:TRANSITION_PX]",
        help="regions along x about REGION_PX wide, each with its own look, blended over TRANSITION_PX "
        f"(default REGION_PX / 4, as the service); as POST /worlds' biomes (the service's default: {SERVED_REGION_PX}:"
        f"{SERVED_TRANSITION_PX})",
    )
    p.add_argument(
        "--biome-style",
        action="append",
        metavar="SEED[:PSI]",
        help="a biome's look (repeat; cycled over the regions); default: hashed from the world seed per region",
    )


def _add_render(sub: argparse._SubParsersAction) -> None:
    from infinitygan.world import DEFAULT_PSI

    p = sub.add_parser("render", help="render any rectangle of a world to a PNG (or a tiled BigTIFF, any size)")
    p.add_argument("--checkpoint", default=None, help="generator .safetensors (default: the shipped model)")
    p.add_argument("--seed", type=_int, required=True, help="world seed, 0 <= S < 2**63")
    p.add_argument("--psi", type=float, default=DEFAULT_PSI, help=f"truncation psi (default {DEFAULT_PSI})")
    _add_psi_local(p)
    p.add_argument("--mix-seed", type=_int, default=None, help="optional style-mixing seed (fine layers)")
    _add_biome_arguments(p)
    p.add_argument(
        "--blend-partner",
        default=None,
        metavar="CHECKPOINT",
        help="layer swapping: a fine-tune of --checkpoint whose finer layers replace the model's above --swap-level",
    )
    p.add_argument(
        "--swap-level",
        type=float,
        default=None,
        help="0 = G_S, i + 1 = G_T stage i (a student's output noise: the level after); layers above it from the "
        "partner",
    )
    p.add_argument("--swap-smooth", type=float, default=0.0, help="> 0: a sigmoid over levels instead of a cut")
    p.add_argument("--x", type=_int, required=True, help="left world pixel (grows right)")
    p.add_argument("--y", type=_int, required=True, help="top world pixel (grows down; row 0 is the horizon)")
    p.add_argument("--width", type=_int, required=True)
    p.add_argument("--height", type=_int, required=True)
    p.add_argument(
        "--out", required=True, help="output file: .png, or .tif/.tiff for a tiled BigTIFF streamed in constant memory"
    )
    p.add_argument(
        "--runtime",
        choices=("onnxruntime", "eager"),
        default="onnxruntime",
        help="as the service's INFINITYGAN_RUNTIME (default onnxruntime: the same bytes as its tiles, faster)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_render)


def _cmd_init(args: argparse.Namespace) -> None:
    from infinitygan.checkpoint import save_generator
    from infinitygan.generator import build_generator

    generator = build_generator(args.preset, init_seed=args.init_seed, upsampler=args.upsampler)
    save_generator(generator, args.out, {"trained_iterations": 0, "init_seed": args.init_seed})
    print(f"wrote untrained {args.preset} generator to {args.out}", file=sys.stderr)


def _add_init(sub: argparse._SubParsersAction) -> None:
    from infinitygan.config import PRESETS, UPSAMPLERS

    p = sub.add_parser("init", help="write an untrained generator checkpoint (tests, experiments)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--upsampler", choices=UPSAMPLERS, default=None)
    p.add_argument("--init-seed", type=_int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=_cmd_init)


def _cmd_data_fetch(args: argparse.Namespace) -> None:
    from infinitygan.data import DataError
    from infinitygan.recipe import HORIZON_SHEET, fetch_recipe

    try:
        entries = fetch_recipe(Path(args.out))
    except DataError as exc:
        raise CLIError(str(exc)) from None
    counts = {split: sum(entry.split == split for entry in entries) for split in ("train", "eval")}
    print(
        f"fetched {counts['train']} training and {counts['eval']} evaluation photos into {args.out}/train and "
        f"{args.out}/eval; check the horizons in {args.out}/{HORIZON_SHEET}",
        file=sys.stderr,
    )


def _cmd_data_prepare(args: argparse.Namespace) -> None:
    from infinitygan.data import DataError, prepare_split

    try:
        photos = None if args.photos is None else [name.strip() for name in args.photos.split(",") if name.strip()]
        entries = prepare_split(Path(args.data), Path(args.out), args.scene_height, args.split, photos)
    except DataError as exc:
        raise CLIError(str(exc)) from None
    print(f"wrote {len(entries)} {args.split} photos, {args.scene_height} rows tall, to {args.out}", file=sys.stderr)


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="training data")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch = data_sub.add_parser(
        "fetch", help="download the recipe's freely licensed landscape photos (Debian): OUT/train, OUT/eval"
    )
    fetch.add_argument("--out", default="data/landscapes", help="destination folder (default data/landscapes)")
    fetch.set_defaults(handler=_cmd_data_fetch)
    prepare = data_sub.add_parser(
        "prepare", help="write one split resized to the scene height (PNG + manifest) to carry to a GPU machine"
    )
    prepare.add_argument("--data", default="data/landscapes", help="data folder (default data/landscapes)")
    prepare.add_argument("--out", required=True, help="destination folder")
    prepare.add_argument("--scene-height", type=_int, default=256, help="rows of every photo (default 256)")
    prepare.add_argument("--split", choices=("train", "eval"), default="train")
    prepare.add_argument(
        "--photos", default=None, help="comma-separated files of the split to keep (a subset for a domain fine-tune)"
    )
    prepare.set_defaults(handler=_cmd_data_prepare)


def _cmd_train(args: argparse.Namespace) -> None:
    from infinitygan.data import DataError
    from infinitygan.training import ResumeError, TrainConfig, seed_run_from, train
    from infinitygan.training.state import read_resume_point, read_run_meta

    out = Path(args.out)
    try:
        current = read_run_meta(out)
        if args.resume_from is not None:
            point_step = int(read_resume_point(Path(args.resume_from))[1]["step"])
            if current is not None and int(current["step"]) >= point_step:
                # Same machine, run folder ahead of the committed point: continue the folder, lose nothing.
                print(f"{out} is at step {current['step']}, the point at {point_step}: resuming {out}", file=sys.stderr)
            else:
                seed_run_from(Path(args.resume_from), out)
                print(f"seeded {out} from {args.resume_from} (step {point_step})", file=sys.stderr)
        meta = read_run_meta(out)
    except ResumeError as exc:
        raise CLIError(str(exc)) from None
    runtime = dict(
        max_minutes=args.max_minutes,
        max_iterations=args.max_iterations,
        threads=args.threads,
        device=args.device,
        checkpoint_minutes=args.checkpoint_minutes,
        sample_every=args.sample_every,
        eval_minutes=args.eval_minutes,
    )
    if meta is not None:
        # A resumed run keeps its recipe; only when and where it runs (and the batch size, if given) may change.
        stored = TrainConfig.from_dict(meta["train_config"])
        try:
            config = stored.resumed_with(
                int(meta["step"]),
                tuple(args.lr_step),
                **runtime,
                **({"batch": args.batch} if args.batch is not None else {}),
            )
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    else:
        config = TrainConfig(
            preset=args.preset,
            patch_cells=args.patch_cells,
            batch=args.batch if args.batch is not None else 8,
            r1_gamma=args.r1_gamma,
            scene_height=args.scene_height,
            seed=args.seed,
            d_input=args.d_input,
            augment=args.augment,
            precision=args.precision,
            init_from=args.init_from,
            noise_free_stages=args.noise_free_stages,
            noise_gate=args.noise_gate,
            structure_gain_weight=args.structure_gain_weight,
            scene_weight=args.scene_weight,
            scene_interval=args.scene_interval,
            scene_batch=args.scene_batch,
            scene_d_lr=args.scene_d_lr,
            scene_diversity_weight=args.scene_diversity_weight,
            diversity_weight=args.diversity_weight,
            lr_steps=tuple(args.lr_step),
            **runtime,
        )
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CLIError("--device cuda: no CUDA device is available")
    try:
        train(config, args.data, out, progress=not args.quiet, resume_point=args.resume_point)
    except (DataError, ResumeError) as exc:
        raise CLIError(str(exc)) from None


def _add_train(sub: argparse._SubParsersAction) -> None:
    from infinitygan.augment import DEFAULT_POLICY
    from infinitygan.config import PRESETS
    from infinitygan.training.config import D_INPUTS, PRECISIONS, TrainConfig

    defaults = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train (or resume) a generator on a folder of landscape images",
        description="Train a generator, or resume the run in --out. A resumed run keeps its recipe: only the "
        "stopping rule, threads, device, checkpoint/sample intervals and --batch may change, and --lr-step may add "
        "learning-rate steps from its current iteration on.",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default=defaults.preset)
    p.add_argument("--data", required=True, help="data folder (e.g. from `infinitygan data fetch`); its train split")
    p.add_argument("--out", required=True, help="run folder; an existing run there is resumed")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this many minutes (this session)")
    p.add_argument("--max-iterations", type=_int, default=None, help="stop at this total iteration count")
    p.add_argument("--batch", type=_int, default=None, help="images per step (default 8; may change on resume)")
    p.add_argument("--patch-cells", type=_int, default=defaults.patch_cells, help="z_S cells per training window")
    p.add_argument("--r1-gamma", type=float, default=defaults.r1_gamma)
    p.add_argument("--scene-height", type=_int, default=defaults.scene_height, help="photos are resized to this")
    p.add_argument("--d-input", choices=D_INPUTS, default=defaults.d_input, help="wavelet: SWAGAN's Haar-DWT D")
    p.add_argument("--augment", default=DEFAULT_POLICY, help=f"DiffAugment policy (default {DEFAULT_POLICY}; '' off)")
    p.add_argument("--precision", choices=PRECISIONS, default=defaults.precision, help="auto: bf16 where fast")
    p.add_argument(
        "--init-from",
        default=None,
        help="warm start a new run: G (and its EMA) from a generator checkpoint, or G, G_ema and D from a resume "
        "point (matching tensors; optimisers and iteration count start afresh)",
    )
    p.add_argument(
        "--noise-free-stages",
        type=_int,
        default=defaults.noise_free_stages,
        help="G_T's first this many stages inject no noise (a new run; default %(default)s: the coarsest stage's "
        "noise drew white blotches)",
    )
    p.add_argument(
        "--noise-gate",
        action="store_true",
        help="weight G_T's noise per location by a 1x1 conv of its features, starting at 1 everywhere (a new run; "
        "default: one strength per layer, StyleGAN2's)",
    )
    p.add_argument(
        "--structure-gain-weight",
        type=float,
        default=defaults.structure_gain_weight,
        help="penalise G_T's gain with respect to z_S (a new run; default %(default)s: off): a low-gain teacher is "
        "one whose G_S a distilled student can learn",
    )
    p.add_argument(
        "--scene-weight",
        type=float,
        default=defaults.scene_weight,
        help="weight of a second discriminator's term that judges whole-height squares downsampled 4x, like the "
        "ScaleInv-4x score (a new run; default %(default)s: off)",
    )
    p.add_argument(
        "--scene-interval",
        type=_int,
        default=defaults.scene_interval,
        help="iterations between whole-scene steps (a new run; default %(default)s)",
    )
    p.add_argument(
        "--scene-batch",
        type=_int,
        default=defaults.scene_batch,
        help="whole-height squares per whole-scene step, even (a new run; default %(default)s)",
    )
    p.add_argument(
        "--scene-d-lr",
        type=float,
        default=defaults.scene_d_lr,
        help="the whole-scene discriminator's own fixed learning rate (a new run; default: the run's, --lr-step "
        "included)",
    )
    p.add_argument(
        "--scene-diversity-weight",
        type=float,
        default=defaults.scene_diversity_weight,
        help="weight of mode seeking with respect to z_g on the whole-scene squares (a new run; default "
        "%(default)s: off)",
    )
    p.add_argument(
        "--diversity-weight",
        type=float,
        default=defaults.diversity_weight,
        help="weight of InfinityGAN's mode-seeking diversity loss (a new run; default %(default)s)",
    )
    p.add_argument(
        "--resume-from", default=None, help="continue a compact resume point (seeds --out unless it is already past it)"
    )
    p.add_argument("--resume-point", default=None, help="also write a compact resume point here at every save")
    p.add_argument(
        "--lr-step",
        type=_lr_step,
        action="append",
        default=[],
        metavar="ITER:MULT",
        help="from iteration ITER on, train G and D at MULT x the learning rate (repeatable; on resume, ITER must "
        "not be before the run's current iteration)",
    )
    p.add_argument("--seed", type=_int, default=defaults.seed)
    p.add_argument("--checkpoint-minutes", type=float, default=defaults.checkpoint_minutes)
    p.add_argument("--sample-every", type=_int, default=defaults.sample_every, help="iterations between samples")
    p.add_argument(
        "--eval-minutes", type=float, default=None, help="score SWD this often; keep the best as best.safetensors"
    )
    p.add_argument("--threads", type=_int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_train)


def _cmd_eval(args: argparse.Namespace) -> None:
    import json

    from infinitygan.checkpoint import load_generator
    from infinitygan.evaluate import EvalOptions, RealSet, evaluate, format_table
    from infinitygan.world import WorldSpec

    WorldSpec(seed=0, psi=args.psi, psi_local=args.psi_local)  # a bad truncation fails (RegionError) before loading
    models = [load_generator(path) for path in args.checkpoints]  # all load before the slow part: fail early
    options = EvalOptions(
        psi=args.psi,
        psi_local=args.psi_local,
        patches=args.patches,
        scaleinv_images=args.scaleinv_images,
        seeds=args.seeds,
        seed=args.seed,
        scene_height=args.scene_height,
        # One patch size for every model of the run (default: the first one's training patch), so SWDs compare.
        patch_px=args.patch_px or models[0].generator.geometry.texture_size(models[0].patch_cells),
    )
    scene_heights = {options.scene_height or model.scene_height for model in models}
    if len(scene_heights) > 1:
        raise CLIError(f"the checkpoints were trained at different scene heights {sorted(scene_heights)}: pass one")
    scene_height = scene_heights.pop()
    if not 16 <= options.patch_px <= scene_height:
        raise CLIError(f"--patch-px must lie in 16..{scene_height} (the scene height), got {options.patch_px}")
    reals = RealSet(Path(args.data), scene_height, options)
    results = {}
    for index, (path, model) in enumerate(zip(args.checkpoints, models, strict=True)):
        out = None
        if args.out:
            out = Path(args.out) / (Path(path).stem if len(models) > 1 else "")
            if len(models) > 1 and sum(Path(p).stem == Path(path).stem for p in args.checkpoints) > 1:
                out = Path(args.out) / f"{index}-{Path(path).parent.name}-{Path(path).stem}"
        results[path] = evaluate(model, Path(args.data), options, out_dir=out, reals=reals)
    if args.strip:
        from infinitygan.evaluate import sample_strip

        names = {path: Path(path).parent.name + "/" + Path(path).name for path in args.checkpoints}
        generators = {names[path]: model.generator for path, model in zip(args.checkpoints, models, strict=True)}
        sample_strip(generators, reals.scene_height, seed=args.seed).save(args.strip)
    if args.json:
        print(json.dumps(results[args.checkpoints[0]] if len(models) == 1 else results, sort_keys=True))
    else:
        print(format_table(results))


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from infinitygan.evaluate import EvalOptions

    p = sub.add_parser(
        "eval",
        help="SWD (train and eval splits, with real floors), scale-invariant SWD, seam score and diversity",
        description="Score one or more generators on the same real samples in one run, so their numbers compare.",
    )
    p.add_argument("checkpoints", nargs="+", help="generator .safetensors files")
    p.add_argument("--data", required=True, help="data folder (from `infinitygan data fetch`, or any image folder)")
    p.add_argument("--json", action="store_true", help="print JSON (one object; keyed by checkpoint when several)")
    p.add_argument("--out", default=None, help="folder for contact sheets and large renders (a sub-folder each)")
    p.add_argument(
        "--strip", default=None, help="PNG: one row of 4 horizon-centred samples per model (at the served truncation)"
    )
    p.add_argument(
        "--psi",
        type=float,
        default=EvalOptions.psi,
        help="truncation psi of every sample (default %(default)s: metrics judge the untruncated distribution)",
    )
    p.add_argument(
        "--psi-local",
        type=float,
        default=EvalOptions.psi_local,
        help="truncation of z_l of every sample (default %(default)s: untruncated)",
    )
    p.add_argument("--patches", type=_int, default=512, help="real and fake patches for SWD")
    p.add_argument(
        "--patch-px",
        type=_int,
        default=None,
        help="SWD patch side for every model (default: the first checkpoint's training patch, e.g. 69 px for the "
        "small teacher)",
    )
    p.add_argument(
        "--scaleinv-images",
        type=_int,
        default=EvalOptions.scaleinv_images,
        help="whole-height renders for the scale-invariant SWD (default %(default)s: as many as --patches, so both "
        "SWDs carry the same sample-size bias)",
    )
    p.add_argument("--seeds", type=_int, default=8, help="world seeds for diversity and the contact sheet")
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--scene-height", type=_int, default=None, help="default: the checkpoint's training value")
    p.set_defaults(handler=_cmd_eval)


def _cmd_distill(args: argparse.Namespace) -> None:
    import torch

    from infinitygan.checkpoint import load_generator
    from infinitygan.distill import DistillConfig, DistillError, distill

    if args.threads:
        torch.set_num_threads(args.threads)
    teacher = load_generator(args.teacher)
    config = DistillConfig(
        student_preset=args.preset, batch=args.batch, cells=args.cells, lr=args.lr, seed=args.seed,
        init_from=args.init_from, structure_warmup=args.structure_warmup,
        adversarial_weight=args.adversarial_weight, lr_steps=tuple(args.lr_step), ema_beta=args.ema_beta,
        half_pixel=args.half_pixel, r1_gamma=args.r1_gamma, d_warmup=args.d_warmup,
        detail_weight=args.detail_weight,
    )  # fmt: skip
    if args.max_steps is None and args.max_minutes is None:
        raise CLIError("give --max-steps or --max-minutes (a run can always be resumed later)")
    try:
        run = distill(
            teacher, Path(args.out), config, max_steps=args.max_steps, max_minutes=args.max_minutes,
            save_every=args.save_every,
        )  # fmt: skip
    except DistillError as exc:
        raise CLIError(str(exc)) from None
    print(f"student at {Path(args.out) / 'student.safetensors'}: step {run.step_count}, {run.seconds / 60:.1f} min")


def _add_distill(sub: argparse._SubParsersAction) -> None:
    from infinitygan.distill import DistillConfig

    p = sub.add_parser(
        "distill",
        help="distil a MobileStyleGAN student from a teacher generator (resumes the run in --out)",
        description="Train a student (depthwise-separable G_S and G_T, the teacher's mapping) to render what the "
        "teacher renders. An existing run in --out is resumed with its own settings; --lr-step may add learning-rate "
        "steps from its current step on.",
    )
    p.add_argument("--teacher", required=True, help="teacher generator checkpoint")
    p.add_argument("--out", required=True, help="run folder: student.safetensors and state/")
    p.add_argument("--preset", default="small-mobile", help="student preset (a new run only)")
    p.add_argument("--max-steps", type=_int, default=None, help="stop at this many steps in total")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this many minutes (this call)")
    p.add_argument("--batch", type=_int, default=4)
    p.add_argument("--cells", type=_int, default=12, help="z_S cells per training window side")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument(
        "--adversarial-weight",
        type=float,
        default=DistillConfig.adversarial_weight,
        help="weight of the non-saturating GAN term against the L1 terms (default %(default)s; 0 turns D off)",
    )
    p.add_argument(
        "--r1-gamma",
        type=float,
        default=DistillConfig.r1_gamma,
        help=f"R1 weight on D's gradient at the teacher's renders, every {DistillConfig.r1_interval} steps "
        "(default %(default)s; 0: none, as runs before it had)",
    )
    p.add_argument(
        "--detail-weight",
        type=float,
        default=DistillConfig.detail_weight,
        help="weight of the sliced Wasserstein loss between the student's and the teacher's 7x7 neighbourhoods of "
        "the two finest Laplacian levels (default %(default)s; 0: off, as runs before it had)",
    )
    p.add_argument(
        "--d-warmup",
        type=_int,
        default=DistillConfig.d_warmup,
        help="first steps (after the structure warmup) in which D alone trains, the student frozen: for a fresh D "
        "beside a warm-started student (default %(default)s)",
    )
    p.add_argument(
        "--structure-warmup",
        type=_int,
        default=DistillConfig.structure_warmup,
        help="first steps in which a separable G_S learns the teacher's z_S alone (default %(default)s)",
    )
    p.add_argument(
        "--lr-step",
        type=_lr_step,
        action="append",
        default=[],
        metavar="STEP:MULT",
        help="from step STEP on, train the student and D at MULT x --lr (repeatable; on resume, STEP must not be "
        "before the run's current step)",
    )
    p.add_argument(
        "--half-pixel",
        choices=("lanczos3", "mean"),
        default=DistillConfig.half_pixel,
        help="how the teacher is resampled onto a student's pixels half a pixel away (default %(default)s; mean: the "
        "2x2 mean of the first runs, which blurs the target)",
    )
    p.add_argument(
        "--ema-beta",
        type=float,
        default=DistillConfig.ema_beta,
        help="the saved student is this moving average of the trained one, per step (default %(default)s; 0: the "
        "trained weights)",
    )
    p.add_argument("--save-every", type=_int, default=200, help="steps between saves")
    p.add_argument(
        "--init-from",
        default=None,
        help="start G_T (and a separable G_S) from this student checkpoint, or G_T, G_S and D from this run folder's "
        "saved state (a new run only; e.g. re-distilling for a retrained teacher, or changing a run's settings)",
    )
    p.add_argument("--threads", type=_int, default=None, help="torch CPU threads")
    p.set_defaults(handler=_cmd_distill)


def _levels(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated numbers, e.g. -1,0,1,2; got {text!r}") from None


def _cmd_sheet(args: argparse.Namespace) -> None:
    from infinitygan.checkpoint import load_generator
    from infinitygan.evaluate import horizon_sheet

    if Path(args.out).suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise CLIError(f"--out must end in .png, .jpg or .jpeg, got {args.out}")
    biomes = _biomes(args)
    model = load_generator(args.checkpoint)
    size = dict(
        seeds=args.seeds, width=args.width, height=args.height, psi=args.psi, psi_local=args.psi_local, seed=args.seed
    )
    if args.blend_partner is None:
        if args.swap_levels is not None:
            raise CLIError("--swap-levels needs --blend-partner")
        sheet = horizon_sheet(model.generator, biomes=biomes, **size)
    else:
        from infinitygan.blend import swap_levels
        from infinitygan.evaluate import swap_sheet

        if biomes is not None:
            raise CLIError("--biomes draws one world per panel; a swap sheet compares plain worlds")
        partner = load_generator(args.blend_partner)  # another architecture: ValueError from blend_generators
        levels = args.swap_levels or [-1.0, *range(swap_levels(model.generator))]
        sheet = swap_sheet(model.generator, partner.generator, levels, **size)
    sheet.save(args.out, quality=90)  # quality applies to JPEG only
    print(f"wrote {args.out}: worlds of {model.model_hash}, {args.width}x{args.height} each")


def _add_sheet(sub: argparse._SubParsersAction) -> None:
    from infinitygan.world import DEFAULT_PSI

    p = sub.add_parser(
        "sheet",
        help="a contact sheet of several worlds, each a region centred on the horizon (judging a model by eye)",
    )
    p.add_argument("checkpoint", help="generator .safetensors file")
    p.add_argument("--out", required=True, help="PNG or JPEG file")
    p.add_argument("--seeds", type=_int, default=8, help="worlds: seeds SEED .. SEED+SEEDS-1")
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--width", type=_int, default=1024, help="pixels per world")
    p.add_argument("--height", type=_int, default=512, help="pixels per world")
    p.add_argument("--psi", type=float, default=DEFAULT_PSI, help=f"truncation (default: the served {DEFAULT_PSI})")
    _add_psi_local(p)
    _add_biome_arguments(p)
    p.add_argument("--blend-partner", default=None, help="a fine-tune: one row per swap level, one column per seed")
    p.add_argument(
        "--swap-levels", type=_levels, default=None, help="comma-separated, e.g. -1,0,1,2 (default: -1 and every level)"
    )
    p.set_defaults(handler=_cmd_sheet)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_render,
    _add_init,
    _add_data,
    _add_train,
    _add_eval,
    _add_sheet,
    _add_distill,
]


def build_parser(extra_subcommands: Sequence[Callable] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infinitygan", description="Endless, reproducible InfinityGAN landscapes.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in [*SUBCOMMANDS, *extra_subcommands]:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None, extra_subcommands: Sequence[Callable] = ()) -> int:
    """Run one subcommand; `extra_subcommands` lets higher layers (the service) add theirs."""
    from infinitygan.checkpoint import CheckpointError
    from infinitygan.world import RegionError

    args = build_parser(extra_subcommands).parse_args(argv)
    try:
        args.handler(args)
    except (CLIError, CheckpointError, RegionError, ValueError, OSError) as exc:
        print(f"infinitygan {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, RegionError | ValueError) else EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

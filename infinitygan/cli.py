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


def _cmd_render(args: argparse.Namespace) -> None:
    from PIL import Image

    from infinitygan.checkpoint import load_generator
    from infinitygan.world import World, WorldSpec, render_region, validate_region

    validate_region(args.x, args.y, args.width, args.height)  # fail before the (slow) model load
    world = World(load_generator(args.checkpoint), WorldSpec(seed=args.seed, psi=args.psi, mix_seed=args.mix_seed))
    pixels = render_region(world, args.x, args.y, args.width, args.height, progress=not args.quiet)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(out, format="PNG")
    if not args.quiet:
        print(f"wrote {out} ({args.width}x{args.height})", file=sys.stderr)


def _add_render(sub: argparse._SubParsersAction) -> None:
    from infinitygan.world import DEFAULT_PSI

    p = sub.add_parser("render", help="render any rectangle of a world to a PNG")
    p.add_argument("--checkpoint", default=None, help="generator .safetensors (default: the shipped model)")
    p.add_argument("--seed", type=_int, required=True, help="world seed, 0 <= S < 2**63")
    p.add_argument("--psi", type=float, default=DEFAULT_PSI, help=f"truncation psi (default {DEFAULT_PSI})")
    p.add_argument("--mix-seed", type=_int, default=None, help="optional style-mixing seed (fine layers)")
    p.add_argument("--x", type=_int, required=True, help="left world pixel (grows right)")
    p.add_argument("--y", type=_int, required=True, help="top world pixel (grows down; row 0 is the horizon)")
    p.add_argument("--width", type=_int, required=True)
    p.add_argument("--height", type=_int, required=True)
    p.add_argument("--out", required=True, help="output PNG path")
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
    from infinitygan.data import DataError, fetch_recipe

    try:
        fetch_recipe(Path(args.out))
    except DataError as exc:
        raise CLIError(str(exc)) from None
    print(f"fetched the recipe's landscape images into {args.out}", file=sys.stderr)


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="training data")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch = data_sub.add_parser("fetch", help="download the recipe's freely licensed landscape photos (Debian)")
    fetch.add_argument("--out", default="data/landscapes", help="destination folder (default data/landscapes)")
    fetch.set_defaults(handler=_cmd_data_fetch)


def _cmd_train(args: argparse.Namespace) -> None:
    import json

    from infinitygan.data import DataError
    from infinitygan.train import STATE_DIR, STATE_JSON, TrainConfig, train

    out = Path(args.out)
    state = out / STATE_DIR / STATE_JSON
    if state.is_file():
        # A resumed run keeps its stored config; only the stopping rule, threads and device may change.
        config = TrainConfig.from_dict(json.loads(state.read_text())["train_config"])
    else:
        config = TrainConfig(
            preset=args.preset,
            patch_cells=args.patch_cells,
            batch=args.batch,
            r1_gamma=args.r1_gamma,
            scene_height=args.scene_height,
            seed=args.seed,
            checkpoint_minutes=args.checkpoint_minutes,
            sample_every=args.sample_every,
        )
    config.max_minutes = args.max_minutes
    config.max_iterations = args.max_iterations
    config.threads = args.threads
    config.device = args.device
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CLIError("--device cuda: no CUDA device is available")
    try:
        train(config, args.data, out, progress=not args.quiet)
    except DataError as exc:
        raise CLIError(str(exc)) from None


def _add_train(sub: argparse._SubParsersAction) -> None:
    from infinitygan.config import PRESETS

    p = sub.add_parser("train", help="train (or resume) a generator on a folder of landscape images")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small")
    p.add_argument("--data", required=True, help="folder of images (e.g. from `infinitygan data fetch`)")
    p.add_argument("--out", required=True, help="run folder; an existing run there is resumed")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this many minutes (this session)")
    p.add_argument("--max-iterations", type=_int, default=None, help="stop at this total iteration count")
    p.add_argument("--batch", type=_int, default=8)
    p.add_argument("--patch-cells", type=_int, default=9, help="z_S cells per training window (9 -> 69 px)")
    p.add_argument("--r1-gamma", type=float, default=1.0)
    p.add_argument("--scene-height", type=_int, default=256, help="images are resized to this many rows")
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--sample-every", type=_int, default=500, help="iterations between sample grids (0: never)")
    p.add_argument("--threads", type=_int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_train)


def _cmd_eval(args: argparse.Namespace) -> None:
    import json

    from infinitygan.checkpoint import load_generator
    from infinitygan.evaluate import EvalOptions, evaluate

    generator = load_generator(args.checkpoint)
    options = EvalOptions(
        patches=args.patches,
        scaleinv_images=args.scaleinv_images,
        seeds=args.seeds,
        seed=args.seed,
        scene_height=args.scene_height,
    )
    result = evaluate(generator, Path(args.data), options, out_dir=Path(args.out) if args.out else None)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in sorted(result.items()):
            print(f"{key}: {value}")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="SWD, scale-invariant SWD, seam score and diversity of a generator")
    p.add_argument("checkpoint", help="generator .safetensors")
    p.add_argument("--data", required=True, help="folder of real images")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", default=None, help="folder for the contact sheet and the large render")
    p.add_argument("--patches", type=_int, default=512, help="real and fake patches for SWD")
    p.add_argument("--scaleinv-images", type=_int, default=64, help="4x renders for the scale-invariant SWD")
    p.add_argument("--seeds", type=_int, default=8, help="world seeds for diversity and the contact sheet")
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--scene-height", type=_int, default=None, help="default: the checkpoint's training value")
    p.set_defaults(handler=_cmd_eval)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_render,
    _add_init,
    _add_data,
    _add_train,
    _add_eval,
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

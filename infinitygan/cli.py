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


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_render, _add_init]


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

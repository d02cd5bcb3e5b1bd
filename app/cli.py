"""The `infinitygan` console script: the model library's subcommands plus the service's (serve, seed).

It lives in `app` so the model library never imports the server (layers: app -> tiles -> infinitygan).
Service imports are lazy so `infinitygan render` does not pay for FastAPI and Redis.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from infinitygan import cli as model_cli


def _cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    if args.workers > 1 and not os.environ.get("REDIS_URL"):
        # Each worker would start its own embedded Redis: worlds created through one would be unknown to the others.
        raise model_cli.CLIError("--workers > 1 needs a shared REDIS_URL")
    if args.model:
        os.environ["INFINITYGAN_MODEL"] = args.model  # workers are separate processes: pass settings by environment
    uvicorn.run(
        "app.main:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        proxy_headers=False,  # the app applies X-Forwarded-* itself, from INFINITYGAN_FORWARDED_ALLOW_IPS
        # On SIGTERM uvicorn stops accepting, finishes requests in flight, then runs the lifespan shutdown (which
        # waits for the render threads). Bounded so the process exits before an orchestrator's SIGKILL (Docker: 10 s
        # by default; docker-compose.yml gives 30 s).
        timeout_graceful_shutdown=args.graceful_timeout,
    )


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the tile server (settings from the environment: REDIS_URL, INFINITYGAN_MODEL, INFINITYGAN_*)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (more than 1 needs REDIS_URL)")
    p.add_argument("--model", default=None, help="generator checkpoint; overrides INFINITYGAN_MODEL")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument(
        "--graceful-timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="on SIGTERM, wait this long for requests in flight before cancelling them (default 20)",
    )
    p.set_defaults(handler=_cmd_serve)


def _zoom_range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"zoom must be Z or Z0-Z1, got {text!r}") from None


def _cmd_seed(args: argparse.Namespace) -> None:
    import asyncio

    from app.seeding import seed_tiles
    from app.settings import Settings
    from tiles.embedded_redis import ANNOUNCE_FILE
    from tiles.errors import TileError

    settings = Settings()
    if args.model:
        settings = settings.model_copy(update={"model": args.model})
    x0, y0, x1, y1 = args.bbox
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"--bbox [{x0}, {x1}) x [{y0}, {y1}) is empty: X1 must exceed X0 and Y1 must exceed Y0")
    settings = _shared_redis(settings)
    if settings.redis_url is None:
        where = settings.embedded_redis_data_dir
        raise model_cli.CLIError(
            "seeding fills a running server's cache: start it first (bash scripts/serve.sh, from this folder: "
            f"its Redis announces itself in {where}/{ANNOUNCE_FILE}) or set REDIS_URL to its Redis"
        )
    try:
        report = asyncio.run(seed_tiles(settings, args.world, args.zoom, (x0, y0, x1, y1), progress=not args.quiet))
    except TileError as exc:
        raise model_cli.CLIError(str(exc)) from None
    print(
        f"seeded {report.tiles} tiles into {settings.redis_url}: {report.rendered} rendered, "
        f"{report.cached} already cached",
        file=sys.stderr,
    )


def _add_seed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "seed",
        help="pre-render tiles of an area into a running server's cache (REDIS_URL, or the default server's "
        "embedded Redis found through var/redis/redis.url)",
    )
    p.add_argument("--world", default="default", help="world id, or 'default' for the server's default world")
    p.add_argument("--zoom", type=_zoom_range, required=True, help="zoom level Z or range Z0-Z1")
    p.add_argument(
        "--bbox",
        type=model_cli._int,
        nargs=4,
        required=True,
        metavar=("X0", "Y0", "X1", "Y1"),
        help="area in native world pixels, [X0, X1) x [Y0, Y1)",
    )
    p.add_argument("--model", default=None, help="generator checkpoint; overrides INFINITYGAN_MODEL")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_seed)


def _shared_redis(settings):
    """settings with redis_url set to a running server's Redis (REDIS_URL, or the default server's embedded Redis
    announced in its data folder), or unchanged (None) when there is none."""
    from tiles.embedded_redis import running_server_url

    if settings.redis_url is None and (url := running_server_url(settings.embedded_redis_data_dir)) is not None:
        settings = settings.model_copy(update={"redis_url": url})
    return settings


def _cmd_export(args: argparse.Namespace) -> None:
    import asyncio
    from pathlib import Path

    from app.exporting import export_area, export_format, sidecar_path
    from app.settings import Settings
    from tiles.errors import TileError
    from tiles.export_store import SidecarError

    out = Path(args.out)
    fmt = export_format(out, args.format)
    settings = Settings()
    if args.model:
        settings = settings.model_copy(update={"model": args.model})
    settings = _shared_redis(settings)
    x0, y0, x1, y1 = args.bbox
    try:
        report = asyncio.run(
            export_area(settings, args.world, (x0, y0, x1, y1), args.zoom, out, fmt, progress=not args.quiet)
        )
    except (TileError, SidecarError) as exc:
        raise model_cli.CLIError(str(exc)) from None
    except OSError as exc:
        raise model_cli.CLIError(f"cannot write {out}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        sidecar = sidecar_path(out)
        if sidecar.exists():
            print(f"finished tiles are kept in {sidecar}: run the same command again to resume", file=sys.stderr)
        raise
    done = report.progress
    low, high = report.layout.archive_zooms
    shared = f"from the shared cache at {report.shared_cache}" if report.shared_cache else "shared (no server's Redis)"
    print(
        f"exported {done.total} tiles of world {report.world.id} to {out} ({fmt}, archive zooms {low}-{high}, "
        f"zoom offset {report.layout.zoom_offset}): {done.rendered} rendered, {done.reused} {shared}, "
        f"{done.resumed} resumed from an interrupted run",
        file=sys.stderr,
    )


def _add_export(sub: argparse._SubParsersAction) -> None:
    from tiles.export_layout import MAX_EXPORT_TILES

    p = sub.add_parser(
        "export",
        help="write every tile of an area and zoom range as a PMTiles or MBTiles archive, or a static offline site",
        description="Export the tiles of an area exactly as the service serves them (GET /worlds/{id}/tiles/...). "
        "Tiles come from a running server's cache when one is reachable (REDIS_URL, or the default server's "
        "embedded Redis), and are rendered here otherwise. Finished tiles are kept in OUT.partial.sqlite until the "
        "archive is written, so an interrupted export run again renders only what is missing. Archive tile "
        "(z, x, y) = world tile (z - zoom_offset, x + dx, y + dy): the archive's metadata records zoom_offset and "
        "each zoom's offsets (see the README's 'Exporting').",
    )
    p.add_argument(
        "world",
        nargs="?",
        default="default",
        help="world id (16 hex digits, as in /worlds/{id}), or 'default' (INFINITYGAN_DEFAULT_SEED; the only world "
        "known without a running server)",
    )
    p.add_argument(
        "--bbox",
        type=model_cli._int,
        nargs=4,
        required=True,
        metavar=("X0", "Y0", "X1", "Y1"),
        help="area in native world pixels, [X0, X1) x [Y0, Y1), as for seed; every tile touching it is exported",
    )
    p.add_argument(
        "--zoom", type=_zoom_range, required=True, help="zoom level Z or range Z0-Z1 (Z0 <= Z1) of the service's grid"
    )
    p.add_argument(
        "--format",
        choices=["pmtiles", "mbtiles", "site"],
        default=None,
        help="pmtiles (PMTiles v3), mbtiles (MBTiles 1.3) or site (a folder: index.html, Leaflet, pmtiles.js and the "
        ".pmtiles; serve it with any static file server); default: from --out's suffix",
    )
    p.add_argument("--out", required=True, help="the archive file, or the site's folder")
    p.add_argument("--model", default=None, help="generator checkpoint; overrides INFINITYGAN_MODEL")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.epilog = (
        f"At most {MAX_EXPORT_TILES:,} tiles (all zooms together) per export. Exporting the same area twice gives "
        "byte-identical files."
    )
    p.set_defaults(handler=_cmd_export)


def _cmd_worker(args: argparse.Namespace) -> None:
    import logging

    from app.settings import Settings
    from app.worker import main_loop

    settings = Settings()
    if args.model:
        settings = settings.model_copy(update={"model": args.model})
    if args.concurrency:
        settings = settings.model_copy(update={"outpaint_concurrency": args.concurrency})
    if settings.redis_url is None:
        raise model_cli.CLIError("a worker takes jobs from the server's queue: set REDIS_URL to the server's Redis")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    done = main_loop(settings)
    print(f"worker stopped after {done} jobs", file=sys.stderr)


def _add_worker(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker",
        help="run outpainting jobs from the shared queue (needs REDIS_URL; run the server with "
        "INFINITYGAN_OUTPAINT_WORKER=false); stops cleanly on SIGINT/SIGTERM, handing a running job back",
    )
    p.add_argument("--model", default=None, help="generator checkpoint; overrides INFINITYGAN_MODEL")
    p.add_argument(
        "--concurrency", type=int, default=None, help="jobs at once; overrides INFINITYGAN_OUTPAINT_CONCURRENCY"
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(handler=_cmd_worker)


SERVICE_SUBCOMMANDS: list = [_add_serve, _add_seed, _add_export, _add_worker]


def main(argv: Sequence[str] | None = None) -> int:
    return model_cli.main(argv, extra_subcommands=SERVICE_SUBCOMMANDS)


if __name__ == "__main__":
    sys.exit(main())

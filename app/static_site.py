"""The static site of `infinitygan export --format site`: a folder any static file server can serve, that shows the
exported world offline in Leaflet.

    OUT/index.html          the page (names the archive; marked <meta name="generator" content="infinitygan export">)
    OUT/viewer.js           Leaflet GridLayer reading tiles from the archive, with the archive's addressing
    OUT/style.css
    OUT/<world id>.pmtiles  the export itself (tiles/archives.py)
    OUT/leaflet/            Leaflet from the xstatic-leaflet package, the copy the service serves at /vendor/leaflet
    OUT/pmtiles/            the pmtiles npm package's browser build and its licences (app/site_assets/vendor/pmtiles)

The viewer reads the archive with Range requests where the server honours them, and otherwise (Python 3.11's
`python -m http.server` ignores Range and sends the whole file) reads the whole archive once: see viewer.js.
The folder is built next to OUT under a temporary name and then moved into place; an existing OUT is replaced only
if it is empty or an earlier export site (never another folder).
"""

from __future__ import annotations

import html
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from tiles.archives import write_pmtiles
from tiles.export_layout import ExportLayout
from tiles.worlds import WorldRecord

SITE_ASSETS = Path(__file__).resolve().parent / "site_assets"
GENERATOR_MARK = '<meta name="generator" content="infinitygan export">'
LEAFLET_FILES = ("leaflet.js", "leaflet.css")
PMTILES_FILES = ("pmtiles.js", "LICENSE", "LICENSE.fflate", "README.md")


def leaflet_dir() -> Path:
    import xstatic.pkg.leaflet

    return Path(xstatic.pkg.leaflet.BASE_DIR)


def is_site(folder: Path) -> bool:
    """Whether folder holds an earlier export site (its index.html carries GENERATOR_MARK)."""
    try:
        return GENERATOR_MARK in (folder / "index.html").read_text(errors="replace")
    except OSError:
        return False


def check_site_target(out: Path) -> None:
    """OSError (with a message for the user) unless out is free, an empty folder or an earlier export site."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; a site is a folder: name a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not is_site(out):
        raise FileExistsError(f"--out {out} is a folder with other files in it: name a new or empty folder")


def write_site(out: Path, tiles: Iterable[tuple[int, bytes]], layout: ExportLayout, world: WorldRecord) -> None:
    """Build the site for tiles (tile id, PNG, ascending tile id) of layout at out (see the module docstring)."""
    check_site_target(out)
    staging = out.with_name(f".{out.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        archive_name = f"{world.id}.pmtiles"
        write_pmtiles(staging / archive_name, tiles, layout, world)
        (staging / "leaflet" / "images").mkdir(parents=True)
        for name in LEAFLET_FILES:
            shutil.copyfile(leaflet_dir() / name, staging / "leaflet" / name)
        for image in sorted((leaflet_dir() / "images").iterdir()):
            shutil.copyfile(image, staging / "leaflet" / "images" / image.name)
        (staging / "pmtiles").mkdir()
        for name in PMTILES_FILES:
            shutil.copyfile(SITE_ASSETS / "vendor" / "pmtiles" / name, staging / "pmtiles" / name)
        for name in ("viewer.js", "style.css"):
            shutil.copyfile(SITE_ASSETS / name, staging / name)
        page = (SITE_ASSETS / "index.html").read_text()
        title = f"InfinityGAN world {world.id} (seed {world.seed}, psi {world.psi})"
        page = page.replace("{{TITLE}}", html.escape(title)).replace("{{ARCHIVE}}", html.escape(archive_name))
        (staging / "index.html").write_text(page)
        _replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace_folder(new: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.{os.getpid()}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        new.rename(out)
        shutil.rmtree(old)
    else:
        new.rename(out)

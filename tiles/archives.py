"""Writing an export's tiles as a PMTiles v3 archive (the `pmtiles` package's writer) or an MBTiles 1.3 database
(sqlite3), streamed and byte-for-byte reproducible.

Both writers take the tiles as an iterable of (archive tile id, PNG bytes) in ascending tile id (PMTiles' Hilbert
order, zoom by zoom: `pmtiles.tile.zxy_to_tileid`), never a list: the PNGs stream from the caller to the file, and
memory does not grow with the area's pixels. (The PMTiles writer keeps one small directory entry per tile until it
writes the directory, and buffers the tile bytes in a temporary file.)

Reproducible: the same tiles and layout give the same bytes. Metadata is JSON with sorted keys and no timestamps
(the PMTiles metadata is gzipped with mtime 0 by the library); the MBTiles database is built in a fresh file with a
fixed page size, fixed statements in a fixed order, tiles inserted in tile id order, the index built after them,
then VACUUMed, with no journal or WAL left behind. Each archive is written under a temporary name in the target's
folder and renamed over it at the end, so an interrupted write never leaves a half archive under the real name.

MBTiles follows the 1.3 spec: `metadata` (name, format=png, bounds, center, minzoom, maxzoom, type, version,
description, json) and `tiles` with TMS rows (tile_row = 2**z - 1 - y), application_id 0x4d504258 ("MPBX").
The `json` row and the PMTiles metadata's `infinitygan` key hold ExportLayout.describe: the world and the addressing
that maps archive tiles back to world tiles.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from pmtiles.tile import Compression, TileType, tileid_to_zxy
from pmtiles.writer import Writer

from tiles.export_layout import ExportLayout
from tiles.worlds import WorldRecord

MBTILES_APPLICATION_ID = 0x4D504258  # "MPBX", MBTiles 1.3
SQLITE_PAGE_SIZE = 4096


def _canonical(value: object) -> object:
    """A JSON value with every object's keys sorted (so the library's json.dumps writes a fixed order)."""
    return json.loads(json.dumps(value, sort_keys=True))


def archive_metadata(layout: ExportLayout, world: WorldRecord) -> dict:
    """The metadata both formats carry: TileJSON-like fields plus `infinitygan` (ExportLayout.describe)."""
    low, high = layout.archive_zooms
    description = f"endless landscape, seed {world.seed}, psi {world.psi}, psi_local {world.psi_local}"
    if world.anchor is not None:
        description += ", continuing an uploaded photo"
    return {
        "name": f"InfinityGAN world {world.id}",
        "description": description,
        "version": f"{world.model_hash}.{world.id}",
        "type": "baselayer",
        "format": "png",
        "minzoom": low,
        "maxzoom": high,
        "bounds": list(layout.lonlat_bounds()),
        "infinitygan": layout.describe(world),
    }


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


def _commit_file(temporary: Path, path: Path) -> None:
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    temporary.replace(path)


def write_pmtiles(path: Path, tiles: Iterable[tuple[int, bytes]], layout: ExportLayout, world: WorldRecord) -> int:
    """Write tiles (tile id, PNG) in ascending tile id as a PMTiles v3 archive at path; returns the tile count."""
    metadata = archive_metadata(layout, world)
    west, south, east, north = metadata["bounds"]
    center_lon, center_lat = round((west + east) / 2, 7), round((south + north) / 2, 7)
    header = {
        "tile_type": TileType.PNG,
        "tile_compression": Compression.NONE,  # PNG is compressed already
        "min_lon_e7": round(west * 1e7),
        "min_lat_e7": round(south * 1e7),
        "max_lon_e7": round(east * 1e7),
        "max_lat_e7": round(north * 1e7),
        "center_zoom": layout.center_zoom(),
        "center_lon_e7": round(center_lon * 1e7),
        "center_lat_e7": round(center_lat * 1e7),
    }
    temporary = _temporary(path)
    count = 0
    try:
        with open(temporary, "wb") as handle:
            writer = Writer(handle)
            for tile_id, png in tiles:
                writer.write_tile(tile_id, png)
                count += 1
            if count == 0:
                raise ValueError("an archive needs at least one tile")
            writer.finalize(header, _canonical(metadata))
        _commit_file(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return count


def mbtiles_metadata_rows(layout: ExportLayout, world: WorldRecord) -> list[tuple[str, str]]:
    """The `metadata` table's rows, in the order they are inserted (MBTiles 1.3: all values are text)."""
    metadata = archive_metadata(layout, world)
    west, south, east, north = metadata["bounds"]
    return [
        ("name", metadata["name"]),
        ("format", "png"),
        ("bounds", f"{west:.7f},{south:.7f},{east:.7f},{north:.7f}"),
        ("center", f"{(west + east) / 2:.7f},{(south + north) / 2:.7f},{layout.center_zoom()}"),
        ("minzoom", str(metadata["minzoom"])),
        ("maxzoom", str(metadata["maxzoom"])),
        ("type", metadata["type"]),
        ("version", metadata["version"]),
        ("description", metadata["description"]),
        ("json", json.dumps({"infinitygan": metadata["infinitygan"]}, sort_keys=True)),
    ]


def write_mbtiles(path: Path, tiles: Iterable[tuple[int, bytes]], layout: ExportLayout, world: WorldRecord) -> int:
    """Write tiles (tile id, PNG) in ascending tile id as an MBTiles 1.3 database at path; returns the tile count."""
    temporary = _temporary(path)
    _remove_sqlite(temporary)  # a fresh file: the same statements then give the same bytes
    count = 0
    try:
        db = sqlite3.connect(temporary, isolation_level=None)
        try:
            db.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
            db.execute("PRAGMA journal_mode = DELETE")  # no WAL: the file is complete on its own after each commit
            db.execute(f"PRAGMA application_id = {MBTILES_APPLICATION_ID}")
            db.execute("BEGIN")
            db.execute("CREATE TABLE metadata (name text, value text)")
            db.execute("CREATE TABLE tiles (zoom_level integer, tile_column integer, tile_row integer, tile_data blob)")
            db.executemany("INSERT INTO metadata (name, value) VALUES (?, ?)", mbtiles_metadata_rows(layout, world))
            for tile_id, png in tiles:
                z, x, y = tileid_to_zxy(tile_id)
                db.execute(
                    "INSERT INTO tiles (zoom_level, tile_column, tile_row, tile_data) VALUES (?, ?, ?, ?)",
                    (z, x, (1 << z) - 1 - y, png),  # TMS: rows count up from the bottom
                )
                count += 1
            if count == 0:
                raise ValueError("an archive needs at least one tile")
            db.execute("CREATE UNIQUE INDEX tile_index ON tiles (zoom_level, tile_column, tile_row)")
            db.execute("CREATE UNIQUE INDEX name ON metadata (name)")
            db.execute("COMMIT")
            db.execute("VACUUM")
        finally:
            db.close()
        _commit_file(temporary, path)
    finally:
        _remove_sqlite(temporary)
    return count

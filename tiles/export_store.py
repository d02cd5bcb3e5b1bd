"""The sidecar of an export in progress: every finished tile in a sqlite file next to the output, so an interrupted
export that is started again renders nothing it already finished, and the archive is written at the end by
streaming the tiles out of it in tile id order (memory stays constant in the area's size).

Two tables: `tiles` holds every PNG the export produced, under its tile cache key (`tiles.cache.tile_key`: model,
world, zoom, x, y, so a sidecar can never hand one world's tile to another), including tiles outside the area that
zoom-out and zoom-in tiles were made from; `archive` maps each finished tile of the area to its archive tile id (it
is rebuilt at the start of every run, so a run with another area or zoom range reuses the tiles and nothing else).
Each tile is committed as soon as it is finished (WAL, synchronous=NORMAL: a killed process loses nothing committed).

`StoreCache` puts the sidecar in front of the shared Redis tile cache (or of nothing, when no server's Redis is
reachable) behind TileCache's interface, so the export produces every tile through TileService itself: the bytes
are the service's bytes, and zoom-out tiles are built from children already in the sidecar.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from tiles.cache import LOCAL_ONLY, TileCache
from tiles.redis_link import RedisUnavailable

T = TypeVar("T")
SCHEMA_VERSION = 1


class SidecarError(Exception):
    """The sidecar file exists but is not an export sidecar this version can resume."""


class TileStore:
    """A sidecar sqlite file of finished tiles (see the module docstring). One thread uses it: the event loop's."""

    def __init__(self, path: Path) -> None:
        """Opens (or creates) the sidecar at path; OSError if it cannot be written, SidecarError if it is not one."""
        self.path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._db.execute("CREATE TABLE IF NOT EXISTS tiles (key TEXT PRIMARY KEY, png BLOB NOT NULL)")
                self._db.execute("CREATE TABLE IF NOT EXISTS archive (tile_id INTEGER PRIMARY KEY, key TEXT NOT NULL)")
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise SidecarError(f"{path} is a partial export of another version: delete it to start again")
        except sqlite3.OperationalError as exc:  # unable to open database file, read-only folder, locked, ...
            raise OSError(f"cannot write {path}: {exc}") from None
        except sqlite3.DatabaseError as exc:  # file is not a database
            raise SidecarError(f"{path} is not a partial export ({exc}): delete it to start again") from None

    def close(self) -> None:
        self._db.close()

    def remove(self) -> None:
        """Close and delete the sidecar (after the archive is written)."""
        self.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM tiles").fetchone()[0]

    def get(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT png FROM tiles WHERE key = ?", (key,)).fetchone()
        return row[0] if row is not None else None

    def has(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM tiles WHERE key = ?", (key,)).fetchone() is not None

    def put(self, key: str, png: bytes) -> None:
        """Keep a tile (committed at once); a tile already kept stays as it is (tiles never change)."""
        self._db.execute("INSERT OR IGNORE INTO tiles (key, png) VALUES (?, ?)", (key, png))

    def start_archive(self) -> None:
        """Forget the previous run's area (its tiles stay): this run lists its own with `finish`."""
        self._db.execute("DELETE FROM archive")

    def finish(self, tile_id: int, key: str, png: bytes | None = None) -> None:
        """Record a tile of the area as done under its archive tile id (with its PNG, unless already kept)."""
        self._db.execute("BEGIN")
        if png is not None:
            self._db.execute("INSERT OR IGNORE INTO tiles (key, png) VALUES (?, ?)", (key, png))
        self._db.execute("INSERT OR REPLACE INTO archive (tile_id, key) VALUES (?, ?)", (tile_id, key))
        self._db.execute("COMMIT")

    def finished(self) -> int:
        """Tiles of this run's area done so far."""
        return self._db.execute("SELECT count(*) FROM archive").fetchone()[0]

    def archive_tiles(self) -> Iterator[tuple[int, bytes]]:
        """(tile id, PNG) of the area in ascending tile id, streamed from disk."""
        query = "SELECT archive.tile_id, tiles.png FROM archive JOIN tiles ON tiles.key = archive.key ORDER BY 1"
        yield from self._db.execute(query)


class OfflineLink:
    """RedisLink's face when no shared Redis is used: always 'up' (nothing is degraded), every command refused."""

    up = True
    last_error = None

    async def run(self, command: Callable[..., Awaitable[T]]) -> T:
        raise RedisUnavailable("exporting without a shared Redis")


class StoreCache:
    """TileCache's interface for TileService: the sidecar first, then the shared cache (if any). New tiles go to
    both, so a running server's cache also gets what the export rendered, as with `infinitygan seed`."""

    def __init__(self, store: TileStore, shared: TileCache | None) -> None:
        self.store = store
        self.shared = shared
        self.link = shared.link if shared is not None else OfflineLink()

    async def get(self, key: str) -> bytes | None:
        png = self.store.get(key)
        if png is None and self.shared is not None:
            png = await self.shared.get(key)
        return png

    async def put(self, key: str, png: bytes) -> bool:
        self.store.put(key, png)
        if self.shared is not None:
            await self.shared.put(key, png)
        return True

    async def acquire_lock(self, key: str, ttl_ms: int) -> str | None:
        return await self.shared.acquire_lock(key, ttl_ms) if self.shared is not None else LOCAL_ONLY

    async def release_lock(self, key: str, token: str) -> None:
        if self.shared is not None:
            await self.shared.release_lock(key, token)

    async def renew_lock(self, key: str, token: str, ttl_ms: int) -> bool:
        return await self.shared.renew_lock(key, token, ttl_ms) if self.shared is not None else True

    async def lock_held(self, key: str) -> bool:
        return await self.shared.lock_held(key) if self.shared is not None else False

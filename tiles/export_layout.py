"""Which tiles an export holds, and where they sit in an archive: world tiles <-> archive tiles.

The world is endless: tile x and y are any integers (negative included, up to 2**40 px / tile size), while PMTiles
and MBTiles address tiles as 0 <= x, y < 2**z. An export maps the one onto the other with a single translation and a
single zoom shift for the whole archive, so the archive is a proper pyramid again (the children of archive tile
(z, x, y) are archive tiles (z + 1, 2x..2x+1, 2y..2y+1), exactly as in the world):

    archive z = world z + zoom_offset
    archive x = world x - origin_x / tile_px(world z)        archive y = world y - origin_y / tile_px(world z)

    world z = archive z - zoom_offset
    world x = archive x + origin_x / tile_px(world z)        world y = archive y + origin_y / tile_px(world z)

where tile_px(z) is the native world pixels one tile spans at zoom z (256 at the native zoom, twice that one level
below, half of it one level above; TileGrid.tile_native_px) and origin = (origin_x, origin_y) is the top-left native
world pixel of the area's top-left tile at its coarsest exported zoom. origin is a multiple of the tile span of every
exported zoom, so every offset is an integer, and the archive's tile (z, 0, 0) has world pixel origin as its
top-left corner at every zoom. zoom_offset is the smallest k >= 0 such that 2**(min zoom + k) tiles span the area at
its coarsest zoom: 0 (archive zooms are the service's zooms) whenever the area fits, which it does up to
2**min_zoom tiles across at the coarsest zoom (4 zoom-2 tiles = 8192 native px with the default grid).

Both numbers, the per-zoom tile offsets and ranges, and the world's description go into the archive's metadata
(`describe`), so any reader can map archive tiles back to world tiles; the static site's viewer does exactly that.

The area is a bbox in native world pixels [x0, x1) x [y0, y1), as `infinitygan seed --bbox` takes it; an export
holds every tile of each zoom that touches it, like `seed`. Bad input raises AreaError (a ValueError) with a message
for the user: an empty or reversed bbox, one past the world limit, a reversed zoom range or one outside the grid, or
more than MAX_EXPORT_TILES tiles.

The lon/lat bounds in the metadata are not geography: the world is flat (Leaflet's L.CRS.Simple, y down). They place
the archive's tile space on the Web Mercator tile grid, so generic PMTiles/MBTiles viewers zoom to the right tiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from infinitygan.world import COORD_LIMIT
from tiles.geometry import TILE_SIZE, TileAddress, TileGrid
from tiles.worlds import WorldRecord

# 100,000 tiles: ~75,000 native renders at zooms 2-5 (a 274x274-tile square, 70k x 70k px), hours of CPU with the
# shipped model and a few GB of PNGs. Larger areas are refused before anything is rendered.
MAX_EXPORT_TILES = 100_000
PMTILES_MAX_ZOOM = 31  # tile ids are 64-bit: PMTiles has no zoom above 31
MERCATOR_MAX_LAT = 85.0511287798066
CRS_NOTE = (
    "flat, non-geographic: Leaflet L.CRS.Simple; x grows right, y grows down, world pixel row 0 is the horizon; at the "
    "native zoom tile (x, y) covers world pixels [256x, 256x + 256) x [256y, 256y + 256). The lon/lat bounds only "
    "place the archive's tile space on the Web Mercator grid for generic viewers."
)


class AreaError(ValueError):
    """An export area or zoom range that cannot be exported (the message says why, for the user)."""


@dataclass(frozen=True)
class TileRange:
    """Inclusive world tile index ranges of one zoom level."""

    z: int
    x0: int
    x1: int
    y0: int
    y1: int

    @property
    def count(self) -> int:
        return (self.x1 - self.x0 + 1) * (self.y1 - self.y0 + 1)


@dataclass(frozen=True)
class ExportLayout:
    """An export: area `bbox` = (x0, y0, x1, y1) in native world pixels, world zooms `zooms` = (low, high) inclusive,
    on `grid`. Build it with `ExportLayout.plan`, which validates."""

    grid: TileGrid
    bbox: tuple[int, int, int, int]
    zooms: tuple[int, int]

    @classmethod
    def plan(cls, grid: TileGrid, bbox: tuple[int, int, int, int], zooms: tuple[int, int]) -> ExportLayout:
        """A validated layout; AreaError for an empty or reversed bbox, one reaching past +-2**40 px, a reversed zoom
        range, a zoom the grid does not serve, or more than MAX_EXPORT_TILES tiles."""
        x0, y0, x1, y1 = bbox
        if x1 <= x0 or y1 <= y0:
            raise AreaError(f"the bbox [{x0}, {x1}) x [{y0}, {y1}) is empty: X1 must exceed X0 and Y1 must exceed Y0")
        if min(x0, y0) < -COORD_LIMIT or max(x1, y1) > COORD_LIMIT:
            raise AreaError(f"the bbox [{x0}, {x1}) x [{y0}, {y1}) reaches past the world limit of +-2**40 pixels")
        low, high = zooms
        if low > high:
            raise AreaError(f"the zoom range {low}-{high} is reversed: write it low-high, e.g. {high}-{low}")
        if low < grid.min_zoom or high > grid.max_zoom:
            raise AreaError(
                f"zoom {low}-{high} is outside the zooms the service serves, {grid.min_zoom}-{grid.max_zoom} "
                f"(native {grid.native_zoom})"
            )
        layout = cls(grid, (x0, y0, x1, y1), (low, high))
        if layout.total > MAX_EXPORT_TILES:
            raise AreaError(
                f"{layout.total:,} tiles (zooms {low}-{high} over {x1 - x0}x{y1 - y0} px) is more than the "
                f"{MAX_EXPORT_TILES:,} tiles one export may hold: export a smaller area or fewer zoom levels"
            )
        if high + layout.zoom_offset > PMTILES_MAX_ZOOM:
            raise AreaError(f"the area is too wide for an archive at zoom {high} (archive zoom past 31)")
        return layout

    # which tiles

    def tile_range(self, z: int) -> TileRange:
        """World tiles of zoom z touching the bbox (every tile of the export at that zoom)."""
        size = self.grid.tile_native_px(z)
        x0, y0, x1, y1 = self.bbox
        return TileRange(z, x0 // size, (x1 - 1) // size, y0 // size, (y1 - 1) // size)

    @property
    def total(self) -> int:
        return sum(self.tile_range(z).count for z in range(self.zooms[0], self.zooms[1] + 1))

    def production_order(self) -> list[int]:
        """Zoom levels in the order to produce them: native first, then each level below it from the nearest (its
        children are then ready), then the levels above (their native neighbourhoods are then ready)."""
        low, high = self.zooms
        native = self.grid.native_zoom
        below = [z for z in range(high, low - 1, -1) if z <= native]
        return below + [z for z in range(low, high + 1) if z > native]

    def tiles(self, z: int) -> Iterator[TileAddress]:
        """World tiles of zoom z in the export, row by row (generated: nothing is held)."""
        r = self.tile_range(z)
        for y in range(r.y0, r.y1 + 1):
            for x in range(r.x0, r.x1 + 1):
                yield TileAddress(z, x, y)

    # addressing

    @property
    def origin(self) -> tuple[int, int]:
        """Native world pixel at the top-left corner of archive tile (z, 0, 0), for every archive zoom z."""
        coarsest = self.tile_range(self.zooms[0])
        size = self.grid.tile_native_px(self.zooms[0])
        return coarsest.x0 * size, coarsest.y0 * size

    @property
    def zoom_offset(self) -> int:
        """archive zoom - world zoom: the smallest k >= 0 that leaves room for the area at its coarsest zoom."""
        coarsest = self.tile_range(self.zooms[0])
        across = max(coarsest.x1 - coarsest.x0 + 1, coarsest.y1 - coarsest.y0 + 1)
        return max(0, (across - 1).bit_length() - self.zooms[0])

    def tile_offset(self, z: int) -> tuple[int, int]:
        """(dx, dy) at world zoom z: archive x = world x - dx, archive y = world y - dy."""
        size = self.grid.tile_native_px(z)
        ox, oy = self.origin
        return ox // size, oy // size

    def to_archive(self, tile: TileAddress) -> tuple[int, int, int]:
        """Archive (z, x, y) of a world tile of the export; 0 <= x, y < 2**z."""
        dx, dy = self.tile_offset(tile.z)
        return tile.z + self.zoom_offset, tile.x - dx, tile.y - dy

    def to_world(self, z: int, x: int, y: int) -> TileAddress:
        """The world tile at archive (z, x, y) (the inverse of to_archive)."""
        world_z = z - self.zoom_offset
        dx, dy = self.tile_offset(world_z)
        return TileAddress(world_z, x + dx, y + dy)

    @property
    def archive_zooms(self) -> tuple[int, int]:
        return self.zooms[0] + self.zoom_offset, self.zooms[1] + self.zoom_offset

    # description

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the bbox placed on the Web Mercator grid by the archive addressing (7
        decimals, as PMTiles stores them). Not geography: see CRS_NOTE."""
        world_px = TILE_SIZE << (self.grid.native_zoom + self.zoom_offset)  # archive pixels across, at native zoom
        ox, oy = self.origin
        x0, y0, x1, y1 = self.bbox

        def lon(px: int) -> float:
            return round((px - ox) / world_px * 360.0 - 180.0, 7)

        def lat(px: int) -> float:
            v = (px - oy) / world_px  # fraction of the Mercator square from its top
            degrees = math.degrees(math.atan(math.sinh(math.pi * (1.0 - 2.0 * v))))
            return round(max(-MERCATOR_MAX_LAT, min(MERCATOR_MAX_LAT, degrees)), 7)

        return lon(x0), lat(y1), lon(x1), lat(y0)

    def center_zoom(self) -> int:
        """Archive zoom a viewer opens at: the native zoom if exported, else the exported zoom nearest to it."""
        return min(max(self.grid.native_zoom, self.zooms[0]), self.zooms[1]) + self.zoom_offset

    def describe(self, world: WorldRecord) -> dict:
        """The world and the addressing, as stored in the archives' metadata (JSON-ready; keys sorted when written).

        `addressing.tiles` lists, per world zoom, the exported world tile ranges (inclusive) and the tile offset
        (archive x = world x - offset[0], archive y = world y - offset[1])."""
        world_info = {
            "id": world.id,
            "model_hash": world.model_hash,
            "seed": world.seed,
            "psi": world.psi,
            "psi_local": world.psi_local,
        }
        if world.anchor is not None:
            world_info["anchor"] = world.anchor
            world_info["footprint"] = list(world.footprint) if world.footprint is not None else None
        if world.biomes is not None:
            world_info["biomes"] = world.biomes.describe()
        per_zoom = {}
        for z in range(self.zooms[0], self.zooms[1] + 1):
            r = self.tile_range(z)
            per_zoom[str(z)] = {
                "archive_zoom": z + self.zoom_offset,
                "offset": list(self.tile_offset(z)),
                "x": [r.x0, r.x1],
                "y": [r.y0, r.y1],
                "count": r.count,
            }
        return {
            "world": world_info,
            "crs": "simple",
            "crs_note": CRS_NOTE,
            "tile_size": TILE_SIZE,
            "native_zoom": self.grid.native_zoom,
            "grid": {
                "native_zoom": self.grid.native_zoom,
                "min_zoom": self.grid.min_zoom,
                "max_zoom": self.grid.max_zoom,
            },
            "bbox_px": list(self.bbox),
            "zooms": list(self.zooms),
            "tiles": self.total,
            "addressing": {
                "scheme": "archive z = world z + zoom_offset; archive x = world x - origin_px[0] / tile_px(world z); "
                "archive y = world y - origin_px[1] / tile_px(world z); tile_px(z) = 256 * 2**(native_zoom - z)",
                "zoom_offset": self.zoom_offset,
                "origin_px": list(self.origin),
                "tiles": per_zoom,
            },
        }

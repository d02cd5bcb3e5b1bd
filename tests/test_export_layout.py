"""Export addressing: endless world tiles <-> archive tiles with 0 <= x, y < 2**z, as one pyramid."""

from __future__ import annotations

import random

import pytest

from infinitygan.world import COORD_LIMIT
from tiles.export_layout import MAX_EXPORT_TILES, AreaError, ExportLayout
from tiles.geometry import TileAddress, TileGrid

GRID = TileGrid(native_zoom=5, zoom_out_levels=3, zoom_in_levels=3)


def all_tiles(layout: ExportLayout) -> list[TileAddress]:
    return [tile for z in layout.production_order() for tile in layout.tiles(z)]


def check_addressing(layout: ExportLayout) -> None:
    seen = set()
    for tile in all_tiles(layout):
        z, x, y = layout.to_archive(tile)
        assert 0 <= x < 2**z and 0 <= y < 2**z, (tile, (z, x, y))
        assert layout.to_world(z, x, y) == tile
        seen.add((z, x, y))
        if tile.z > layout.zooms[0]:  # the archive is a pyramid: a tile's parent is its world parent's archive tile
            parent = TileAddress(tile.z - 1, tile.x // 2, tile.y // 2)
            assert layout.to_archive(parent) == (z - 1, x // 2, y // 2)
    assert len(seen) == layout.total


def test_a_small_area_keeps_the_service_zooms_and_starts_at_zero() -> None:
    layout = ExportLayout.plan(GRID, (0, 0, 1024, 512), (2, 5))  # 4x2 native tiles
    counts = {z: layout.tile_range(z).count for z in range(2, 6)}
    assert counts == {5: 8, 4: 2, 3: 1, 2: 1} and layout.total == 12
    assert layout.zoom_offset == 0 and layout.origin == (0, 0) and layout.archive_zooms == (2, 5)
    assert layout.production_order() == [5, 4, 3, 2]
    assert layout.to_archive(TileAddress(5, 3, 1)) == (5, 3, 1)
    check_addressing(layout)


def test_negative_and_far_areas_are_shifted_into_the_archive() -> None:
    layout = ExportLayout.plan(GRID, (-1300, -700, -100, 300), (3, 6))
    # Zoom-3 tiles span 1024 px: the area's top-left one is (3, -2, -1), whose corner is archive (z, 0, 0) at every z.
    assert layout.origin == (-2048, -1024) and layout.zoom_offset == 0
    assert layout.to_archive(TileAddress(3, -2, -1)) == (3, 0, 0)
    assert layout.to_archive(TileAddress(5, -6, -3)) == (5, 2, 1)
    assert layout.to_archive(TileAddress(6, -3, -2)) == (6, 13, 6)
    assert layout.production_order() == [5, 4, 3, 6]
    check_addressing(layout)
    far = COORD_LIMIT - 3000
    check_addressing(ExportLayout.plan(GRID, (far, -far - 2000, far + 2000, -far), (2, 5)))


def test_a_wide_area_gets_a_zoom_offset() -> None:
    # 40 zoom-2 tiles across (80,000 px): more than 2**2, so archive zooms are world zooms + 4 (2**6 = 64 >= 40).
    layout = ExportLayout.plan(GRID, (0, 0, 81_920, 256), (2, 3))
    assert layout.tile_range(2).count == 40 and layout.zoom_offset == 4 and layout.archive_zooms == (6, 7)
    check_addressing(layout)


def test_random_areas_map_one_to_one() -> None:
    rng = random.Random(7)
    for _ in range(40):
        x0, y0 = rng.randrange(-(2**20), 2**20), rng.randrange(-(2**20), 2**20)
        width, height = rng.randrange(1, 3000), rng.randrange(1, 3000)
        low = rng.randrange(2, 8)
        layout = ExportLayout.plan(GRID, (x0, y0, x0 + width, y0 + height), (low, rng.randrange(low, 9)))
        check_addressing(layout)


def test_the_description_lets_a_reader_map_back() -> None:
    layout = ExportLayout.plan(GRID, (-1300, -700, -100, 300), (3, 5))
    from tiles.worlds import WorldRecord

    info = layout.describe(WorldRecord.create("m" * 16, 42, 0.7))
    assert info["world"]["seed"] == 42 and info["world"]["psi"] == 0.7 and info["crs"] == "simple"
    addressing = info["addressing"]
    for tile in all_tiles(layout):
        z, x, y = layout.to_archive(tile)
        entry = addressing["tiles"][str(z - addressing["zoom_offset"])]
        assert (x + entry["offset"][0], y + entry["offset"][1]) == (tile.x, tile.y)
        assert entry["x"][0] <= tile.x <= entry["x"][1] and entry["y"][0] <= tile.y <= entry["y"][1]
    west, south, east, north = layout.lonlat_bounds()
    assert -180 <= west < east <= 180 and -85.06 < south < north < 85.06


@pytest.mark.parametrize(
    ("bbox", "zooms", "message"),
    [
        ((0, 0, 0, 256), (2, 5), "empty"),
        ((256, 0, 0, 256), (2, 5), "empty"),
        ((0, 256, 256, 0), (2, 5), "empty"),
        ((0, 0, COORD_LIMIT + 1, 256), (5, 5), "world limit"),
        ((0, 0, 256, 256), (5, 2), "reversed"),
        ((0, 0, 256, 256), (1, 5), "outside the zooms"),
        ((0, 0, 256, 256), (5, 9), "outside the zooms"),
        ((0, 0, 400 * 256, 400 * 256), (5, 5), f"{MAX_EXPORT_TILES:,}"),
    ],
)
def test_bad_areas_are_refused_with_a_reason(bbox, zooms, message) -> None:
    with pytest.raises(AreaError, match=message):
        ExportLayout.plan(GRID, bbox, zooms)

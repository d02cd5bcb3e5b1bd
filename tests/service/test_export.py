"""`infinitygan export`: archives whose every tile is the served tile, byte for byte; reproducible files; resuming
an interrupted export; refusing bad input with one line and a non-zero exit code."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pmtiles.convert import mbtiles_to_pmtiles
from pmtiles.reader import MmapSource, Reader, all_tiles

from app.cli import main as cli_main
from app.exporting import ExportProgress, export_area, sidecar_path
from infinitygan.world import DEFAULT_PSI_LOCAL
from tests.service.conftest import LiveServer, service_settings
from tiles.cache import tile_key
from tiles.export_layout import MAX_EXPORT_TILES
from tiles.geometry import TileAddress

REPO = Path(__file__).resolve().parents[2]
AREA = ["--bbox", "0", "0", "1024", "512"]  # 4x2 native tiles (native zoom 5)
ZOOMS = ["--zoom", "2-5"]
# Every tile of that area at zooms 2-5, from the grid's definition: zoom 5 is 4x2, each level below halves it.
EXPECTED = {(5, x, y) for x in range(4) for y in range(2)} | {(4, 0, 0), (4, 1, 0), (3, 0, 0), (2, 0, 0)}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No REDIS_URL and no default server to find: the export renders everything itself."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("INFINITYGAN_REDIS_URL", raising=False)
    monkeypatch.setenv("INFINITYGAN_EMBEDDED_REDIS_DATA_DIR", str(tmp_path / "no-server-here"))
    return tmp_path


def export(model: Path, out: Path, *extra: str, area: list[str] = AREA, zooms: list[str] = ZOOMS) -> int:
    return cli_main(["export", *extra, "--model", str(model), *area, *zooms, "--out", str(out), "--quiet"])


def pmtiles_contents(path: Path) -> tuple[dict, dict, dict[tuple[int, int, int], bytes]]:
    with open(path, "rb") as handle:
        source = MmapSource(handle)
        reader = Reader(source)
        return reader.header(), reader.metadata(), {tuple(zxy): bytes(data) for zxy, data in all_tiles(source)}


def mbtiles_contents(path: Path) -> tuple[dict[str, str], dict[tuple[int, int, int], bytes]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        metadata = dict(db.execute("SELECT name, value FROM metadata"))
        rows = db.execute("SELECT zoom_level, tile_column, tile_row, tile_data FROM tiles").fetchall()
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()
    # MBTiles rows are TMS: counted from the bottom.
    return metadata, {(z, x, (1 << z) - 1 - row): data for z, x, row, data in rows}


def world_tile(addressing: dict, z: int, x: int, y: int) -> tuple[int, int, int]:
    """A reader's own mapping from the metadata: archive tile -> world tile."""
    world_z = z - addressing["zoom_offset"]
    dx, dy = addressing["tiles"][str(world_z)]["offset"]
    return world_z, x + dx, y + dy


def assert_served(client: httpx.Client, world_id: str, tiles: dict[tuple[int, int, int], bytes]) -> None:
    for (z, x, y), png in sorted(tiles.items()):
        response = client.get(f"/worlds/{world_id}/tiles/{z}/{x}/{y}.png")
        assert response.status_code == 200, response.text
        assert response.content == png, f"tile {z}/{x}/{y} differs from the served one"


def test_pmtiles_and_mbtiles_hold_exactly_the_served_tiles(
    offline: Path, tiny_model: Path, live_server: LiveServer, client: httpx.Client
) -> None:
    """Exported with no shared cache (rendered by the export), compared with what the live server renders itself."""
    world_id = client.get("/tilejson.json").json()["world"]["id"]
    assert export(tiny_model, offline / "world.pmtiles", "default") == 0
    assert export(tiny_model, offline / "world.mbtiles", world_id) == 0  # the default world by its id
    assert not sidecar_path(offline / "world.pmtiles").exists()  # the sidecar goes once the archive is written

    header, metadata, archived = pmtiles_contents(offline / "world.pmtiles")
    info = metadata["infinitygan"]
    assert info["world"]["id"] == world_id and info["world"]["seed"] == 0 and info["crs"] == "simple"
    assert info["zooms"] == [2, 5] and info["bbox_px"] == [0, 0, 1024, 512] and info["tile_size"] == 256
    assert metadata["format"] == "png" and (metadata["minzoom"], metadata["maxzoom"]) == (2, 5)
    assert (header["min_zoom"], header["max_zoom"], header["addressed_tiles_count"]) == (2, 5, 12)
    assert header["tile_type"].name == "PNG" and header["clustered"]
    in_world = {world_tile(info["addressing"], *zxy): png for zxy, png in archived.items()}
    assert set(in_world) == EXPECTED
    # The live server has an empty cache (the client fixture flushed Redis): it renders every tile itself.
    assert client.get(f"/worlds/{world_id}/tiles/5/0/0.png").headers["x-cache"] == "MISS"
    assert_served(client, world_id, in_world)

    rows, mb_tiles = mbtiles_contents(offline / "world.mbtiles")
    assert rows["format"] == "png" and rows["name"] == f"InfinityGAN world {world_id}"
    assert (rows["minzoom"], rows["maxzoom"]) == ("2", "5")
    assert len(rows["bounds"].split(",")) == 4 and len(rows["center"].split(",")) == 3
    mb_info = json.loads(rows["json"])["infinitygan"]
    assert mb_info == info  # one description in both formats
    assert {world_tile(mb_info["addressing"], *zxy): png for zxy, png in mb_tiles.items()} == in_world
    # The pmtiles package's own MBTiles reader (its converter) reads the MBTiles back to the same archive tiles.
    mbtiles_to_pmtiles(str(offline / "world.mbtiles"), str(offline / "converted.pmtiles"), None)
    assert pmtiles_contents(offline / "converted.pmtiles")[2] == archived


def test_a_second_export_is_byte_identical(offline: Path, tiny_model: Path) -> None:
    for suffix in ("pmtiles", "mbtiles"):
        first, second = offline / f"first.{suffix}", offline / f"second.{suffix}"
        assert export(tiny_model, first) == 0
        assert export(tiny_model, second) == 0
        assert first.read_bytes() == second.read_bytes(), suffix
    site_a, site_b = offline / "site-a", offline / "site-b"
    assert export(tiny_model, site_a, "--format", "site") == 0
    assert export(tiny_model, site_b, "--format", "site") == 0
    files_a = sorted(p.relative_to(site_a) for p in site_a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(site_b) for p in site_b.rglob("*") if p.is_file())
    for name in files_a:
        assert (site_a / name).read_bytes() == (site_b / name).read_bytes(), name
    archive = next(site_a.glob("*.pmtiles"))
    assert archive.read_bytes() == (offline / "first.pmtiles").read_bytes()  # the site carries the same archive


def test_tiles_come_from_the_shared_cache_when_a_server_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model: Path, redis_url: str, client: httpx.Client, capsys
) -> None:
    """A created world (known only to the server's Redis), its tiles already served: the export renders nothing, and
    its archive holds the very bytes the server cached."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    world_id = client.post("/worlds", json={"seed": 4242, "psi": 0.7, "biomes": None}).json()["id"]
    served = {}
    for z, x, y in sorted(EXPECTED):
        served[(z, x, y)] = client.get(f"/worlds/{world_id}/tiles/{z}/{x}/{y}.png").content
    out = tmp_path / "shared.pmtiles"
    assert export(tiny_model, out, world_id) == 0
    assert "0 rendered, 12 from the shared cache" in capsys.readouterr().err
    _, metadata, archived = pmtiles_contents(out)
    assert metadata["infinitygan"]["world"] == {"id": world_id, "model_hash": metadata["version"].split(".")[0],
                                                "seed": 4242, "psi": 0.7, "psi_local": DEFAULT_PSI_LOCAL}  # fmt: skip
    assert {world_tile(metadata["infinitygan"]["addressing"], *zxy): png for zxy, png in archived.items()} == served


def test_negative_coordinates_and_zooms_above_native_are_exported_as_served(
    offline: Path, tiny_model: Path, client: httpx.Client
) -> None:
    """Above native the service upscales each tile from its native neighbourhood; the export goes through the same
    pipeline, so zoom 6 and 7 tiles (and tiles left of and above the origin) match too."""
    world_id = client.get("/tilejson.json").json()["world"]["id"]
    out = offline / "deep.pmtiles"
    assert export(tiny_model, out, area=["--bbox", "-300", "-200", "-100", "40"], zooms=["--zoom", "4-7"]) == 0
    _, metadata, archived = pmtiles_contents(out)
    addressing = metadata["infinitygan"]["addressing"]
    assert addressing["origin_px"] == [-512, -512]  # the zoom-4 tile (-1, -1)
    in_world = {world_tile(addressing, *zxy): png for zxy, png in archived.items()}
    assert {z for z, _, _ in in_world} == {4, 5, 6, 7} and (6, -3, -2) in in_world and (7, -2, 0) in in_world
    assert min(x for _, x, _ in archived) == 0 and min(y for _, _, y in archived) == 0
    assert_served(client, world_id, in_world)


def archived_count(sidecar: Path) -> int:
    """Tiles of the area the sidecar records as finished (0 while it does not exist or is locked for a moment)."""
    if not sidecar.exists():
        return 0
    db = sqlite3.connect(sidecar, timeout=0.2)
    try:
        return db.execute("SELECT count(*) FROM archive").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def export_keys_kept(sidecar: Path, render_id: str, world_id: str, tiles: set[tuple[int, int, int]]) -> int:
    db = sqlite3.connect(sidecar)
    try:
        keys = {row[0] for row in db.execute("SELECT key FROM tiles")}
    finally:
        db.close()
    return sum(tile_key(render_id, world_id, TileAddress(*tile)) in keys for tile in tiles)


class Interrupted(Exception):
    pass


def test_an_interrupted_export_resumes_without_rendering_finished_tiles(
    offline: Path, tiny_model: Path, tiny_loaded
) -> None:
    settings = service_settings(None, tiny_model)
    out = offline / "resumed.pmtiles"

    def stop_after_five(progress: ExportProgress) -> None:
        if progress.done >= 5:
            raise Interrupted

    with pytest.raises(Interrupted):
        asyncio.run(
            export_area(settings, "default", (0, 0, 1024, 512), (2, 5), out, "pmtiles", on_tile=stop_after_five)
        )
    assert not out.exists() and sidecar_path(out).exists()

    world = settings.default_world(tiny_loaded.model_hash)
    from infinitygan import FORWARD_VERSION
    from infinitygan.runtime import runtime_id

    render_id = f"{tiny_loaded.model_hash}.{runtime_id(settings.runtime)}.f{FORWARD_VERSION}"  # TileRenderer.render_id
    kept = export_keys_kept(sidecar_path(out), render_id, world.id, EXPECTED)
    assert 5 <= kept < len(EXPECTED)

    report = asyncio.run(export_area(settings, "default", (0, 0, 1024, 512), (2, 5), out, "pmtiles"))
    assert report.progress == ExportProgress(total=12, done=12, rendered=12 - kept, reused=0, resumed=kept)
    assert out.exists() and not sidecar_path(out).exists()
    uninterrupted = offline / "whole.pmtiles"
    asyncio.run(export_area(settings, "default", (0, 0, 1024, 512), (2, 5), uninterrupted, "pmtiles"))
    assert out.read_bytes() == uninterrupted.read_bytes()


def test_a_killed_export_process_resumes_and_writes_the_same_archive(
    offline: Path, tiny_model: Path, tiny_loaded
) -> None:
    """SIGKILL mid-export (nothing gets to clean up): the committed tiles survive in the sidecar, the same command
    renders only the rest, and the archive is byte-identical to an export that was never interrupted."""
    area = ["--bbox", "0", "0", "4096", "2048"]  # 16x8 native tiles: 170 tiles at zooms 2-5
    out = offline / "killed.mbtiles"
    command = [sys.executable, "-m", "app.cli", "export", "--model", str(tiny_model), *area, *ZOOMS, "--out", str(out)]
    # The same render settings as the in-process exports below: a model renders the same pixels only at the same
    # torch thread count (README, "The model library"), and that follows INFINITYGAN_RENDER_THREADS by default.
    assert "INFINITYGAN_TORCH_THREADS" not in os.environ and "INFINITYGAN_RENDER_THREADS" not in os.environ
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([*command, "--quiet"], cwd=offline, env=env, stderr=subprocess.PIPE)
    sidecar = sidecar_path(out)
    deadline = time.monotonic() + 120
    try:
        while archived_count(sidecar) < 20:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the export never got going"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not out.exists()
    kept = archived_count(sidecar)
    assert 20 <= kept < 170

    assert cli_main(["export", "--model", str(tiny_model), *area, *ZOOMS, "--out", str(out), "--quiet"]) == 0
    uninterrupted = offline / "whole.mbtiles"
    assert cli_main(["export", "--model", str(tiny_model), *area, *ZOOMS, "--out", str(uninterrupted), "--quiet"]) == 0
    assert out.read_bytes() == uninterrupted.read_bytes()


@pytest.fixture
def bad_input(offline: Path, tiny_model: Path, capsys) -> Iterator:
    def run(*argv: str) -> tuple[int, str]:
        try:
            code = cli_main(["export", "--model", str(tiny_model), "--quiet", *argv])
        except SystemExit as exc:  # argparse's own errors: usage line, exit 2
            code = exc.code
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return code, err

    yield run


def test_bad_input_is_refused_with_one_line(bad_input, offline: Path, tiny_model: Path) -> None:
    out = str(offline / "x.pmtiles")
    cases = [
        (["--bbox", "1024", "0", "0", "512", "--zoom", "2-5", "--out", out], 2, "is empty"),
        (["--bbox", "0", "0", "0", "512", "--zoom", "2-5", "--out", out], 2, "is empty"),
        (["--bbox", "0", "0", "1024", "512", "--zoom", "5-2", "--out", out], 2, "reversed"),
        (["--bbox", "0", "0", "1024", "512", "--zoom", "1-5", "--out", out], 2, "outside the zooms the service"),
        (["--bbox", "0", "0", "1024", "512", "--zoom", "2-9", "--out", out], 2, "outside the zooms the service"),
        (["--bbox", "0", "0", "1024", "512", "--zoom", "two", "--out", out], 2, "zoom must be Z or Z0-Z1"),
        (["--bbox", "0", "0", "1024", "--zoom", "2-5", "--out", out], 2, "--bbox"),
        (["--bbox", "0", "0", str(2**41), "512", "--zoom", "5", "--out", out], 2, "world limit"),
        (["--bbox", "0", "0", "409600", "409600", "--zoom", "2-5", "--out", out], 2, f"{MAX_EXPORT_TILES:,}"),
        (["--bbox", "0", "0", "1024", "512", "--zoom", "2-5", "--out", str(offline / "x.png")], 2, "--format"),
        (["0" * 16, "--bbox", "0", "0", "256", "256", "--zoom", "5", "--out", out], 1, "no server's Redis"),
        (["not-a-world", "--bbox", "0", "0", "256", "256", "--zoom", "5", "--out", out], 1, "unknown world"),
    ]
    for argv, code, message in cases:
        got, err = bad_input(*argv)
        assert (got, message in err) == (code, True), (argv, err)
    assert not list(offline.glob("x.*"))  # nothing was written for any of them

    blocker = offline / "a-file"
    blocker.write_text("not a folder")
    unwritable = [
        (str(blocker / "x.pmtiles"), "pmtiles", "is a file, not a folder"),
        (str(blocker / "deeper" / "x.pmtiles"), "pmtiles", "Not a directory"),
        (str(offline), "pmtiles", "is a folder"),
        (str(blocker), "site", "is a file"),
        (str(offline), "site", "other files in it"),
    ]
    for target, fmt, message in unwritable:
        got, err = bad_input("--bbox", "0", "0", "256", "256", "--zoom", "5", "--format", fmt, "--out", target)
        assert got == 1 and f"cannot write {target}" in err and message in err, err


def test_unknown_world_on_a_running_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model: Path, redis_url: str, client: httpx.Client, capsys
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    code = export(tiny_model, tmp_path / "x.pmtiles", "0123456789abcdef")
    err = capsys.readouterr().err
    assert code == 1 and "unknown world '0123456789abcdef'" in err and "Traceback" not in err
    assert not (tmp_path / "x.pmtiles").exists()

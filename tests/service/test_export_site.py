"""`infinitygan export --format site` in headless Chromium, offline (every host but localhost unresolvable), served
by a plain `python -m http.server` (which ignores Range requests) and by a Range-capable server: the world shows."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pmtiles.reader import MmapSource, Reader

from app.cli import main as cli_main
from app.static_site import SITE_ASSETS
from tests.service.cdp import Chromium, find_chromium

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PMTILES_JS_SHA256 = "caf981bc46f6327ee7e65d5dc964d89d38a69f60edca2bd4c5c890c21b554c6c"  # vendor/pmtiles/README.md
SETTLED = (
    "window.viewer && window.tileStats.loaded >= {n}"
    " && document.querySelectorAll('.leaflet-tile:not(.leaflet-tile-loaded)').length === 0"
    # and Leaflet's fade-in is over (a tile caught mid-fade is blended with the background)
    " && Array.from(document.querySelectorAll('.leaflet-tile')).every(t => ['', '1'].includes(t.style.opacity))"
)


@contextmanager
def plain_http_server(folder: Path) -> Iterator[int]:
    """`python -m http.server` exactly as a user runs it, on a free loopback port; yields the port."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        match = re.search(r"port (\d+)", line)
        assert match, f"http.server said {line!r}"
        yield int(match.group(1))
    finally:
        process.terminate()
        process.wait(timeout=10)


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """A static server that honours single byte ranges (as nginx, object stores and CDNs do)."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if match is None or not path.is_file():
            super().do_GET()
            return
        data = path.read_bytes()
        start, end = int(match.group(1)), min(int(match.group(2)), len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.wfile.write(data[start : end + 1])


@contextmanager
def range_http_server(folder: Path) -> Iterator[int]:
    def handler(*args, **kwargs):
        return RangeHandler(*args, directory=str(folder), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def test_the_vendored_pmtiles_reader_is_the_published_one() -> None:
    vendored = SITE_ASSETS / "vendor" / "pmtiles"
    assert hashlib.sha256((vendored / "pmtiles.js").read_bytes()).hexdigest() == PMTILES_JS_SHA256
    assert PMTILES_JS_SHA256 in (vendored / "README.md").read_text()
    assert "BSD" in (vendored / "LICENSE").read_text() or "Redistribution" in (vendored / "LICENSE").read_text()
    assert "MIT License" in (vendored / "LICENSE.fflate").read_text()


def test_exported_site_shows_the_world_offline(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    binary = find_chromium()
    if binary is None:
        pytest.fail("Chromium not found: install it with `apt-get install -y chromium` (or set CHROMIUM_BINARY)")
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("INFINITYGAN_EMBEDDED_REDIS_DATA_DIR", str(tmp_path / "no-server-here"))
    site = tmp_path / "site"
    argv = ["export", "--model", str(tiny_model), "--bbox", "0", "0", "1024", "512", "--zoom", "2-5"]
    assert cli_main([*argv, "--format", "site", "--out", str(site), "--quiet"]) == 0
    page = (site / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing from the internet
    for name in ("leaflet/leaflet.js", "leaflet/leaflet.css", "pmtiles/pmtiles.js", "pmtiles/LICENSE", "viewer.js"):
        assert (site / name).is_file(), name
    (archive,) = site.glob("*.pmtiles")
    with open(archive, "rb") as handle:
        reader = Reader(MmapSource(handle))
        tile_5_1_1 = decode(reader.get(5, 1, 1))  # archive = world addressing here (origin 0, zoom offset 0)
        tile_3_0_0 = decode(reader.get(3, 0, 0))
    ARTIFACTS.mkdir(exist_ok=True)

    for name, server in (("plain", plain_http_server), ("range", range_http_server)):
        with server(site) as port, Chromium(binary, 1280, 800, offline=True) as browser:
            # Centre (640, 400) at zoom 5 in a 1280x800 window: world pixel (0, 0) is the window's top-left corner.
            browser.navigate(f"http://localhost:{port}/#z=5&x=640&y=400")
            browser.wait_for(SETTLED.format(n=8), 60)
            stats = browser.evaluate("window.tileStats")
            assert stats["errors"] == 0 and stats["missing"] == 0, stats
            assert browser.evaluate("window.archiveMode") == ("whole" if name == "plain" else "range")
            assert browser.evaluate("window.viewerError || ''") == ""
            screenshot = browser.screenshot()
            (ARTIFACTS / f"export-site-{name}.png").write_bytes(screenshot)
            shot = decode(screenshot)
            assert shot.std() > 10 and len(np.unique(shot[:512, :1024].reshape(-1, 3), axis=0)) > 2000
            # The tile drawn at world (256..512, 256..512) is the archive's tile 5/1/1, pixel for pixel.
            difference = np.abs(shot[256:512, 256:512] - tile_5_1_1)
            assert difference.mean() < 1.0 and np.percentile(difference, 99) <= 2, difference.mean()
            # Outside the exported area there is no tile: the map's background.
            assert len(np.unique(shot[600:700, 1100:1200].reshape(-1, 3), axis=0)) == 1

            if name == "plain":  # zoomed out to the coarsest level: one tile, also pixel for pixel
                # At zoom 3 a screen pixel is 4 world pixels: centre (2560, 1600) puts world (0, 0) at the top-left.
                browser.navigate(f"http://localhost:{port}/?zoomed-out#z=3&x=2560&y=1600")  # a new page, not a hash
                browser.wait_for("location.search === '?zoomed-out' && " + SETTLED.format(n=1), 60)
                assert browser.evaluate("map.getZoom()") == 3 and browser.evaluate("window.tileStats.errors") == 0
                screenshot = browser.screenshot()
                (ARTIFACTS / "export-site-zoom3.png").write_bytes(screenshot)
                shot = decode(screenshot)
                difference = np.abs(shot[64:256, 64:256] - tile_3_0_0[64:256, 64:256])  # clear of the zoom control
                assert difference.mean() < 1.0, difference.mean()


def test_site_viewer_maps_a_shifted_archive_back_to_world_coordinates(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An area left of and above the origin on a grid whose coarsest zoom (0) is too small for it: the archive is
    shifted (origin -1024, -1024) and one zoom deeper (zoom offset 1). The viewer must undo both to draw each world
    tile where the service would, at the native zoom and at an upscaled zoom-in level."""
    binary = find_chromium()
    if binary is None:
        pytest.fail("Chromium not found: install it with `apt-get install -y chromium` (or set CHROMIUM_BINARY)")
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("INFINITYGAN_EMBEDDED_REDIS_DATA_DIR", str(tmp_path / "no-server-here"))
    monkeypatch.setenv("INFINITYGAN_NATIVE_ZOOM", "2")
    monkeypatch.setenv("INFINITYGAN_ZOOM_OUT_LEVELS", "2")
    monkeypatch.setenv("INFINITYGAN_ZOOM_IN_LEVELS", "1")
    site = tmp_path / "shifted"
    argv = ["export", "--model", str(tiny_model), "--bbox", "-300", "-100", "700", "200", "--zoom", "0-3"]
    assert cli_main([*argv, "--format", "site", "--out", str(site), "--quiet"]) == 0
    (archive,) = site.glob("*.pmtiles")
    with open(archive, "rb") as handle:
        reader = Reader(MmapSource(handle))
        addressing = reader.metadata()["infinitygan"]["addressing"]
        assert addressing["zoom_offset"] == 1 and addressing["origin_px"] == [-1024, -1024]

        def world_tile(z: int, x: int, y: int) -> np.ndarray:
            """The archive tile of world tile (z, x, y), found the way a reader would: from the metadata."""
            dx, dy = addressing["tiles"][str(z)]["offset"]
            return decode(reader.get(z + addressing["zoom_offset"], x - dx, y - dy))

        expected = {z: {(x, y): world_tile(z, x, y) for x in (-1, 0) for y in (-1, 0)} for z in (2, 3)}

    with plain_http_server(site) as port, Chromium(binary, 1280, 800, offline=True) as browser:
        for z in (2, 3):  # native, then the zoom-in level; world pixel (0, 0) at the window's centre (640, 400)
            browser.navigate(f"http://localhost:{port}/?z{z}#z={z}&x=0&y=0")
            browser.wait_for(f"location.search === '?z{z}' && " + SETTLED.format(n=4), 60)
            assert browser.evaluate("window.tileStats.errors") == 0 and browser.evaluate("map.getZoom()") == z
            screenshot = browser.screenshot()
            (ARTIFACTS / f"export-site-shifted-z{z}.png").write_bytes(screenshot)
            shot = decode(screenshot)
            for (x, y), tile in expected[z].items():
                left, top = 640 + 256 * x, 400 + 256 * y  # one tile is 256 screen px at every zoom
                difference = np.abs(shot[top : top + 256, left : left + 256] - tile)
                assert difference.mean() < 1.0, (z, x, y, difference.mean())

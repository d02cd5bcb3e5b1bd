"""The demo page in a real headless Chromium against a real uvicorn server: tiles load, pan, zoom, pick a world."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service.cdp import Chromium, find_chromium
from tests.service.conftest import LiveServer, metric
from tests.service.outpaint_helpers import PHOTO

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LOADED = "window.tileStats ? window.tileStats.loaded : 0"


def wait_until_tiles_settle(browser: Chromium, at_least: int, timeout_s: float = 180.0) -> int:
    """Wait for `at_least` loaded tiles and no tile still loading; returns the loaded count."""
    browser.wait_for(f"({LOADED}) >= {at_least}", timeout_s)
    browser.wait_for("document.querySelectorAll('.leaflet-tile:not(.leaflet-tile-loaded)').length === 0", timeout_s)
    time.sleep(0.3)  # Leaflet prunes faded-out tiles after its animation
    return browser.evaluate(LOADED)


def assert_not_blank(png: bytes) -> None:
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert image.shape[0] >= 700 and image.shape[1] >= 1200, image.shape
    assert image.std() > 10, "screenshot is (nearly) one colour"
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 2000, "screenshot has too few colours to be landscape tiles"


def test_demo_page_loads_pans_zooms_and_switches_worlds(live_server: LiveServer, client: httpx.Client) -> None:
    binary = find_chromium()
    if binary is None:
        pytest.fail(
            "Chromium not found: this test needs a real headless browser. Install it with "
            "`apt-get install -y chromium` (or set CHROMIUM_BINARY to a Chrome/Chromium executable)."
        )
    ARTIFACTS.mkdir(exist_ok=True)
    served_before = metric(client, "tiles_served_total", zoom="5", cache="miss") + metric(
        client, "tiles_served_total", zoom="5", cache="hit"
    )
    with Chromium(binary, 1280, 800) as browser:
        browser.navigate(f"{live_server.base_url}/#z=5&x=0&y=0")
        # 1280x800 at 256 px per tile: at least 5 x 3 tiles are fully visible whatever the offset.
        first = wait_until_tiles_settle(browser, 15)
        assert browser.evaluate("window.tileStats.errors") == 0
        assert browser.evaluate("map.getZoom()") == 5
        assert len(browser.evaluate("Array.from(document.querySelectorAll('img.leaflet-tile-loaded'))")) >= 15
        Path(ARTIFACTS / "demo-initial.png").write_bytes(browser.screenshot())

        browser.drag((900, 500), (300, 200))  # pan by (600, 300) px: new columns and rows come into view
        panned = wait_until_tiles_settle(browser, first + 4)
        browser.wait_for("!map._panAnim || !map._panAnim._inProgress")  # Leaflet's inertia carries the pan on
        time.sleep(0.5)
        centre = browser.evaluate("(() => { const p = map.project(map.getCenter(), 5); return [p.x, p.y]; })()")
        assert centre[0] >= 590 and centre[1] >= 290, centre  # dragged left/up: the view moved right/down
        permalink = browser.evaluate("location.hash")
        assert f"x={round(centre[0])}" in permalink and f"y={round(centre[1])}" in permalink, (permalink, centre)

        zoom_out = browser.evaluate(
            "(() => { const r = document.querySelector('.leaflet-control-zoom-out').getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        browser.click(*zoom_out)
        browser.wait_for("map.getZoom() === 4")
        zoomed = wait_until_tiles_settle(browser, panned + 12)
        assert "z=4" in browser.evaluate("location.hash")
        assert browser.evaluate("window.tileStats.errors") == 0
        screenshot = browser.screenshot()
        (ARTIFACTS / "demo-page.png").write_bytes(screenshot)
        assert_not_blank(screenshot)

        old_world = browser.evaluate("tilejson.world.id")
        # The default world has the served biomes, and the picker shows them ticked.
        assert browser.evaluate("tilejson.world.biomes") == {"region_px": 2048, "transition_px": 512, "styles": []}
        assert browser.evaluate("document.getElementById('biomes').checked") is True
        browser.evaluate("document.getElementById('seed').value = '4242'; document.getElementById('psi').value = '0.7';"
                         " document.getElementById('biomes').checked = false;"
                         " document.getElementById('world-picker').requestSubmit(); true")  # fmt: skip
        browser.wait_for(f"tilejson && tilejson.world.id !== '{old_world}'")
        wait_until_tiles_settle(browser, zoomed + 12)
        new_world = browser.evaluate("tilejson.world")
        assert (new_world["seed"], new_world["psi"], new_world["biomes"]) == (4242, 0.7, None)  # unticked: one look
        assert f"world={new_world['id']}" in browser.evaluate("location.hash")
        assert browser.evaluate("document.getElementById('error').textContent") == ""
        (ARTIFACTS / "demo-other-world.png").write_bytes(browser.screenshot())

        # Biomes: tick the box; the new world has them, and its id (the permalink) differs from the plain world's.
        plain_world = new_world["id"]
        browser.evaluate("document.getElementById('biomes').checked = true; document.getElementById('region').value = "
                         "'1024'; document.getElementById('world-picker').requestSubmit(); true")  # fmt: skip
        browser.wait_for(f"tilejson && tilejson.world.id !== '{plain_world}'")
        biome_world = browser.evaluate("tilejson.world")
        assert biome_world["biomes"] == {"region_px": 1024, "transition_px": 256, "styles": []}
        assert f"world={biome_world['id']}" in browser.evaluate("location.hash")
        assert browser.evaluate("document.getElementById('error').textContent") == ""
        wait_until_tiles_settle(browser, browser.evaluate(LOADED) + 4)
        assert browser.evaluate("window.tileStats.errors") == 0
        # Blend: the picker lists the server's partner models; choosing one makes a layer-swapped world.
        browser.evaluate("document.getElementById('biomes').checked = false; true")
        assert browser.evaluate("document.getElementById('blend').hidden") is False
        assert browser.evaluate("[...document.getElementById('blend-partner').options].map(o => o.value)") == [
            "",
            "dusk",
        ]
        browser.evaluate("document.getElementById('blend-partner').value = 'dusk'; "
                         "document.getElementById('swap-level').value = '1'; "
                         "document.getElementById('world-picker').requestSubmit(); true")  # fmt: skip
        browser.wait_for(f"tilejson && tilejson.world.id !== '{biome_world['id']}'")
        blend_world = browser.evaluate("tilejson.world")
        assert blend_world["blend"]["partner"] == "dusk" and blend_world["blend"]["swap_level"] == 1
        assert blend_world["biomes"] is None and blend_world["id"] != plain_world
        assert f"world={blend_world['id']}" in browser.evaluate("location.hash")
        wait_until_tiles_settle(browser, browser.evaluate(LOADED) + 4)
        assert browser.evaluate("window.tileStats.errors") == 0
        # Back to the plain world for the upload below: the picker follows the world it opens.
        browser.evaluate("document.getElementById('blend-partner').value = ''; document.getElementById("
                         "'world-picker').requestSubmit(); true")  # fmt: skip
        browser.wait_for(f"tilejson && tilejson.world.id === '{plain_world}'")
        assert browser.evaluate("document.getElementById('blend-partner').value") == ""

        # Outpaint: pick the landscape photo, watch the job's progress, land on the photo in its new world.
        loaded_before = browser.evaluate(LOADED)
        browser.set_files("#photo", [PHOTO])
        browser.evaluate("document.getElementById('outpaint').requestSubmit(); true")
        browser.wait_for("window.lastJob !== null", 30)
        job = browser.wait_for("window.lastJob && window.lastJob.status === 'succeeded' && window.lastJob", 180)
        assert (job["seed"], job["psi"]) == (4242, 0.7)  # into the world the picker shows
        photo_world = job["result"]["world_id"]
        browser.wait_for(f"tilejson && tilejson.world.id === '{photo_world}'")
        browser.wait_for(f"window.landedOn === '{photo_world}'", 30)  # the flight to the footprint has landed
        wait_until_tiles_settle(browser, loaded_before + 12)  # 1280x800 at native zoom shows at least 5 x 3 tiles
        shown = "Array.from(document.querySelectorAll('img.leaflet-tile-loaded')).map(t => t.src)"
        assert sum(photo_world in src for src in browser.evaluate(shown)) >= 12
        fp = job["result"]["footprint"]
        assert browser.evaluate(
            f"map.getBounds().contains(L.latLngBounds(map.unproject([{fp['x']}, {fp['y']}], 5),"
            f" map.unproject([{fp['x'] + fp['width']}, {fp['y'] + fp['height']}], 5)))"
        ), "the view does not show the whole photo"
        assert browser.evaluate("document.getElementById('job-progress').value") == 100
        assert browser.evaluate("document.getElementById('error').textContent") == ""
        assert browser.evaluate("window.tileStats.errors") == 0
        (ARTIFACTS / "demo-outpainted.png").write_bytes(browser.screenshot())

    served_after = metric(client, "tiles_served_total", zoom="5", cache="miss") + metric(
        client, "tiles_served_total", zoom="5", cache="hit"
    )
    assert served_after - served_before >= 15  # the browser's tiles really came from this server


def test_api_docs_render_offline(live_server: LiveServer, client: httpx.Client) -> None:
    """/docs loaded Swagger UI from a CDN: blank on an offline machine. Now its assets come from a package."""
    page = client.get("/docs").text
    assert "cdn" not in page.lower() and "https://" not in page
    binary = find_chromium()
    assert binary is not None, "Chromium not found: install it with `apt-get install -y chromium`"
    with Chromium(binary, 1280, 800, offline=True) as browser:
        browser.navigate(f"{live_server.base_url.replace('127.0.0.1', 'localhost')}/docs")
        browser.wait_for("document.querySelectorAll('.opblock').length >= 10", 60)
        operations = browser.evaluate(
            "Array.from(document.querySelectorAll('.opblock-summary-path')).map(e => e.textContent)"
        )
        assert "/outpaint" in " ".join(operations) and "/worlds" in " ".join(operations)
        ARTIFACTS.mkdir(exist_ok=True)
        Path(ARTIFACTS / "docs-offline.png").write_bytes(browser.screenshot())

"""Tiles over real HTTP from a real uvicorn server backed by a real Redis."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from app.cli import main as cli_main
from infinitygan.biomes import SERVED_REGION_PX, SERVED_TRANSITION_PX
from infinitygan.generator import Generator
from infinitygan.world import DEFAULT_PSI, DEFAULT_PSI_LOCAL, WorldSpec, render_region
from tests.model_fixtures import served_world
from tests.service.conftest import LiveServer, metric, renders
from tiles.worlds import WorldRecord, world_id

IMMUTABLE = "public, max-age=31536000, immutable"


def pixels(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def new_world(client: httpx.Client, seed: int, psi: float | None = None) -> str:
    """A world of one look (no biomes) of seed (and psi)."""
    body = {"seed": seed, "biomes": None} if psi is None else {"seed": seed, "psi": psi, "biomes": None}
    response = client.post("/worlds", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_miss_then_hit_with_identical_bytes(client: httpx.Client) -> None:
    world = new_world(client, 11)
    first = client.get(f"/worlds/{world}/tiles/5/3/-2.png")
    second = client.get(f"/worlds/{world}/tiles/5/3/-2.png")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert first.content == second.content
    assert first.headers["etag"] == second.headers["etag"]
    assert first.headers["cache-control"] == IMMUTABLE
    assert "total;dur=" in first.headers["server-timing"]
    assert pixels(first).shape == (256, 256, 3)


def test_rendering_again_gives_identical_png_bytes(client: httpx.Client, redis_client, live_server) -> None:
    world = new_world(client, 12)
    first = client.get(f"/worlds/{world}/tiles/4/0/0.png")
    redis_client.flushdb()  # the next request renders the tile (and its children) from scratch
    live_server.resources.tiles.memory.clear()
    second = client.get(f"/worlds/{world}/tiles/4/0/0.png")
    assert second.headers["x-cache"] == "MISS"
    assert first.content == second.content


def test_hot_tiles_are_served_from_the_memory_tier_without_redis(client: httpx.Client, redis_client) -> None:
    world = new_world(client, 13)
    url = f"/worlds/{world}/tiles/5/1/1.png"
    first = client.get(url)
    redis_client.flushdb()  # gone from Redis: only the memory tier still holds it
    before = metric(client, "tile_cache_lookups_total", result="memory")
    second = client.get(url)
    assert second.headers["x-cache"] == "HIT" and second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    assert metric(client, "tile_cache_lookups_total", result="memory") == before + 1
    assert redis_client.dbsize() == 0  # a memory hit never reached Redis, not even to write the tile back


def test_if_none_match_gives_304_without_body(client: httpx.Client) -> None:
    url = "/tiles/5/0/0.png"
    etag = client.get(url).headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_head_gives_the_headers_of_get_without_a_body(client: httpx.Client) -> None:
    url = "/tiles/5/2/-1.png"
    get = client.get(url)
    head = client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == get.headers["etag"]
    assert head.headers["content-type"] == "image/png"
    assert head.headers["content-length"] == str(len(get.content))
    assert client.head("/tiles/5/x/0.png").status_code == 422


def test_cors_for_tiles(client: httpx.Client) -> None:
    response = client.get("/tiles/5/0/0.png", headers={"Origin": "http://elsewhere.example"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "etag" in response.headers["access-control-expose-headers"].lower()


def test_cors_preflight_allows_the_headers_of_revalidation_and_ranges(client: httpx.Client) -> None:
    """A page on another origin that revalidates tiles (If-None-Match, If-Modified-Since) or asks for a Range sends a
    preflight first; it was refused (400) when those headers were not allowed."""
    preflight = client.options(
        "/tiles/5/0/0.png",
        headers={
            "Origin": "http://elsewhere.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "if-none-match, if-modified-since, range",
        },
    )
    assert preflight.status_code == 200, preflight.text
    allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"if-none-match", "if-modified-since", "range"} <= allowed
    assert "GET" in preflight.headers["access-control-allow-methods"]


def test_twenty_concurrent_requests_for_one_cold_tile_render_it_once(client: httpx.Client, live_server) -> None:
    world = new_world(client, 13)
    before = renders(client)

    async def fetch_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live_server.base_url, timeout=60) as http:
            return await asyncio.gather(*(http.get(f"/worlds/{world}/tiles/5/7/7.png") for _ in range(20)))

    responses = asyncio.run(fetch_all())
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.content for r in responses}) == 1
    assert renders(client) - before == 1


def test_world_with_the_defaults_serves_what_the_cli_renders(client: httpx.Client, tiny_model: Path, tmp_path) -> None:
    seed = 2024
    world = client.post("/worlds", json={"seed": seed}).json()
    assert (world["psi"], world["psi_local"]) == (DEFAULT_PSI, DEFAULT_PSI_LOCAL)
    assert world["biomes"] == {"region_px": SERVED_REGION_PX, "transition_px": SERVED_TRANSITION_PX, "styles": []}
    out = tmp_path / "cli.png"
    argv = ["render", "--checkpoint", str(tiny_model), "--seed", str(seed), "--quiet", "--out", str(out)]
    argv += ["--biomes", f"{SERVED_REGION_PX}:{SERVED_TRANSITION_PX}"]
    assert cli_main([*argv, "--x", "256", "--y", "-256", "--width", "256", "--height", "256"]) == 0
    expected = np.asarray(Image.open(out).convert("RGB"))
    served = pixels(client.get(f"/worlds/{world['id']}/tiles/5/1/-1.png"))
    np.testing.assert_array_equal(served, expected)


def test_psi_local_truncates_the_local_randomness_and_an_untruncated_world_keeps_its_old_id(
    client: httpx.Client, tiny_generator: Generator
) -> None:
    calm = client.post("/worlds", json={"seed": 31, "biomes": None}).json()
    assert calm["psi_local"] == DEFAULT_PSI_LOCAL  # the served default
    full = client.post("/worlds", json={"seed": 31, "psi_local": 1.0, "biomes": None}).json()
    assert full["psi_local"] == 1.0 and full["id"] != calm["id"]
    # Untruncated is what every world was before psi_local existed: the same id as then, so old URLs stay valid.
    assert full["id"] == world_id(full["model_hash"], 31, DEFAULT_PSI)
    served = {}
    for world in (calm, full):
        served[world["psi_local"]] = pixels(client.get(f"/worlds/{world['id']}/tiles/5/0/0.png"))
        spec = WorldSpec(seed=31, psi_local=world["psi_local"])
        np.testing.assert_array_equal(
            served[world["psi_local"]], render_region(served_world(tiny_generator, spec), 0, 0, 256, 256)
        )
    assert np.abs(served[1.0].astype(int) - served[DEFAULT_PSI_LOCAL]).mean() > 1  # it changes the picture


def test_a_world_record_stored_before_psi_local_loads_untruncated() -> None:
    record = WorldRecord.create("m" * 16, 12, 0.7, psi_local=1.0)
    stored_then = record.to_json().replace(', "psi_local": 1.0', "")
    assert "psi_local" not in stored_then
    loaded = WorldRecord.from_json(stored_then)
    assert loaded == record and loaded.spec.psi_local == 1.0


def test_native_tiles_stitch_into_render_region(client: httpx.Client, tiny_generator: Generator) -> None:
    seed, psi = 77, 0.6
    world = new_world(client, seed, psi)
    # Tiles (-1..0, -1..0) meet at the world origin: the seam crossing every axis sign change.
    quarters = [[pixels(client.get(f"/worlds/{world}/tiles/5/{x}/{y}.png")) for x in (-1, 0)] for y in (-1, 0)]
    stitched = np.concatenate([np.concatenate(row, axis=1) for row in quarters], axis=0)
    expected = render_region(served_world(tiny_generator, WorldSpec(seed=seed, psi=psi)), -256, -256, 512, 512)
    np.testing.assert_array_equal(stitched, expected)


def area_downsample(image: np.ndarray) -> np.ndarray:
    """Independent reference: mean of each 2x2 block, rounded half up."""
    h, w, _ = image.shape
    blocks = image.astype(np.float64).reshape(h // 2, 2, w // 2, 2, 3)
    return np.floor(blocks.mean(axis=(1, 3)) + 0.5).astype(np.uint8)


def test_zoom_out_tiles_are_area_downsamples_of_their_children(client: httpx.Client) -> None:
    world = new_world(client, 78)
    for z, x, y in ((4, -1, 2), (3, 0, -1)):
        parent = pixels(client.get(f"/worlds/{world}/tiles/{z}/{x}/{y}.png"))
        children = [
            [pixels(client.get(f"/worlds/{world}/tiles/{z + 1}/{2 * x + dx}/{2 * y + dy}.png")) for dx in (0, 1)]
            for dy in (0, 1)
        ]
        mosaic = np.concatenate([np.concatenate(row, axis=1) for row in children], axis=0)
        np.testing.assert_array_equal(parent, area_downsample(mosaic))


def test_zoom_out_reuses_cached_children(client: httpx.Client) -> None:
    world = new_world(client, 79)
    for dx in (0, 1):
        for dy in (0, 1):
            client.get(f"/worlds/{world}/tiles/5/{dx}/{dy}.png")
    before_native = metric(client, "tile_renders_total", kind="native")
    assert client.get(f"/worlds/{world}/tiles/4/0/0.png").headers["x-cache"] == "MISS"
    assert metric(client, "tile_renders_total", kind="native") == before_native


def test_world_resource_and_tilejson(client: httpx.Client, live_server: LiveServer) -> None:
    world = client.post("/worlds", json={"seed": 5, "psi": 0.5}).json()
    assert client.post("/worlds", json={"seed": 5, "psi": 0.5}).json()["id"] == world["id"]  # content-addressed
    assert client.get(f"/worlds/{world['id']}").json() == world
    tilejson = client.get(f"/worlds/{world['id']}/tilejson.json").json()
    assert tilejson["tilejson"] == "3.0.0"
    assert tilejson["tiles"] == [f"{live_server.base_url}/worlds/{world['id']}/tiles/{{z}}/{{x}}/{{y}}.png"]
    assert (tilejson["minzoom"], tilejson["maxzoom"], tilejson["nativeZoom"]) == (2, 8, 5)  # 6-8 upscaled
    assert tilejson["tileSize"] == 256 and tilejson["crs"] == "simple"
    default = client.get("/tilejson.json").json()
    assert default["world"]["seed"] == 0 and default["world"]["psi"] == DEFAULT_PSI


def test_default_world_alias_serves_the_default_world(client: httpx.Client) -> None:
    default_id = client.get("/tilejson.json").json()["world"]["id"]
    alias = client.get("/tiles/5/2/3.png")
    versioned = client.get(f"/worlds/{default_id}/tiles/5/2/3.png")
    assert alias.content == versioned.content
    assert "immutable" not in alias.headers["cache-control"]  # the alias URL does not name the model


def test_health_metrics_docs_and_demo_page(client: httpx.Client) -> None:
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["redis"]["status"] == "up" and health["model"]["status"] == "loaded"
    client.get("/tiles/5/0/0.png")
    text = client.get("/metrics").text
    for name in ("tiles_served_total", "tile_cache_lookups_total", "tile_render_seconds_bucket", "tile_renders_total"):
        assert name in text
    assert client.get("/docs").status_code == 200
    assert "/worlds" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and 'src="vendor/leaflet/leaflet.js"' in page.text
    assert client.get("/vendor/leaflet/leaflet.js").status_code == 200
    assert client.get("/vendor/leaflet/images/marker-icon.png").status_code == 200
    assert client.get("/static/app.js").status_code == 200


def test_every_get_route_answers_head_and_405_lists_every_allowed_method(client: httpx.Client) -> None:
    """HEAD answered on tiles only (404/405 elsewhere); link checkers and CDNs send it to any URL."""
    world = new_world(client, 31)
    for path in (
        "/",
        "/healthz",
        "/tilejson.json",
        f"/worlds/{world}",
        f"/worlds/{world}/tilejson.json",
        "/tiles/5/0/0.png",
        f"/worlds/{world}/tiles/5/0/0.png",
        "/openapi.json",
        "/vendor/leaflet/leaflet.js",
    ):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"", path
        assert head.headers["content-type"] == get.headers["content-type"], path
        if "etag" in get.headers:
            assert head.headers["etag"] == get.headers["etag"], path
        if path != "/healthz":  # /healthz's body holds live numbers; the others are byte-stable
            assert head.headers["content-length"] == str(len(get.content)), path
    assert client.head("/worlds/ffffffffffffffff").status_code == 404  # HEAD follows GET's errors too

    not_allowed = client.put("/tilejson.json")
    assert not_allowed.status_code == 405 and not_allowed.headers["allow"] == "GET, HEAD"
    assert client.get("/outpaint").headers["allow"] == "POST"
    assert client.delete(f"/worlds/{world}").headers["allow"] == "GET, HEAD"
    assert client.put("/worlds").headers["allow"] == "POST"


def test_behind_a_tls_proxy_under_a_prefix_urls_are_https_and_prefixed(redis_url, tiny_model) -> None:
    """TileJSON listed http:// tiles behind a TLS-terminating proxy, and absolute paths broke a prefix mount."""
    from tests.service.conftest import LiveServer, service_settings

    settings = service_settings(redis_url, tiny_model, forwarded_allow_ips="127.0.0.1", root_path="/maps")
    with LiveServer(settings) as server, httpx.Client(base_url=server.base_url, timeout=60) as http:
        proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9", "Host": "tiles.example"}
        tilejson = http.get("/tilejson.json", headers=proxied).json()
        assert tilejson["tiles"][0].startswith("https://tiles.example/maps/worlds/")
        created = http.post("/worlds", json={"seed": 5}, headers=proxied)
        assert created.headers["location"].startswith("/maps/worlds/")
        assert created.json()["tilejson"].startswith("https://tiles.example/maps/")
        # The demo page and its script use relative URLs only, so they follow the prefix.
        page, script = http.get("/").text, http.get("/static/app.js").text
        assert 'src="/' not in page and 'href="/' not in page
        assert 'fetchJSON("/' not in script and "fetchJSON(`/" not in script
    untrusted = service_settings(redis_url, tiny_model, forwarded_allow_ips="192.0.2.1")
    with LiveServer(untrusted) as server, httpx.Client(base_url=server.base_url, timeout=60) as http:
        forged = http.get("/tilejson.json", headers={"X-Forwarded-Proto": "https"}).json()
        assert forged["tiles"][0].startswith("http://127.0.0.1")  # a peer that is not a trusted proxy cannot


def test_zoomed_in_tiles_are_upscaled_on_the_server_without_seams(client: httpx.Client) -> None:
    """Above the native zoom Leaflet scaled each tile alone, so a line showed at every tile edge (x = 256 at zoom 8).
    The server upscales each tile with its neighbourhood: neighbours stitch exactly as one upscale of their union."""
    from PIL import Image

    from tiles.imaging import UPSCALE_MARGIN_PX, upscale_crop

    tilejson = client.get("/tilejson.json").json()
    assert tilejson["maxzoom"] == tilejson["maxDisplayZoom"] == 8 and tilejson["nativeZoom"] == 5
    # Zoom 8 tiles 7 and 8 meet at native x = 256, the edge between native tiles 0 and 1.
    left_tile, right_tile = (
        np.asarray(Image.open(io.BytesIO(client.get(f"/tiles/8/{x}/3.png").content)).convert("RGB")) for x in (7, 8)
    )
    stitched = np.concatenate([left_tile, right_tile], axis=1)
    native = np.concatenate(
        [np.asarray(Image.open(io.BytesIO(client.get(f"/tiles/5/{x}/0.png").content)).convert("RGB")) for x in (0, 1)],
        axis=1,
    )
    m = UPSCALE_MARGIN_PX
    region = native[96 - m : 128 + m, 224 - m : 288 + m]  # native px x 224..288, y 96..128, with context
    expected = upscale_crop(region, 8, (m * 8, m * 8, 512, 256))
    assert np.array_equal(stitched, expected)
    step = np.abs(stitched[:, 256].astype(int) - stitched[:, 255].astype(int)).mean()
    inside = np.abs(stitched[:, 128].astype(int) - stitched[:, 127].astype(int)).mean()
    assert step < 3 * inside + 2  # no line at the seam
    assert client.get("/tiles/9/0/0.png").status_code == 404  # past the last zoom level


def test_a_biome_world_by_url_serves_its_regions_and_refuses_bad_biomes(
    client: httpx.Client, tiny_generator: Generator
) -> None:
    from infinitygan.biomes import Biomes, BiomeStyle

    body = {"seed": 31, "psi": 0.7, "biomes": {"region_px": 512, "transition_px": 128, "styles": [{"seed": 5}]}}
    created = client.post("/worlds", json=body)
    assert created.status_code == 201, created.text
    world = created.json()
    assert world["biomes"] == {"region_px": 512, "transition_px": 128, "styles": [{"seed": 5, "psi": 0.8}]}
    assert client.post("/worlds", json=body).json()["id"] == world["id"]  # content-addressed, biomes included
    assert client.post("/worlds", json={"seed": 31, "psi": 0.7}).json()["id"] != world["id"]
    assert client.get(f"/worlds/{world['id']}").json() == world
    assert "biomes" in client.get(f"/worlds/{world['id']}/tilejson.json").json()["description"]

    biomes = Biomes(512, 128, (BiomeStyle(5, 0.8),))
    boundary = int(biomes.boundary(31, np.array([2]))[0])
    tx = boundary // 256
    served = pixels(client.get(f"/worlds/{world['id']}/tiles/5/{tx}/-1.png"))
    biome_world = served_world(tiny_generator, WorldSpec(seed=31, psi=0.7, biomes=biomes))
    expected = render_region(biome_world, 256 * tx, -256, 256, 256)
    np.testing.assert_array_equal(served, expected)

    for bad in (
        {"region_px": 512, "transition_px": 300},
        {"region_px": 100},
        {"region_px": 512, "styles": [{"seed": i} for i in range(65)]},
        {"region_px": 512, "unknown": 1},
        {"region_px": "wide"},
    ):
        refused = client.post("/worlds", json={"seed": 1, "biomes": bad})
        assert refused.status_code == 422, (bad, refused.text)
        assert "detail" in refused.json()

"""Malformed and extreme requests get a 4xx JSON answer with a short cache lifetime, never a 500."""

from __future__ import annotations

import httpx
import pytest

LIMIT_NATIVE = 2**40 // 256  # first tile index past the coordinate limit at native zoom 5
LIMIT_Z2 = 2**40 // (256 * 8)

BAD_PATHS: list[tuple[str, int | None]] = [
    ("/tiles/a/0/0.png", 422),
    ("/tiles/5/x/0.png", 422),
    ("/tiles/5/0/y.png", 422),
    ("/tiles/5.0/0/0.png", 422),
    ("/tiles/5/0.5/0.png", 422),
    ("/tiles/5/1e3/0.png", 422),
    ("/tiles/5/0x10/0.png", 422),
    ("/tiles/5/--1/0.png", 422),
    ("/tiles/5/" + "9" * 5000 + "/0.png", None),
    ("/tiles/" + "9" * 40 + "/0/0.png", 404),
    ("/tiles/-1/0/0.png", 404),
    ("/tiles/1/0/0.png", 404),
    ("/tiles/9/0/0.png", 404),  # past native zoom 5 + 3 upscaled levels
    ("/tiles/30/0/0.png", 404),
    (f"/tiles/5/{LIMIT_NATIVE}/0.png", 400),
    (f"/tiles/5/0/{LIMIT_NATIVE}.png", 400),
    (f"/tiles/5/{-LIMIT_NATIVE - 1}/0.png", 400),
    (f"/tiles/2/{LIMIT_Z2}/0.png", 400),
    (f"/tiles/2/0/{-LIMIT_Z2 - 1}.png", 400),
    ("/tiles/5/" + "9" * 30 + "/0.png", 400),
    ("/tiles/5/-" + "9" * 30 + "/0.png", 400),
    ("/tiles/5/0/0.jpg", 404),
    ("/tiles/5/0/0.PNG", 404),
    ("/tiles/5/0/0", 404),
    ("/tiles/5/0/0.png.png", 422),
    ("/tiles/5/0.png", 404),
    ("/tiles/5/0/0/0.png", 404),
    ("/tiles/5/%00/0.png", 422),
    ("/tiles/5/%20/0.png", 422),
    ("/worlds/unknown/tiles/5/0/0.png", 404),
    ("/worlds/0123456789abcdef/tiles/5/0/0.png", 404),
    ("/worlds/0123456789ABCDEF/tilejson.json", 404),
    ("/worlds/" + "f" * 10_000 + "/tiles/5/0/0.png", 404),
    ("/worlds/%00/tilejson.json", 404),
    ("/worlds/0123456789abcdef", 404),
    ("/worlds/unknown/tiles/a/0/0.png", None),
    ("/worlds//tiles/5/0/0.png", 404),
    ("/nope", 404),
]


@pytest.mark.parametrize(("path", "expected"), BAD_PATHS, ids=[p[:60] for p, _ in BAD_PATHS])
def test_bad_paths_are_client_errors(client: httpx.Client, path: str, expected: int | None) -> None:
    response = client.get(path)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if expected is not None:
        assert response.status_code == expected, response.text[:300]
    assert "detail" in response.json()
    assert response.headers["cache-control"].startswith("public, max-age=")


BAD_BODIES: list[bytes] = [
    b"",
    b"not json",
    b"[]",
    b"{}",
    b'{"seed": null}',
    b'{"seed": -1}',
    b'{"seed": 9223372036854775808}',
    b'{"seed": "5"}',
    b'{"seed": 1.5}',
    b'{"seed": true}',
    b'{"seed": 1, "psi": "0.5"}',
    b'{"seed": 1, "psi": NaN}',
    b'{"seed": 1, "psi": Infinity}',
    b'{"seed": 1, "psi": 1e308}',
    b'{"seed": 1, "psi": 2.5}',
    b'{"seed": 1, "psi": -3}',
    b'{"seed": 1, "psi_local": -0.1}',
    b'{"seed": 1, "psi_local": 2.5}',
    b'{"seed": 1, "psi_local": "0.5"}',
    b'{"seed": 1, "psi_local": NaN}',
    b'{"seed": 1, "psi_local": null}',
    b'{"seed": 1, "colour": "green"}',
    b'{"seed": ' + b"9" * 5000 + b"}",
    b'{"seed": [1]}',
    b'{"seed": {"x": 1}}',
    b"\xff\xfe garbage",
    b'{"seed": 1' + b", " * 10 + b"}",
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=[repr(b[:40]) for b in BAD_BODIES])
def test_bad_world_bodies_are_client_errors(client: httpx.Client, body: bytes) -> None:
    response = client.post("/worlds", content=body, headers={"Content-Type": "application/json"})
    # 422 for well-formed JSON that fails validation; FastAPI answers 400 for a body its JSON parser rejects
    # (here: an integer longer than Python's 4300-digit conversion limit).
    assert response.status_code in (400, 422), (response.status_code, response.text[:300])
    assert "detail" in response.json()


def test_wrong_methods_and_content_types_are_client_errors(client: httpx.Client) -> None:
    assert client.get("/worlds").status_code == 405
    assert client.delete("/tiles/5/0/0.png").status_code == 405
    form = client.post("/worlds", content=b"seed=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 422


def test_extreme_but_valid_tiles_render(client: httpx.Client) -> None:
    for path in (
        f"/tiles/5/{LIMIT_NATIVE - 1}/{-LIMIT_NATIVE}.png",
        f"/tiles/5/{-LIMIT_NATIVE}/{LIMIT_NATIVE - 1}.png",
    ):
        response = client.get(path)
        assert response.status_code == 200, response.text
    seed_max = client.post("/worlds", json={"seed": 2**63 - 1, "psi": -2})
    assert seed_max.status_code == 201, seed_max.text
    assert seed_max.json()["psi"] == -2.0  # an integer psi is a number too

"""Bad uploads to POST /outpaint: each gets the right 4xx with a JSON detail, and nothing of it is stored."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from PIL import Image

from tests.service.conftest import LiveServer, service_settings
from tests.service.outpaint_helpers import PHOTO, submit
from tiles.embedded_redis import EmbeddedRedis

MAX_BYTES = 100_000
MAX_PIXELS = 1_000_000


@pytest.fixture(scope="module")
def upload_redis() -> Iterator[EmbeddedRedis]:
    # A Redis of its own: the suite's shared one has other servers' embedded workers taking jobs off its queue.
    with EmbeddedRedis(maxmemory="64mb") as server:
        yield server


@pytest.fixture(scope="module")
def upload_server(upload_redis: EmbeddedRedis, tiny_model: Path) -> Iterator[LiveServer]:
    # No worker: accepted jobs stay queued, so what is stored is exactly what the API wrote.
    limits = {"outpaint_max_upload_bytes": MAX_BYTES, "outpaint_max_pixels": MAX_PIXELS}
    settings = service_settings(upload_redis.url, tiny_model, outpaint_worker=False, **limits)
    with LiveServer(settings) as server:
        yield server


@pytest.fixture
def upload_store(upload_redis: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(upload_redis.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def uploads(upload_server: LiveServer, upload_store: redis.Redis) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upload_server.base_url, timeout=60) as http:
        yield http


def encoded(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes whose header claims width x height pixels: a decompression bomb's first move."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")


def assert_rejected(response: httpx.Response, status: int, words: str = "") -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert detail and words in str(detail), detail


def multipart(image: bytes, boundary: str = "b0undary") -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )


def test_bad_uploads_get_the_right_4xx_and_leave_nothing_behind(
    uploads: httpx.Client, upload_store: redis.Redis
) -> None:
    photo = PHOTO.read_bytes()
    small = Image.new("RGB", (64, 48), (40, 90, 160))

    # Too many bytes: refused from Content-Length, and while streaming when there is none (chunked).
    assert_rejected(submit(uploads, b"\xff" * (MAX_BYTES * 3)), 413, "bytes")
    assert_rejected(submit(uploads, b"\xff" * (MAX_BYTES + 1)), 413, "bytes")
    body = multipart(b"\xff" * (MAX_BYTES * 2))
    chunked = uploads.post(
        "/outpaint",
        content=(body[i : i + 8192] for i in range(0, len(body), 8192)),
        headers={"content-type": "multipart/form-data; boundary=b0undary"},
    )
    assert_rejected(chunked, 413, "bytes")

    # Too many pixels, seen in the header before decoding: a 100000 x 100000 bomb in a few hundred bytes, and an
    # honest but too large image.
    bomb = png_claiming(100_000, 100_000)
    assert len(bomb) < 1000
    assert_rejected(submit(uploads, bomb, "bomb.png"), 413, "pixels")
    assert_rejected(submit(uploads, png_claiming(1100, 1000), "big.png"), 413, "pixels")
    tall = encoded(Image.new("L", (2000, 600)), "PNG", optimize=True)
    assert len(tall) < MAX_BYTES
    assert_rejected(submit(uploads, tall, "tall.png"), 413, "2000x600")

    # Extreme aspect ratios: a 421-byte 10000x10 PNG became a 256,000 px wide footprint (36 s and 3.3 GB an
    # inversion step); refused from the header with 422, both ways round.
    strip = encoded(Image.new("RGB", (10000, 10), (90, 120, 200)), "PNG", optimize=True)
    assert len(strip) < 1000
    assert_rejected(submit(uploads, strip, "strip.png"), 422, "10000x10")
    assert_rejected(submit(uploads, encoded(Image.new("L", (8, 2000)), "PNG"), "pole.png"), 422, "aspect")

    # Not an image, or an image in a format we do not take.
    assert_rejected(submit(uploads, b"just some text, not a photo", "notes.txt"), 415, "PNG, JPEG or WebP")
    assert_rejected(submit(uploads, encoded(small, "GIF"), "anim.gif"), 415)
    assert_rejected(submit(uploads, encoded(small, "BMP"), "old.bmp"), 415)
    assert_rejected(uploads.post("/outpaint", json={"image": "aGVsbG8="}), 415, "multipart")

    # Corrupt: a truncated JPEG, a PNG whose pixel data is garbage; and empty.
    assert_rejected(submit(uploads, photo[: len(photo) // 2]), 400, "decoded")
    broken = bytearray(encoded(small, "PNG"))
    idat = broken.index(b"IDAT")
    broken[idat + 4 : idat + 40] = b"\x00" * 36
    assert_rejected(submit(uploads, bytes(broken), "broken.png"), 400)
    assert_rejected(submit(uploads, b"", "empty.jpg"), 400, "empty")
    assert_rejected(
        uploads.post("/outpaint", content=b"--x\r\n garbage", headers={"content-type": "multipart/form-data"}), 400
    )

    # Bad parameters, a missing image.
    for fields in ({"seed": -1}, {"seed": "abc"}, {"seed": 2**63}, {"psi": 3}, {"psi": "nan"}, {"psi": "inf"},
                   {"quality": "ultra"}, {"colour": "blue"}):  # fmt: skip
        assert_rejected(submit(uploads, photo, **fields), 422)
    assert_rejected(uploads.post("/outpaint", data={"seed": "1"}, files={"other": ("x", b"y")}), 422, "image")

    # Nothing was queued or stored for any of them.
    assert upload_store.keys("job*") == [] and upload_store.keys("outpaint:*") == []

    # The three accepted formats are accepted (and stay queued: this server runs no worker).
    for name, data in (("p.png", encoded(small, "PNG")), ("p.webp", encoded(small, "WEBP")), ("p.jpg", photo)):
        response = submit(uploads, data, name)
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "queued"
    assert len(upload_store.keys("job:*")) == 3 and len(upload_store.keys("job-image:*")) == 3

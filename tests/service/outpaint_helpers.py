"""Shared steps of the outpainting tests: submit a photo, wait for its job, stitch served tiles, measure seams."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from infinitygan.anchor import Rect
from tiles.geometry import TILE_SIZE

PHOTO = Path(__file__).resolve().parents[1] / "fixtures" / "picosdeeuropa_341x256.jpg"
NATIVE_ZOOM = 5


def submit(client: httpx.Client, image: bytes, name: str = "photo.jpg", **fields: object) -> httpx.Response:
    return client.post("/outpaint", files={"image": (name, image)}, data={k: str(v) for k, v in fields.items()})


def wait_for_job(client: httpx.Client, job_id: str, timeout_s: float = 240.0) -> dict:
    """The job once it succeeded or failed, through the blocking ?wait=true form of GET /jobs/{id}."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}", params={"wait": "true", "timeout": 20}).json()
        if job["status"] in ("succeeded", "failed"):
            return job
    raise TimeoutError(f"job {job_id} did not finish within {timeout_s} s")


def wait_until(client: httpx.Client, job_id: str, predicate, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if predicate(job):
            return job
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} never reached the awaited state; last {job}")


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def stitch_tiles(client: httpx.Client, world_id: str, area: Rect) -> np.ndarray:
    """World pixels of `area`, from native tiles fetched over HTTP."""
    out = np.empty((area.height, area.width, 3), dtype=np.uint8)
    for ty in range(area.y // TILE_SIZE, (area.y + area.height - 1) // TILE_SIZE + 1):
        for tx in range(area.x // TILE_SIZE, (area.x + area.width - 1) // TILE_SIZE + 1):
            response = client.get(f"/worlds/{world_id}/tiles/{NATIVE_ZOOM}/{tx}/{ty}.png")
            assert response.status_code == 200, response.text
            tile = decode(response.content)
            left, top = tx * TILE_SIZE, ty * TILE_SIZE
            x0, x1 = max(area.x, left), min(area.x + area.width, left + TILE_SIZE)
            y0, y1 = max(area.y, top), min(area.y + area.height, top + TILE_SIZE)
            out[y0 - area.y : y1 - area.y, x0 - area.x : x1 - area.x] = tile[y0 - top : y1 - top, x0 - left : x1 - left]
    return out


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def border_seam_score(image: np.ndarray, rect: Rect, band_px: int = 24) -> float:
    """Mean |difference| across the pixel pairs straddling `rect`'s border (rect in image coordinates), over the mean
    |difference| of all other neighbouring pairs within band_px of that border. ~1 where the border is invisible."""
    pixels = image.astype(np.float64)
    dx = np.abs(pixels[:, 1:] - pixels[:, :-1]).mean(axis=2)  # dx[r, c]: pair (c, c + 1)
    dy = np.abs(pixels[1:] - pixels[:-1]).mean(axis=2)  # dy[r, c]: pair (r, r + 1)
    x0, y0, x1, y1 = rect.x, rect.y, rect.x + rect.width, rect.y + rect.height
    seam_x = np.zeros(dx.shape, dtype=bool)
    seam_x[y0:y1, [x0 - 1, x1 - 1]] = True
    seam_y = np.zeros(dy.shape, dtype=bool)
    seam_y[[y0 - 1, y1 - 1], x0:x1] = True
    near = np.zeros(image.shape[:2], dtype=bool)
    near[max(0, y0 - band_px) : y1 + band_px, max(0, x0 - band_px) : x1 + band_px] = True
    near[y0 + band_px : y1 - band_px, x0 + band_px : x1 - band_px] = False
    seam = np.concatenate([dx[seam_x], dy[seam_y]])
    interior = np.concatenate([dx[near[:, :-1] & ~seam_x], dy[near[:-1] & ~seam_y]])
    return float(seam.mean() / max(interior.mean(), 1e-12))

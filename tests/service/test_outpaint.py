"""POST /outpaint end to end with the real landscape photo: a real queue on a real Redis, the embedded worker
inverting with the (tiny) model, and tiles fetched over HTTP from a real uvicorn server."""

from __future__ import annotations

import io
import json
import math

import httpx
import numpy as np
import redis
from PIL import Image

from infinitygan.anchor import Anchor, Rect
from infinitygan.invert import estimate_horizon, place_photo
from infinitygan.world import DEFAULT_PSI_LOCAL
from tests.service.conftest import LiveServer
from tests.service.outpaint_helpers import (
    PHOTO,
    border_seam_score,
    decode,
    psnr_uint8,
    stitch_tiles,
    submit,
    wait_for_job,
)
from tiles.anchors import anchor_key
from tiles.geometry import TILE_SIZE
from tiles.preview import preview_rect

SCENE_HEIGHT = 256  # the tiny test model carries no scene_height metadata: the service's default
SEAM_MARGIN_PX = 32


def test_outpainted_world_shows_the_photo_and_meets_the_base_world(
    live_server: LiveServer, client: httpx.Client, redis_client: redis.Redis, tiny_generator
) -> None:
    photo_bytes = PHOTO.read_bytes()
    # Pinned into the world (a finite reach) at a given horizon; the defaults are tested below.
    submitted = submit(client, photo_bytes, seed=7, psi=0.8, quality="fast", reach=192, horizon=0.5)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    assert submitted.headers["location"] == f"/jobs/{job_id}"
    assert submitted.json()["status"] in ("queued", "running") and submitted.json()["steps"] == 3
    assert (submitted.json()["reach"], submitted.json()["horizon"]) == (192, 0.5)

    job = wait_for_job(client, job_id)
    assert job["status"] == "succeeded", job
    assert job["progress"] == 100 and job["attempts"] == 1
    result = job["result"]
    fp = Rect(**result["footprint"])
    expected_photo, expected_fp = place_photo(np.asarray(Image.open(PHOTO).convert("RGB")), SCENE_HEIGHT)
    assert fp == expected_fp
    world_id = result["world_id"]
    assert result["tilejson"].endswith(f"/worlds/{world_id}/tilejson.json")
    world = client.get(f"/worlds/{world_id}").json()
    assert world["footprint"] == result["footprint"] and (world["seed"], world["psi"]) == (7, 0.8)
    assert client.get(result["tilejson"]).json()["world"]["id"] == world_id

    # Content-addressed: the same photo and parameters are the same job; other parameters are another job.
    again = submit(client, photo_bytes, seed=7, psi=0.8, quality="fast", reach=192, horizon=0.5)
    assert again.status_code == 202 and again.json()["id"] == job_id and again.json()["status"] == "succeeded"
    assert submit(client, photo_bytes, seed=8, reach=192, horizon=0.5).json()["id"] != job_id
    assert submit(client, photo_bytes, seed=7, psi=0.8, reach=192, horizon=0.4).json()["id"] != job_id

    anchor = Anchor.from_bytes(redis_client.get(anchor_key(job_id)))
    assert np.array_equal(anchor.photo, expected_photo)

    # Inside the footprint the served tiles are the photo (exactly, where its weight is full: all but the band over
    # which it fades into the world).
    area = fp.expanded(SEAM_MARGIN_PX)
    anchored = stitch_tiles(client, world_id, area)
    inside = anchored[SEAM_MARGIN_PX : SEAM_MARGIN_PX + fp.height, SEAM_MARGIN_PX : SEAM_MARGIN_PX + fp.width]
    full = anchor.weight == 1.0
    whole_psnr = psnr_uint8(inside, expected_photo)
    print(
        f"\nreconstruction PSNR (generator alone, before pasting): {result['reconstruction_psnr']:.2f} dB;"
        f" photo shown as it is over {full.mean():.0%} of the footprint; PSNR over all of it: {whole_psnr:.2f} dB"
    )
    assert full.mean() > 0.3 and np.array_equal(inside[full], expected_photo[full])
    assert math.isfinite(result["reconstruction_psnr"]) and result["reconstruction_psnr"] > 5.0

    # Across the footprint's border: no seam beyond what the model shows anywhere on its own world.
    base_id = client.post("/worlds", json={"seed": 7, "psi": 0.8, "biomes": None}).json()["id"]  # as the photo world
    base = stitch_tiles(client, base_id, area)
    inner = Rect(SEAM_MARGIN_PX, SEAM_MARGIN_PX, fp.width, fp.height)
    anchored_seam, base_seam = border_seam_score(anchored, inner), border_seam_score(base, inner)
    print(f"seam score across the footprint border: anchored {anchored_seam:.3f}, base world {base_seam:.3f}")
    assert anchored_seam < max(2.0, 2.0 * base_seam)

    # Beyond the anchor's reach every tile is the base world's, byte for byte; near the photo they differ.
    reach = anchor.reach(tiny_generator.geometry)
    right = -(-(reach.x + reach.width) // TILE_SIZE)
    left = reach.x // TILE_SIZE - 1
    below = -(-(reach.y + reach.height) // TILE_SIZE)
    for tx, ty in ((right, 0), (left, -1), (0, below), (right + 3, below + 2)):
        ours = client.get(f"/worlds/{world_id}/tiles/5/{tx}/{ty}.png")
        theirs = client.get(f"/worlds/{base_id}/tiles/5/{tx}/{ty}.png")
        assert ours.status_code == theirs.status_code == 200
        assert ours.content == theirs.content, (tx, ty)
    assert (
        client.get(f"/worlds/{world_id}/tiles/5/0/0.png").content
        != client.get(f"/worlds/{base_id}/tiles/5/0/0.png").content
    )

    # The preview: the photo in the middle, generated landscape around it.
    preview = client.get(result["preview"])
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
    pixels, rect = decode(preview.content), preview_rect((fp.x, fp.y, fp.width, fp.height))
    assert pixels.shape == (rect.height, rect.width, 3)
    top, lft = fp.y - rect.y, fp.x - rect.x
    assert np.array_equal(pixels[top : top + fp.height, lft : lft + fp.width], inside)
    assert client.get(result["preview"]).content == preview.content
    plain = client.get(f"/worlds/{base_id}/preview.png")
    assert plain.status_code == 404 and "no photo" in plain.json()["detail"]


def test_by_default_the_horizon_is_estimated_transparency_is_filled_and_the_look_carries_on(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    """An RGBA upload whose sky is transparent (and black underneath), with no reach or horizon given."""
    rgb = np.asarray(Image.open(PHOTO).convert("RGB"))
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, dtype=np.uint8)])
    sky_rows = rgb.shape[0] // 3
    rgba[:sky_rows] = 0  # transparent black
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG")
    job = wait_for_job(client, submit(client, buffer.getvalue(), "sky.png", seed=9).json()["id"])
    assert job["status"] == "succeeded", job
    assert job["reach"] is None and job["horizon"] is None
    result = job["result"]
    assert result["horizon"] == estimate_horizon(rgb, rgba[..., 3] / 255.0)[0]
    fp = Rect(**result["footprint"])
    assert fp.y == -round(result["horizon"] * SCENE_HEIGHT)

    anchor = Anchor.from_bytes(redis_client.get(anchor_key(job["id"])))
    served = stitch_tiles(client, result["world_id"], fp)
    sky = slice(0, fp.height // 3 - 2)
    assert (anchor.weight[sky] == 0).all()  # the world fills the transparent sky ...
    assert 15 < served[sky].mean() < 240 and served[sky].std() > 2  # ... with no black, white or flat slab

    # The photo's look governs the whole world: far away the tiles are not the base world's.
    base_id = client.post("/worlds", json={"seed": 9, "psi": 0.8, "biomes": None}).json()["id"]
    far = (f"/worlds/{result['world_id']}/tiles/5/40/0.png", f"/worlds/{base_id}/tiles/5/40/0.png")
    assert client.get(far[0]).content != client.get(far[1]).content


def test_unknown_jobs_are_404(client: httpx.Client) -> None:
    for job_id in ("0" * 16, "not-a-job", "ABCDEF0123456789"):
        response = client.get(f"/jobs/{job_id}")
        assert response.status_code == 404 and "unknown job" in response.json()["detail"]
    assert client.get("/jobs/" + "0" * 16, params={"wait": "true", "timeout": 0}).status_code == 422
    assert client.get("/jobs/" + "0" * 16, params={"wait": "true", "timeout": 10_000}).status_code == 422


def test_a_photo_can_sit_in_a_biome_world(client: httpx.Client, tiny_generator) -> None:
    """`biomes` (JSON) with a reach: the job's world has both; far tiles are the biome world's; no reach -> 422."""
    photo_bytes = PHOTO.read_bytes()
    biomes = {"region_px": 1024, "transition_px": 128, "styles": []}
    submitted = submit(client, photo_bytes, seed=7, psi=0.8, reach=128, horizon=0.5, biomes=json.dumps(biomes))
    assert submitted.status_code == 202, submitted.text
    assert submitted.json()["biomes"] == biomes
    plain = submit(client, photo_bytes, seed=7, psi=0.8, reach=128, horizon=0.5).json()["id"]
    assert plain != submitted.json()["id"]  # the biomes are part of the job's (and world's) content address
    job = wait_for_job(client, submitted.json()["id"])
    world = client.get(f"/worlds/{job['result']['world_id']}").json()
    assert world["biomes"] == biomes and world["footprint"] == job["result"]["footprint"]
    biome_world = client.post("/worlds", json={"seed": 7, "psi": 0.8, "biomes": biomes}).json()["id"]
    far = "/tiles/5/12/1.png"  # 3000 px right of the photo, far beyond its reach
    assert client.get(f"/worlds/{world['id']}{far}").content == client.get(f"/worlds/{biome_world}{far}").content

    no_reach, not_json, too_small = json.dumps(biomes), "{not json", '{"region_px": 1}'
    bad = ({"biomes": no_reach}, {"reach": 128, "biomes": not_json}, {"reach": 128, "biomes": too_small})
    for fields in bad:
        refused = submit(client, photo_bytes, seed=7, **fields)
        assert refused.status_code == 422, fields
    assert "reach" in submit(client, photo_bytes, biomes=json.dumps(biomes)).json()["detail"][0]["msg"]


def test_job_ids_change_with_the_inversion_algorithm_and_its_configuration(monkeypatch) -> None:
    """A stored job of an older fit is not returned for a new submission of the same photo."""
    import dataclasses

    from tiles import jobs

    request = jobs.JobRequest(seed=1, psi=0.8, quality="fast", steps=40)
    before = jobs.job_id_for(b"photo", request, "0123456789abcdef")
    assert jobs.job_id_for(b"photo", request, "0123456789abcdef") == before  # a content address: stable
    monkeypatch.setattr(jobs, "INVERSION_VERSION", jobs.INVERSION_VERSION + 1)
    assert jobs.job_id_for(b"photo", request, "0123456789abcdef") != before
    monkeypatch.undo()
    changed = {**jobs.QUALITY, "fast": dataclasses.replace(jobs.QUALITY["fast"], noise_ramp_px=16)}
    monkeypatch.setattr(jobs, "QUALITY", changed)
    assert jobs.job_id_for(b"photo", request, "0123456789abcdef") != before


def test_a_job_stored_before_psi_local_reads_back_untruncated_with_its_id() -> None:
    from tiles import jobs

    request = jobs.JobRequest(seed=1, psi=0.8, quality="fast", steps=40, psi_local=1.0)
    fields = request.fields()
    del fields["psi_local"]  # as a job was stored before psi_local existed
    assert jobs.JobRequest.from_fields(fields) == request
    calm = jobs.JobRequest(seed=1, psi=0.8, quality="fast", steps=40)
    assert calm.psi_local == DEFAULT_PSI_LOCAL and jobs.JobRequest.from_fields(calm.fields()) == calm
    untruncated_id = jobs.job_id_for(b"photo", request, "0123456789abcdef")
    assert jobs.job_id_for(b"photo", calm, "0123456789abcdef") != untruncated_id

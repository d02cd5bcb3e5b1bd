"""Outpainting: upload a photo, follow its job, and get the world that continues the photo on every side."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from app.dependencies import ResourcesDep
from app.schemas import BiomesBody, Footprint, Job, JobResultBody, OutpaintParams, error_responses
from app.uploads import read_outpaint_form
from infinitygan.invert import QUALITY
from tiles.jobs import TERMINAL, JobRecord, JobRequest
from tiles.outpaint import check_job_memory
from tiles.uploads import decode_photo

router = APIRouter(tags=["outpaint"])

MAX_WAIT_S = 300.0
WAIT_POLL_S = 0.25
NO_STORE = "no-store"


def _upload_body() -> dict:
    """The multipart body of POST /outpaint for the OpenAPI document: the image plus OutpaintParams' fields, with the
    model's real bounds (the form is parsed by hand, with a streamed size cap, so FastAPI cannot describe it)."""
    fields = OutpaintParams.model_json_schema()
    properties = {"image": {"type": "string", "format": "binary", "description": "PNG, JPEG or WebP photo"}}
    properties.update(fields["properties"])
    schema = {"type": "object", "required": ["image"], "properties": properties, "additionalProperties": False}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


UPLOAD_BODY = _upload_body()


def job_body(request: Request, record: JobRecord) -> Job:
    result = None
    if record.status == "succeeded" and record.result is not None:
        base = str(request.base_url).rstrip("/")
        world_id = record.result.world_id
        x, y, width, height = record.result.footprint
        result = JobResultBody(
            world_id=world_id,
            footprint=Footprint(x=x, y=y, width=width, height=height),
            tilejson=f"{base}/worlds/{world_id}/tilejson.json",
            preview=f"{base}/worlds/{world_id}/preview.png",
            reconstruction_psnr=record.result.reconstruction_psnr,
            seconds=record.result.seconds,
            horizon=record.result.horizon,
        )
    req = record.request
    return Job(
        id=record.id,
        status=record.status,
        progress=record.progress,
        seed=req.seed,
        psi=req.psi,
        psi_local=req.psi_local,
        quality=req.quality,
        steps=req.steps,
        reach=req.reach,
        horizon=req.horizon,
        biomes=BiomesBody.model_validate(req.biomes.describe()) if req.biomes is not None else None,
        attempts=record.attempts,
        created_at=record.created_at,
        updated_at=record.updated_at,
        error=record.error,
        result=result,
    )


@router.post(
    "/outpaint",
    status_code=202,
    response_model=Job,
    openapi_extra=UPLOAD_BODY,
    responses=error_responses(400, 413, 415, 422, 503),
)
async def outpaint(request: Request, response: Response, resources: ResourcesDep) -> Job:
    """Queue the outpainting of a photo (multipart field `image`; optional `seed`, `psi`, `psi_local`, `quality`,
    `reach`, `horizon`, `biomes`). Transparent pixels (PNG or WebP alpha, a palette's transparent index) are left for
    the world to fill. The same photo and parameters give the same job and world. Follow the job at the Location
    header."""
    settings = resources.settings
    image, params = await read_outpaint_form(request, settings.outpaint_max_upload_bytes)
    # A full decode now, so a bad upload is refused here and nothing of it is ever stored.
    photo = await asyncio.to_thread(
        decode_photo,
        image,
        max_bytes=settings.outpaint_max_upload_bytes,
        max_pixels=settings.outpaint_max_pixels,
        max_aspect=settings.outpaint_max_aspect,
    )
    renderer = resources.tiles.renderer
    check_job_memory(renderer.generator, photo.shape, renderer.scene_height, settings.outpaint_max_job_memory_mb)
    steps = settings.outpaint_steps or QUALITY[params.quality].steps
    biomes = params.biomes.to_biomes() if params.biomes is not None else None
    request_ = JobRequest(
        params.seed,
        params.psi,
        params.quality,
        steps,
        reach=params.reach,
        horizon=params.horizon,
        biomes=biomes,
        psi_local=params.psi_local,
    )
    record, _ = await resources.jobs.submit(image, request_)
    response.headers["Location"] = f"{request.scope.get('root_path', '')}/jobs/{record.id}"
    response.headers["Cache-Control"] = NO_STORE
    return job_body(request, record)


@router.get("/jobs/{job}", response_model=Job, responses=error_responses(404, 422, 503))
async def get_job(
    job: Annotated[str, Path(description="job id")],
    request: Request,
    response: Response,
    resources: ResourcesDep,
    wait: Annotated[bool, Query(description="block until the job succeeds or fails, or `timeout` passes")] = False,
    timeout: Annotated[float, Query(gt=0, le=MAX_WAIT_S, description="longest wait in seconds")] = 30.0,
) -> Job:
    record = await resources.jobs.get(job)
    deadline = time.monotonic() + timeout
    while wait and record.status not in TERMINAL and (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(WAIT_POLL_S, left))
        record = await resources.jobs.get(job)
    response.headers["Cache-Control"] = NO_STORE
    return job_body(request, record)

"""Operational endpoints: health and Prometheus metrics. Async on purpose: they must answer even when every
worker thread is busy rendering."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.dependencies import ResourcesDep
from app.schemas import Health, ModelHealth, RedisHealth

router = APIRouter(tags=["operations"])

HEALTH_PING_TIMEOUT_S = 1.0


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "the embedded Redis died and could not be restarted"}},
)
async def healthz(resources: ResourcesDep, response: Response) -> Health:
    """ "ok", or "degraded" when Redis is unreachable (tiles are then rendered and served without the cache);
    503 when the embedded redis-server died and could not be restarted (the process should be replaced)."""
    try:
        redis_up = await asyncio.wait_for(resources.link.ping(), HEALTH_PING_TIMEOUT_S)
    except TimeoutError:
        redis_up = False
    resources.metrics.redis_up.set(1 if redis_up else 0)
    response.headers["Cache-Control"] = "no-store"
    embedded = resources.embedded_redis
    if embedded is not None and embedded.failed is not None:
        # The private redis-server is gone for good: worlds and outpainting cannot work until a restart.
        response.status_code = 503
    scheduler = resources.tiles.scheduler
    return Health(
        status="ok" if redis_up else "degraded",
        model=ModelHealth(status="loaded", hash=resources.tiles.model_hash),
        redis=RedisHealth(
            status="up" if redis_up else "down",
            embedded=resources.redis_embedded,
            error=(embedded.failed if embedded is not None and embedded.failed else None)
            or (None if redis_up else resources.link.last_error or "ping timed out"),
            warning=resources.cache_warning,
        ),
        pending_renders=scheduler.pending,
        max_pending_renders=scheduler.max_pending,
    )


@router.get("/metrics", response_class=Response)
async def metrics(resources: ResourcesDep) -> Response:
    return Response(
        generate_latest(resources.metrics.registry),
        media_type=CONTENT_TYPE_LATEST,
        headers={"Cache-Control": "no-store"},
    )

"""PNG tiles of the default world and of created worlds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from app.dependencies import TileIndex
from app.resources import Resources
from app.schemas import error_responses
from tiles.geometry import TileAddress
from tiles.service import Tile, TileService
from tiles.worlds import WorldRecord

router = APIRouter(tags=["tiles"])

IMMUTABLE = "public, max-age=31536000, immutable"
PNG_RESPONSE = {200: {"content": {"image/png": {}}, "description": "256x256 PNG"}, 304: {"description": "unchanged"}}


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


CLIENT_CLOSED_REQUEST = 499  # nginx's status for a request whose client went away; never reaches anyone


class ClientGone(Exception):
    """The client disconnected before its tile was ready."""


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def while_connected(request: Request, work: Awaitable[Tile]) -> Tile:
    """Await work, cancelling it when the client disconnects first: a render nobody waits for any more is dropped
    before it starts (the single-flight cancels it once its last waiter has gone)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        raise ClientGone
    return task.result()


async def serve_tile(
    request: Request, service: TileService, world: WorldRecord, address: TileAddress, cache_control: str
) -> Response:
    hot = service.cached(world, address)  # the warm path: no task, no await
    if hot is not None:
        return tile_response(request, hot, cache_control)
    try:
        tile = await while_connected(request, service.tile(world, address))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return tile_response(request, tile, cache_control)


def tile_response(request: Request, tile: Tile, cache_control: str) -> Response:
    headers = {
        "ETag": tile.etag,
        "Cache-Control": cache_control,
        "X-Cache": "HIT" if tile.cache_hit else "MISS",
        "Server-Timing": f"tile;dur={tile.seconds * 1000:.1f}",
    }
    if etag_matches(request.headers.get("if-none-match"), tile.etag):
        return Response(status_code=304, headers=headers)
    return Response(content=tile.png, media_type="image/png", headers=headers)


# The tile routes take their parameters directly rather than through app.dependencies: FastAPI resolves every
# dependency per request by introspection, which was 44% of a warm tile's server time (cProfile, 32 connections).
Z = Annotated[TileIndex, Path(description="zoom")]
X = Annotated[TileIndex, Path(description="column; grows right, may be negative")]
Y = Annotated[TileIndex, Path(description="row; grows down, may be negative")]


@router.get(
    "/worlds/{world}/tiles/{z}/{x}/{y}.png",
    response_class=Response,
    responses={**PNG_RESPONSE, **error_responses(400, 404, 422, 503)},
)
async def world_tile(
    request: Request, world: Annotated[str, Path(description="world id")], z: Z, x: X, y: Y
) -> Response:
    """A tile of a created world. The URL is versioned by model (in the world id), so the answer is immutable."""
    resources: Resources = request.app.state.resources
    record = await resources.worlds.get(world)
    return await serve_tile(request, resources.tiles, record, TileAddress(z, x, y), IMMUTABLE)


@router.get(
    "/tiles/{z}/{x}/{y}.png", response_class=Response, responses={**PNG_RESPONSE, **error_responses(400, 404, 422, 503)}
)
async def default_world_tile(request: Request, z: Z, x: X, y: Y) -> Response:
    """A tile of the server's default world. This URL names no model, so it is cached for a bounded time (a new model
    changes it); the TileJSON points clients at the immutable /worlds/{id}/... URL instead."""
    resources: Resources = request.app.state.resources
    max_age = resources.settings.default_world_max_age_s
    world = resources.worlds.default
    return await serve_tile(request, resources.tiles, world, TileAddress(z, x, y), f"public, max-age={max_age}")

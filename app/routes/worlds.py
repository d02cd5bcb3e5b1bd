"""Creating and describing worlds, and their TileJSON documents."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.dependencies import DefaultWorldDep, ResourcesDep, WorldDep
from app.resources import Resources
from app.schemas import TileJSON, World, WorldCreate
from infinitygan.world import COORD_LIMIT
from tiles.geometry import TILE_SIZE
from tiles.worlds import WorldRecord

router = APIRouter(tags=["worlds"])


def world_body(request: Request, record: WorldRecord) -> World:
    base = str(request.base_url).rstrip("/")
    return World(
        id=record.id,
        seed=record.seed,
        psi=record.psi,
        model_hash=record.model_hash,
        tiles=f"{base}/worlds/{record.id}/tiles/{{z}}/{{x}}/{{y}}.png",
        tilejson=f"{base}/worlds/{record.id}/tilejson.json",
    )


def tilejson_body(request: Request, record: WorldRecord, resources: Resources) -> TileJSON:
    settings = resources.settings
    grid = resources.tiles.grid
    world = world_body(request, record)
    return TileJSON(
        tiles=[world.tiles],
        name=f"InfinityGAN world {record.id}",
        description=f"endless landscape, seed {record.seed}, psi {record.psi}",
        version=f"{record.model_hash}.{record.id}",
        minzoom=grid.min_zoom,
        maxzoom=grid.native_zoom,
        tileSize=TILE_SIZE,
        nativeZoom=grid.native_zoom,
        maxDisplayZoom=grid.native_zoom + settings.client_zoom_levels,
        coordinateLimit=COORD_LIMIT,
        world=world,
    )


@router.post("/worlds", status_code=201, response_model=World)
async def create_world(body: WorldCreate, request: Request, response: Response, resources: ResourcesDep) -> World:
    """Create (or find again: ids are content-addressed) the world of a seed and psi under this server's model."""
    record = await resources.worlds.create(body.seed, body.psi)
    response.headers["Location"] = f"/worlds/{record.id}"
    return world_body(request, record)


@router.get("/worlds/{world}", response_model=World)
async def get_world(world: WorldDep, request: Request) -> World:
    return world_body(request, world)


@router.get("/worlds/{world}/tilejson.json", response_model=TileJSON, response_model_by_alias=True)
async def world_tilejson(world: WorldDep, request: Request, resources: ResourcesDep) -> TileJSON:
    return tilejson_body(request, world, resources)


@router.get("/tilejson.json", response_model=TileJSON, response_model_by_alias=True)
async def default_tilejson(world: DefaultWorldDep, request: Request, resources: ResourcesDep) -> TileJSON:
    """TileJSON of the default world; its tile URLs are the immutable, model-versioned ones."""
    return tilejson_body(request, world, resources)

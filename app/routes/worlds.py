"""Creating and describing worlds, and their TileJSON documents."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.dependencies import DefaultWorldDep, ResourcesDep, WorldDep
from app.resources import Resources
from app.schemas import BiomesBody, Footprint, Models, PartnerModel, TileJSON, World, WorldCreate, error_responses
from infinitygan.blend import Blend, swap_levels
from infinitygan.world import COORD_LIMIT
from tiles.errors import UnknownPartnerModel
from tiles.geometry import TILE_SIZE
from tiles.preview import preview_png
from tiles.worlds import WorldRecord

router = APIRouter(tags=["worlds"])

IMMUTABLE = "public, max-age=31536000, immutable"  # world ids are versioned by model and content


def blend_body(record: WorldRecord, resources: Resources | None) -> dict | None:
    if record.blend is None:
        return None
    names = {h: n for n, h in (resources.partner_hashes if resources is not None else {}).items()}
    body = record.blend.describe()
    return {**body, "partner_hash": body.pop("partner"), "partner": names.get(record.blend.partner)}


def world_body(request: Request, record: WorldRecord, resources: Resources | None = None) -> World:
    base = str(request.base_url).rstrip("/")
    footprint = None
    if record.footprint is not None:
        x, y, width, height = record.footprint
        footprint = Footprint(x=x, y=y, width=width, height=height)
    return World(
        id=record.id,
        seed=record.seed,
        psi=record.psi,
        psi_local=record.psi_local,
        model_hash=record.model_hash,
        tiles=f"{base}/worlds/{record.id}/tiles/{{z}}/{{x}}/{{y}}.png",
        tilejson=f"{base}/worlds/{record.id}/tilejson.json",
        footprint=footprint,
        preview=f"{base}/worlds/{record.id}/preview.png" if footprint is not None else None,
        biomes=BiomesBody.model_validate(record.biomes.describe()) if record.biomes is not None else None,
        blend=blend_body(record, resources),
    )


def tilejson_body(request: Request, record: WorldRecord, resources: Resources) -> TileJSON:
    grid = resources.tiles.grid
    world = world_body(request, record, resources)
    return TileJSON(
        tiles=[world.tiles],
        name=f"InfinityGAN world {record.id}",
        description=f"endless landscape, seed {record.seed}, psi {record.psi}, psi_local {record.psi_local}"
        + (", continuing an uploaded photo" if record.anchor is not None else "")
        + (f", biomes every ~{record.biomes.region_px} px along x" if record.biomes is not None else ""),
        version=f"{record.model_hash}.{record.id}",
        minzoom=grid.min_zoom,
        maxzoom=grid.max_zoom,
        tileSize=TILE_SIZE,
        nativeZoom=grid.native_zoom,
        maxDisplayZoom=grid.max_zoom,
        coordinateLimit=COORD_LIMIT,
        world=world,
    )


@router.post("/worlds", status_code=201, response_model=World, responses=error_responses(400, 422, 503))
async def create_world(body: WorldCreate, request: Request, response: Response, resources: ResourcesDep) -> World:
    """Create (or find again: ids are content-addressed) the world of a seed, psi and psi_local (and biomes, and a
    blend) under this server's model."""
    biomes = body.biomes.to_biomes() if body.biomes is not None else None
    blend = None
    if body.blend is not None:
        partner = resources.partner_hashes.get(body.blend.partner)
        if partner is None:
            available = sorted(resources.partner_hashes) or "none"
            raise UnknownPartnerModel(f"unknown partner model {body.blend.partner!r}; available: {available}")
        blend = Blend(partner, body.blend.swap_level, body.blend.smooth)
    record = await resources.worlds.create(body.seed, body.psi, biomes, blend, body.psi_local)
    response.headers["Location"] = f"{request.scope.get('root_path', '')}/worlds/{record.id}"
    return world_body(request, record, resources)


@router.get("/worlds/{world}", response_model=World, responses=error_responses(404, 503))
async def get_world(world: WorldDep, request: Request, resources: ResourcesDep) -> World:
    return world_body(request, world, resources)


@router.get(
    "/worlds/{world}/tilejson.json",
    response_model=TileJSON,
    response_model_by_alias=True,
    responses=error_responses(404, 503),
)
async def world_tilejson(world: WorldDep, request: Request, resources: ResourcesDep) -> TileJSON:
    return tilejson_body(request, world, resources)


@router.get(
    "/worlds/{world}/preview.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "the photo extended on every side"},
        **error_responses(404, 503),
    },
)
async def world_preview(world: WorldDep, resources: ResourcesDep) -> Response:
    """The anchored photo and half its size of generated landscape beyond each side (404 for a plain world)."""
    png = await preview_png(resources.tiles, world)
    return Response(png, media_type="image/png", headers={"Cache-Control": IMMUTABLE})


@router.get("/models", response_model=Models)
async def models(resources: ResourcesDep, response: Response) -> Models:
    """The served model and its partner models (INFINITYGAN_PARTNER_MODELS), for choosing a blend."""
    response.headers["Cache-Control"] = "no-cache"  # a redeploy changes it
    generator = resources.tiles.renderer.generator
    return Models(
        hash=resources.tiles.model_hash,
        levels=swap_levels(generator),
        partners=[PartnerModel(name=name, hash=h) for name, h in sorted(resources.partner_hashes.items())],
    )


@router.get("/tilejson.json", response_model=TileJSON, response_model_by_alias=True)
async def default_tilejson(world: DefaultWorldDep, request: Request, resources: ResourcesDep) -> TileJSON:
    """TileJSON of the default world; its tile URLs are the immutable, model-versioned ones."""
    return tilejson_body(request, world, resources)

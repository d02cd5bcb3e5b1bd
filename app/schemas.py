"""Request and response bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Json, StrictInt, model_validator

from infinitygan.biomes import (
    MAX_REGION_PX,
    MAX_STYLES,
    MIN_REGION_PX,
    SERVED_REGION_PX,
    SERVED_TRANSITION_PX,
    Biomes,
    BiomeStyle,
)
from infinitygan.blend import MAX_SMOOTH, MAX_SWAP_LEVEL
from infinitygan.world import DEFAULT_PSI, DEFAULT_PSI_LOCAL, SEED_LIMIT

MAX_REACH_PX = 1 << 24  # a reach past this is the whole world in practice: omit it instead
PSI_LOCAL_DESCRIPTION = (
    "truncation of the local latents z_l (the per-location randomness of the layout), 0..2: 1 is the model "
    "untruncated, lower is a calmer, flatter layout (fewer of the models' floating blobs)"
)


class BiomeStyleBody(BaseModel):
    """One biome's look: the global style of world `seed` at truncation `psi`."""

    model_config = ConfigDict(extra="forbid")

    seed: StrictInt = Field(ge=0, lt=SEED_LIMIT)
    psi: float = Field(DEFAULT_PSI, ge=-2.0, le=2.0, allow_inf_nan=False, strict=True)


class BiomesBody(BaseModel):
    """Regions along x, each with its own global style, blended across transition bands (spatial style fusion)."""

    model_config = ConfigDict(extra="forbid")

    region_px: StrictInt = Field(
        SERVED_REGION_PX,
        ge=MIN_REGION_PX,
        le=MAX_REGION_PX,
        description="mean region width, world pixels at the native zoom",
    )
    transition_px: StrictInt = Field(
        SERVED_TRANSITION_PX, ge=1, description="width of the blend band at each boundary (<= region/2)"
    )
    styles: list[BiomeStyleBody] = Field(
        default_factory=list,
        max_length=MAX_STYLES,
        description="looks cycled over the regions; empty: each region's look is hashed from the world's seed",
    )

    @model_validator(mode="after")
    def _bands_do_not_overlap(self) -> BiomesBody:
        if self.transition_px > self.region_px // 2:
            raise ValueError(f"transition_px must be at most region_px / 2 = {self.region_px // 2}")
        return self

    def to_biomes(self) -> Biomes:
        return Biomes(self.region_px, self.transition_px, tuple(BiomeStyle(s.seed, s.psi) for s in self.styles))


class BlendBody(BaseModel):
    """Layer swapping: the layers above `swap_level` (0 = G_S, i + 1 = G_T stage i) come from a partner model, a
    fine-tune of the served one (a sigmoid of width `smooth` when > 0)."""

    model_config = ConfigDict(extra="forbid")

    partner: str = Field(
        min_length=1,
        max_length=128,
        description="partner model: a file stem in INFINITYGAN_PARTNER_MODELS (unknown: 422 listing the available)",
    )
    swap_level: float = Field(ge=-1.0, le=MAX_SWAP_LEVEL, allow_inf_nan=False)
    smooth: float = Field(0.0, ge=0.0, le=MAX_SMOOTH, allow_inf_nan=False)


class WorldCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: StrictInt = Field(ge=0, lt=SEED_LIMIT, description="world seed, as in `infinitygan render --seed`")
    psi: float = Field(DEFAULT_PSI, ge=-2.0, le=2.0, allow_inf_nan=False, strict=True, description="truncation psi")
    psi_local: float = Field(
        DEFAULT_PSI_LOCAL, ge=0.0, le=2.0, allow_inf_nan=False, strict=True, description=PSI_LOCAL_DESCRIPTION
    )
    biomes: BiomesBody | None = Field(
        default_factory=BiomesBody,
        description=f"regions along x with their own looks; omitted: the served {SERVED_REGION_PX} px regions blended "
        f"over {SERVED_TRANSITION_PX} px; null: one look everywhere",
    )
    blend: BlendBody | None = Field(None, description="layer swapping with a partner model; omitted: the model alone")


class Footprint(BaseModel):
    """Where a photo sits, in world pixels at the native zoom: [x, x + width) x [y, y + height)."""

    x: int
    y: int
    width: int
    height: int


class World(BaseModel):
    id: str
    seed: int
    psi: float
    psi_local: float
    model_hash: str
    tiles: str = Field(description="tile URL template")
    tilejson: str
    footprint: Footprint | None = Field(None, description="the anchored photo's place; None for a plain world")
    preview: str | None = Field(None, description="PNG of the photo and its surroundings; None for a plain world")
    biomes: BiomesBody | None = Field(None, description="the world's biomes, as created; None for one look")
    blend: dict | None = Field(None, description="the world's layer swap (partner name and hash); None for none")


class OutpaintParams(BaseModel):
    """Form fields of POST /outpaint besides the image."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, lt=SEED_LIMIT, description="seed of the world the photo is placed in")
    psi: float = Field(DEFAULT_PSI, ge=-2.0, le=2.0, allow_inf_nan=False, description="truncation psi")
    psi_local: float = Field(DEFAULT_PSI_LOCAL, ge=0.0, le=2.0, allow_inf_nan=False, description=PSI_LOCAL_DESCRIPTION)
    quality: Literal["fast", "best"] = Field("fast", description="inversion effort: fast (~40 steps) or best")
    reach: int | None = Field(
        None,
        ge=0,
        le=MAX_REACH_PX,
        description="world pixels around the photo that take its look (its fitted styles), fading to the base world "
        "beyond; omitted: the photo's look governs the whole world",
    )
    horizon: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="the photo's horizon row as a fraction of its height (0 = top) to put on the world's horizon; "
        "omitted: estimated by trial fits",
    )
    biomes: Json[BiomesBody] | None = Field(
        None,
        description='regions along x beyond the photo\'s reach, as JSON (e.g. {"region_px": 4096, "transition_px": '
        "512}); needs `reach`: without one the photo's look is the whole world's",
    )

    @model_validator(mode="after")
    def _biomes_need_a_reach(self) -> OutpaintParams:
        if self.biomes is not None and self.reach is None:
            raise ValueError("biomes need a reach: without one the photo's look governs the whole world")
        return self


class JobResultBody(BaseModel):
    world_id: str
    footprint: Footprint
    tilejson: str
    preview: str
    reconstruction_psnr: float = Field(description="dB, the generator's own fit of the photo, before pasting it")
    seconds: float = Field(description="inversion time")
    horizon: float = Field(description="the photo's row (fraction of its height) placed on the world's horizon")


class Job(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: int = Field(ge=0, le=100)
    seed: int
    psi: float
    psi_local: float
    quality: Literal["fast", "best"]
    steps: int
    reach: int | None = Field(None, description="as requested; None: the whole world")
    horizon: float | None = Field(None, description="as requested; None: estimated (see result.horizon)")
    biomes: BiomesBody | None = Field(None, description="as requested: regions along x beyond the photo's reach")
    attempts: int = Field(description="runs started; a run lost with its worker is retried")
    created_at: float
    updated_at: float
    error: str | None = None
    result: JobResultBody | None = None


class TileJSON(BaseModel):
    """TileJSON 3.0.0 plus keys for a non-geographic world (allowed by the spec)."""

    model_config = ConfigDict(populate_by_name=True)

    tilejson: Literal["3.0.0"] = "3.0.0"
    tiles: list[str]
    name: str
    description: str
    version: str
    scheme: Literal["xyz"] = "xyz"
    minzoom: int
    maxzoom: int
    attribution: str = ""
    tile_size: int = Field(alias="tileSize")
    native_zoom: int = Field(alias="nativeZoom", description="zoom at which one tile pixel is one world pixel")
    max_display_zoom: int = Field(alias="maxDisplayZoom", description="deepest zoom clients should scale up to")
    crs: Literal["simple"] = Field("simple", description="Leaflet L.CRS.Simple: pixel = (lng, -lat) * 2**zoom")
    coordinate_limit: int = Field(alias="coordinateLimit", description="|world pixel| limit")
    world: World


class RedisHealth(BaseModel):
    status: Literal["up", "down"]
    embedded: bool
    error: str | None = None
    warning: str | None = None


class PartnerModel(BaseModel):
    name: str = Field(description="what POST /worlds takes as blend.partner")
    hash: str


class Models(BaseModel):
    """The served model and the partner models a world may blend with (layer swapping)."""

    hash: str = Field(description="the served model's hash (in every world id)")
    levels: int = Field(description="resolution levels: 0 = G_S, then the G_T stages (and a student's "
                        "output noise, the finest); a blend's swap_level takes the layers above it from the "
                        "partner")  # fmt: skip
    partners: list[PartnerModel]


class ModelHealth(BaseModel):
    status: Literal["loaded"]
    hash: str


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    model: ModelHealth
    redis: RedisHealth
    pending_renders: int
    max_pending_renders: int


class ErrorBody(BaseModel):
    """Every error answer: {"detail": ...}."""

    detail: Any = Field(description="what went wrong: a message, or the list of invalid request fields (422)")


_ERROR_DESCRIPTIONS = {
    400: "the request cannot be served: past the coordinate limit, a malformed body, or a corrupt upload",
    404: "no such zoom level, world, job or preview",
    413: "the upload has more bytes or pixels than the service accepts",
    415: "not a PNG, JPEG or WebP photo sent as multipart/form-data",
    422: "invalid parameters (type, bounds), or an image whose aspect ratio is past the limit",
    503: "too busy, or Redis is unreachable: retry after the Retry-After header's seconds",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses an operation really answers, each with ErrorBody."""
    return {status: {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[status]} for status in statuses}

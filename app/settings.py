"""Service settings, read from the environment (INFINITYGAN_*, plus the conventional REDIS_URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from infinitygan.biomes import Biomes
from infinitygan.world import DEFAULT_PSI, DEFAULT_PSI_LOCAL
from tiles.worlds import WorldRecord


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFINITYGAN_", extra="ignore")

    model: Path | None = Field(
        None,
        description="generator checkpoint (.safetensors); None = the shipped default, the distilled student "
        "(models/students/landscapes-small-mobile.safetensors; its teacher: models/landscapes-small.safetensors)",
    )
    partner_models: Path | None = Field(
        Path("models/domains"),
        description="folder of layer-swapping partners (fine-tunes of the model, *.safetensors in it or a sub-folder, "
        "named by file stem; those of another architecture are skipped) that POST /worlds blends may name; missing or "
        "None = none",
    )
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_URL", "INFINITYGAN_REDIS_URL"),
        description="Redis for tiles and worlds; None = start a private embedded redis-server",
    )
    embedded_redis_maxmemory: str = Field("256mb", pattern=r"^\d+(b|k|kb|m|mb|g|gb)?$")
    embedded_redis_supervise_s: float = Field(
        2.0,
        gt=0,
        le=3600,
        description="how often the embedded redis-server is checked: restarted if it died, its "
        "append-only file compacted past 1.5 x maxmemory",
    )
    embedded_redis_data_dir: Path | None = Field(
        Path("var/redis"),
        description="the embedded Redis's append-only file (worlds, photo anchors, jobs, tiles) lives here, so they "
        "survive restarts; relative to the working directory; None = in memory only",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="comma-separated addresses or networks of proxies whose X-Forwarded-Proto/-For are trusted (TLS "
        "terminated in front: TileJSON then lists https:// URLs); '*' trusts any peer, for a private network only",
    )
    root_path: str = Field(
        "", pattern=r"^(/[^/]+)*$", description="path prefix the service is mounted under behind a proxy, e.g. /maps"
    )
    native_zoom: int = Field(5, ge=0, le=30)
    zoom_out_levels: int = Field(3, ge=0, le=8, description="zoom levels below native rendered by downsampling")
    zoom_in_levels: int = Field(
        3,
        ge=0,
        le=8,
        validation_alias=AliasChoices("INFINITYGAN_ZOOM_IN_LEVELS", "INFINITYGAN_CLIENT_ZOOM_LEVELS"),
        description="levels above native, upscaled on the server from each tile's neighbourhood (seamless)",
    )
    default_seed: int = Field(0, ge=0, lt=2**63)
    default_psi: float = Field(DEFAULT_PSI, ge=-2.0, le=2.0)
    default_psi_local: float = Field(
        DEFAULT_PSI_LOCAL, ge=0.0, le=2.0, description="the default world's truncation of the local latents z_l"
    )
    default_biomes: bool = Field(
        True,
        description="the default world has the served biomes (regions along x with their own looks, as POST /worlds "
        "without `biomes`); false: one look everywhere",
    )
    memory_cache_mb: float = Field(
        128, ge=0, description="in-process tier of hot tiles in front of Redis, in MiB (0 = off); per process"
    )
    runtime: Literal["onnxruntime", "eager"] = Field(
        "onnxruntime",
        description="how native tiles are rendered: the model's chunk graph exported to ONNX Runtime at startup "
        "(1.35x eager for the teacher, 1.23x for the served student at one thread; chunks with per-location styles "
        "and blended worlds stay eager), or eager PyTorch; the bits differ slightly, so tile cache keys carry it",
    )
    render_threads: int = Field(2, ge=1, le=64)
    torch_threads: int | None = Field(None, ge=1, description="None = cores / render_threads")
    max_pending_renders: int = Field(
        64,
        ge=1,
        description="native renders of admitted work (a cold tile k levels below native counts 4^k) before "
        "a cold tile answers 503",
    )
    retry_after_s: int = Field(2, ge=1)
    error_max_age_s: int = Field(60, ge=0, description="Cache-Control max-age of 4xx answers")
    default_world_max_age_s: int = Field(
        86400, ge=0, description="max-age of /tiles/...: that URL is not versioned by model, so it is not immutable"
    )
    outpaint_worker: bool = Field(
        True, description="run outpainting jobs in this process; false when separate `infinitygan worker`s run them"
    )
    outpaint_concurrency: int = Field(1, ge=1, le=16, description="outpainting jobs one worker runs at once")
    outpaint_steps: int | None = Field(
        None, ge=1, le=5000, description="inversion steps for every quality (tests, experiments); None = the quality's"
    )
    outpaint_max_upload_bytes: int = Field(20 * 2**20, ge=1, description="larger uploads answer 413")
    outpaint_max_pixels: int = Field(
        40_000_000, ge=1, description="images with more pixels (read from the header, before decoding) answer 413"
    )
    outpaint_max_aspect: float = Field(
        4.0,
        ge=1.0,
        le=16.0,
        description="photos wider (or taller) than this ratio answer 422: the job scales the photo to one scene tall, "
        "so its cost grows with the ratio",
    )
    outpaint_max_job_memory_mb: float = Field(
        1536.0,
        ge=256,
        description="the memory one outpainting job may use on top of the model (MB): photos estimated to need more "
        "(from their size; measured for the shipped model) answer 422, and a running job that reaches it fails "
        "(its child process's RLIMIT_DATA)",
    )
    outpaint_lease_s: float = Field(
        30.0, gt=0, le=3600, description="a job whose worker stopped renewing its lease this long is run again"
    )
    outpaint_max_attempts: int = Field(3, ge=1, description="runs of one job before it is failed")

    def default_world(self, model_hash: str) -> WorldRecord:
        """The world behind /tiles/...: default_seed, default_psi, default_psi_local and default_biomes."""
        biomes = Biomes() if self.default_biomes else None
        return WorldRecord.create(
            model_hash, self.default_seed, self.default_psi, psi_local=self.default_psi_local, biomes=biomes
        )

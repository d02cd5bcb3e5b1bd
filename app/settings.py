"""Service settings, read from the environment (INFINITYGAN_*, plus the conventional REDIS_URL)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from infinitygan.world import DEFAULT_PSI


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFINITYGAN_", extra="ignore")

    model: Path | None = Field(None, description="generator checkpoint (.safetensors); None = the shipped model")
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("REDIS_URL", "INFINITYGAN_REDIS_URL"),
        description="Redis for tiles and worlds; None = start a private embedded redis-server",
    )
    embedded_redis_maxmemory: str = "256mb"
    embedded_redis_data_dir: Path | None = Field(
        None, description="keep the embedded Redis's data (worlds, tiles) here across restarts; None = in memory only"
    )
    native_zoom: int = Field(5, ge=0, le=30)
    zoom_out_levels: int = Field(3, ge=0, le=8, description="zoom levels below native rendered by downsampling")
    client_zoom_levels: int = Field(3, ge=0, le=8, description="levels above native that Leaflet scales up")
    default_seed: int = Field(0, ge=0, lt=2**63)
    default_psi: float = Field(DEFAULT_PSI, ge=-2.0, le=2.0)
    render_threads: int = Field(2, ge=1, le=64)
    torch_threads: int | None = Field(None, ge=1, description="None = cores / render_threads")
    max_pending_renders: int = Field(64, ge=1, description="tiles waiting for a render before answering 503")
    retry_after_s: int = Field(2, ge=1)
    error_max_age_s: int = Field(60, ge=0, description="Cache-Control max-age of 4xx answers")
    default_world_max_age_s: int = Field(
        86400, ge=0, description="max-age of /tiles/...: that URL is not versioned by model, so it is not immutable"
    )

"""Prometheus collectors for the tile pipeline, on a registry of their own so each app (and test) starts at zero."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

RENDER_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class TileMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.served = Counter("tiles_served", "Tiles returned to clients", ["zoom", "cache"], registry=self.registry)
        self.cache_lookups = Counter(
            "tile_cache_lookups",
            "Tile cache lookups by result (memory: a hit in the in-process tier, which "
            "never reaches Redis; hit, miss, error: Redis)",
            ["result"],
            registry=self.registry,
        )
        self.renders = Counter(
            "tile_renders",
            "Tiles rendered (native: model; zoomout: downsampled children; zoomin: upscaled neighbourhood)",
            ["kind"],
            registry=self.registry,
        )  # fmt: skip
        self.render_seconds = Histogram(
            "tile_render_seconds", "Time to produce one tile, excluding waiting in the queue", ["kind"],
            buckets=RENDER_BUCKETS_S, registry=self.registry,
        )  # fmt: skip
        self.rejected = Counter(
            "tile_render_rejected", "Tile requests answered 503 because the render queue was full",
            registry=self.registry,
        )  # fmt: skip
        self.pending = Gauge(
            "tile_render_pending", "Admitted work waiting for a render, in native renders", registry=self.registry
        )
        self.redis_up = Gauge("tile_cache_redis_up", "1 when the last Redis call succeeded", registry=self.registry)

    def renders_total(self) -> float:
        return sum(self.renders.labels(kind)._value.get() for kind in ("native", "zoomout", "zoomin"))

"""Worlds the service knows: a seed, psi and psi_local (and optionally a photo anchor, biomes, a blend) under a
content-addressed id, persisted in Redis without a TTL."""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass

from infinitygan.biomes import Biomes, BiomeStyle
from infinitygan.blend import Blend
from infinitygan.world import DEFAULT_PSI, DEFAULT_PSI_LOCAL, WorldSpec
from tiles.errors import UnknownWorld, WorldStoreUnavailable
from tiles.redis_link import RedisLink, RedisUnavailable

WORLD_ID_PATTERN = re.compile(r"[0-9a-f]{16}")
WORLD_KEY_PREFIX = "world:"
MEMO_SIZE = 4096


def world_id(
    model_hash: str,
    seed: int,
    psi: float,
    anchor: str | None = None,
    biomes: Biomes | None = None,
    blend: Blend | None = None,
    psi_local: float = 1.0,
) -> str:
    """Same model, seed and psi (and anchor, biomes, blend, psi_local) -> same id, so creating a world twice is
    harmless. The model hash is part of the id because tile URLs under a world id are served as immutable: a different
    model must never reuse the URL. The anchor id is itself content-addressed (photo, parameters, model), so it pins
    the anchored pixels too; biomes enter through their canonical JSON. An untruncated psi_local (1, what every world
    rendered before it existed) adds nothing, so those worlds keep their ids."""
    key = f"{model_hash}/{seed}/{float(psi)!r}" + (f"/anchor/{anchor}" if anchor is not None else "")
    if psi_local != 1.0:
        key += f"/psi_local/{float(psi_local)!r}"
    if biomes is not None:
        key += "/biomes/" + json.dumps(biomes.describe(), sort_keys=True)
    if blend is not None:
        key += "/blend/" + json.dumps(blend.describe(), sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def biomes_from(data: dict | None) -> Biomes | None:
    """Biomes from their `describe()` form; ValueError for bad values."""
    if data is None:
        return None
    styles = tuple(BiomeStyle(int(s["seed"]), float(s["psi"])) for s in data.get("styles", ()))
    return Biomes(int(data["region_px"]), int(data["transition_px"]), styles)


@dataclass(frozen=True)
class WorldRecord:
    id: str
    seed: int
    psi: float
    psi_local: float
    model_hash: str
    anchor: str | None = None  # id of a photo anchor in the AnchorStore
    footprint: tuple[int, int, int, int] | None = None  # the anchor's photo (x, y, width, height), native pixels
    biomes: Biomes | None = None  # regions along x with their own styles (infinitygan.biomes)
    blend: Blend | None = None  # layer swapping with a partner model (infinitygan.blend)

    @classmethod
    def create(
        cls,
        model_hash: str,
        seed: int,
        psi: float = DEFAULT_PSI,
        *,
        psi_local: float = DEFAULT_PSI_LOCAL,
        anchor: str | None = None,
        footprint: tuple[int, int, int, int] | None = None,
        biomes: Biomes | None = None,
        blend: Blend | None = None,
    ) -> WorldRecord:
        WorldSpec(seed=seed, psi=psi, psi_local=psi_local)  # validates (RegionError) before anything is stored
        return cls(
            id=world_id(model_hash, seed, psi, anchor, biomes, blend, psi_local),
            seed=seed,
            psi=float(psi),
            psi_local=float(psi_local),
            model_hash=model_hash,
            anchor=anchor,
            footprint=tuple(footprint) if footprint is not None else None,
            biomes=biomes,
            blend=blend,
        )

    @property
    def spec(self) -> WorldSpec:
        return WorldSpec(seed=self.seed, psi=self.psi, biomes=self.biomes, psi_local=self.psi_local)

    def to_json(self) -> str:
        data = asdict(self)
        if self.anchor is None:  # plain worlds keep the record format they had before anchors existed
            del data["anchor"], data["footprint"]
        for name in ("biomes", "blend"):
            value = getattr(self, name)
            if value is None:
                del data[name]
            else:
                data[name] = value.describe()
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> WorldRecord:
        data = json.loads(text)
        footprint = data.get("footprint")
        return cls(
            id=data["id"],
            seed=int(data["seed"]),
            psi=float(data["psi"]),
            psi_local=float(data.get("psi_local", 1.0)),  # records from before psi_local rendered untruncated
            model_hash=data["model_hash"],
            anchor=data.get("anchor"),
            footprint=tuple(int(v) for v in footprint) if footprint is not None else None,
            biomes=biomes_from(data.get("biomes")),
            blend=Blend(**data["blend"]) if data.get("blend") else None,
        )


class WorldRegistry:
    """Creates and finds worlds. Keys have no TTL, so the tile cache's volatile-lru eviction never removes them.

    Known worlds are memoised in process: once seen, a world keeps serving tiles even while Redis is down.
    """

    def __init__(self, link: RedisLink, model_hash: str, default: WorldRecord) -> None:
        self.link = link
        self.model_hash = model_hash
        self.default = default
        self._memo: OrderedDict[str, WorldRecord] = OrderedDict({default.id: default})

    async def create(
        self,
        seed: int,
        psi: float = DEFAULT_PSI,
        biomes: Biomes | None = None,
        blend: Blend | None = None,
        psi_local: float = DEFAULT_PSI_LOCAL,
    ) -> WorldRecord:
        record = WorldRecord.create(self.model_hash, seed, psi, psi_local=psi_local, biomes=biomes, blend=blend)
        try:
            await self.link.run(lambda r: r.set(WORLD_KEY_PREFIX + record.id, record.to_json()))
        except RedisUnavailable as exc:
            raise WorldStoreUnavailable(f"cannot persist the world: {exc}") from None
        self._remember(record)
        return record

    async def get(self, id_: str) -> WorldRecord:
        record = self._memo.get(id_)
        if record is not None:
            return record
        if not WORLD_ID_PATTERN.fullmatch(id_):
            raise UnknownWorld(f"unknown world {id_!r}")
        try:
            raw = await self.link.run(lambda r: r.get(WORLD_KEY_PREFIX + id_))
        except RedisUnavailable as exc:
            raise WorldStoreUnavailable(f"cannot look up world {id_}: {exc}") from None
        if raw is None:
            raise UnknownWorld(f"unknown world {id_!r}")
        record = WorldRecord.from_json(raw)
        if record.model_hash != self.model_hash:
            raise UnknownWorld(f"world {id_} belongs to model {record.model_hash}; this server runs {self.model_hash}")
        self._remember(record)
        return record

    def _remember(self, record: WorldRecord) -> None:
        self._memo[record.id] = record
        self._memo.move_to_end(record.id)
        if len(self._memo) > MEMO_SIZE:
            self._memo.popitem(last=False)
        self._memo[self.default.id] = self.default

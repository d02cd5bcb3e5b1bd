"""The Redis tile cache: raw PNG bytes under versioned keys, plus a cross-replica render lock.

Eviction policy (why tiles carry a TTL although they never go stale): Redis runs with `maxmemory` and
`maxmemory-policy volatile-lru`, which evicts only keys that have a TTL. Tiles are written with a very long TTL, so
they are the only eviction candidates and the cache stays bounded by LRU; worlds (tiles/worlds.py) are written
without a TTL, so eviction can never reach them. One Redis instance is enough, and a replica set shares both.
If the server runs with another policy, `check_eviction_policy` says so in /healthz.

Every method swallows Redis failures (a cache must never break tile serving): reads miss, writes are dropped and
the lock is treated as not needed, and RedisLink records the outage for /healthz.
"""

from __future__ import annotations

import contextlib
import secrets

from tiles.geometry import TILE_SIZE, TileAddress
from tiles.redis_link import RedisLink, RedisUnavailable

KEY_VERSION = "v1"
TILE_TTL_S = 10 * 365 * 24 * 3600  # "forever", but present so volatile-lru may evict tiles
EVICTION_POLICY = "volatile-lru"
LOCAL_ONLY = "local"  # lock token when Redis is down: nobody else can coordinate, so render here

# Delete the lock only if we still own it: after a long render our lock may have expired and been taken by another.
_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

# Extend the lock only if we still own it: a holder renews while it works, so a dead holder's lock lapses quickly.
_RENEW_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


def tile_key(render_id: str, world_id: str, tile: TileAddress) -> str:
    """render_id: TileRenderer.render_id (the model and the runtime, which decide the bits)."""
    return f"tile:{KEY_VERSION}:{render_id}:{world_id}:{TILE_SIZE}:{tile.z}:{tile.x}:{tile.y}.png"


class TileCache:
    def __init__(self, link: RedisLink, *, tile_ttl_s: int = TILE_TTL_S) -> None:
        self.link = link
        self.tile_ttl_s = tile_ttl_s
        self._release = link.client.register_script(_RELEASE_LOCK)
        self._renew = link.client.register_script(_RENEW_LOCK)

    async def get(self, key: str) -> bytes | None:
        try:
            return await self.link.run(lambda r: r.get(key))
        except RedisUnavailable:
            return None

    async def put(self, key: str, png: bytes) -> bool:
        try:
            await self.link.run(lambda r: r.set(key, png, ex=self.tile_ttl_s))
        except RedisUnavailable:
            return False
        return True

    async def acquire_lock(self, key: str, ttl_ms: int) -> str | None:
        """A token if we may render this tile; None if another process holds the lock."""
        token = secrets.token_hex(8)
        try:
            taken = await self.link.run(lambda r: r.set(f"lock:{key}", token, nx=True, px=ttl_ms))
        except RedisUnavailable:
            return LOCAL_ONLY
        return token if taken else None

    async def release_lock(self, key: str, token: str) -> None:
        if token == LOCAL_ONLY:
            return
        with contextlib.suppress(RedisUnavailable):  # if Redis is down the lock expires by itself
            await self.link.run(lambda r: self._release(keys=[f"lock:{key}"], args=[token], client=r))

    async def renew_lock(self, key: str, token: str, ttl_ms: int) -> bool:
        """Push our lock's expiry out again; False if it is no longer ours (or Redis is unreachable)."""
        if token == LOCAL_ONLY:
            return True
        try:
            renewed = await self.link.run(lambda r: self._renew(keys=[f"lock:{key}"], args=[token, ttl_ms], client=r))
        except RedisUnavailable:
            return False
        return bool(renewed)

    async def lock_held(self, key: str) -> bool:
        """Whether some process holds this tile's render lock (False when Redis is unreachable)."""
        try:
            return bool(await self.link.run(lambda r: r.exists(f"lock:{key}")))
        except RedisUnavailable:
            return False

    async def check_eviction_policy(self) -> str | None:
        """A warning when the server's policy could evict worlds or never evict tiles; None when fine or unknown."""
        try:
            config = await self.link.run(lambda r: r.config_get("maxmemory*"))
        except RedisUnavailable:
            return None  # CONFIG may be disabled on managed Redis; nothing to say
        policy = config.get(b"maxmemory-policy", config.get("maxmemory-policy"))
        policy = policy.decode() if isinstance(policy, bytes) else policy
        if policy != EVICTION_POLICY:
            return f"redis maxmemory-policy is {policy!r}; {EVICTION_POLICY!r} evicts tiles but never worlds"
        return None

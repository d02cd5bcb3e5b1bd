"""Photo anchors in Redis: safetensors bytes under a no-TTL key, decoded once and memoised per process.

Like worlds, anchors carry no TTL, so the tile cache's volatile-lru eviction never reaches them; a world that
references an anchor keeps rendering the same tiles for as long as it exists.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

from infinitygan.anchor import Anchor
from tiles.errors import UnknownWorld, WorldStoreUnavailable
from tiles.redis_link import RedisLink, RedisUnavailable

ANCHOR_KEY_PREFIX = "anchor:"
MEMO_SIZE = 32  # an anchor is ~1.5 MB (photo, latents, noise); tiles of a few recent uploads stay warm


def anchor_key(anchor_id: str) -> str:
    return ANCHOR_KEY_PREFIX + anchor_id


@dataclass(frozen=True)
class StoredAnchor:
    id: str
    anchor: Anchor


class AnchorStore:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._memo: OrderedDict[str, StoredAnchor] = OrderedDict()
        self._loading: dict[str, asyncio.Future[StoredAnchor]] = {}

    async def get(self, anchor_id: str) -> StoredAnchor:
        stored = self._memo.get(anchor_id)
        if stored is not None:
            self._memo.move_to_end(anchor_id)
            return stored
        # Concurrent tiles of a new world share one load and one decode.
        loading = self._loading.get(anchor_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(anchor_id))
            self._loading[anchor_id] = loading
            loading.add_done_callback(lambda _: self._loading.pop(anchor_id, None))
        return await asyncio.shield(loading)

    async def _load(self, anchor_id: str) -> StoredAnchor:
        try:
            data = await self.link.run(lambda r: r.get(anchor_key(anchor_id)))
        except RedisUnavailable as exc:
            raise WorldStoreUnavailable(f"cannot load photo anchor {anchor_id}: {exc}") from None
        if data is None:
            raise UnknownWorld(f"the photo anchor {anchor_id} of this world is missing")
        stored = StoredAnchor(anchor_id, await asyncio.to_thread(Anchor.from_bytes, data))
        self._memo[anchor_id] = stored
        if len(self._memo) > MEMO_SIZE:
            self._memo.popitem(last=False)
        return stored

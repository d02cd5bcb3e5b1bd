"""Native tiles from the model: one tile is exactly one world chunk, so tiles share seams with render_region."""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch

from infinitygan.checkpoint import LoadedGenerator
from infinitygan.world import World, WorldSpec
from tiles.anchors import StoredAnchor
from tiles.geometry import TileAddress
from tiles.imaging import encode_png

WORLD_MEMO_SIZE = 64


class TileRenderer:
    """Renders native tiles; thread-safe, so a pool of render threads can share one generator."""

    def __init__(self, model: LoadedGenerator) -> None:
        self.generator = model.generator.eval()
        self.model_hash = model.model_hash
        self.scene_height = model.scene_height
        self._worlds: OrderedDict[tuple[WorldSpec, str | None], World] = OrderedDict()
        self._lock = threading.Lock()

    def world(self, spec: WorldSpec, anchor: StoredAnchor | None = None) -> World:
        # A World precomputes its styles; memoise a few so each tile does not redo that.
        key = (spec, anchor.id if anchor is not None else None)
        with self._lock:
            world = self._worlds.get(key)
            if world is None:
                world = World(self.generator, spec, anchor.anchor if anchor is not None else None)
                self._worlds[key] = world
                if len(self._worlds) > WORLD_MEMO_SIZE:
                    self._worlds.popitem(last=False)
            else:
                self._worlds.move_to_end(key)
            return world

    def render_native_png(self, spec: WorldSpec, tile: TileAddress, anchor: StoredAnchor | None = None) -> bytes:
        with torch.inference_mode():
            pixels = self.world(spec, anchor).render_chunk(tile.y, tile.x)
        return encode_png(pixels)

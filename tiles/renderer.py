"""Native tiles from the model: one tile is exactly one world chunk, so tiles share seams with render_region."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import torch

from infinitygan.generator import Generator
from infinitygan.world import World, WorldSpec
from tiles.anchors import StoredAnchor
from tiles.geometry import TileAddress
from tiles.imaging import encode_png

WORLD_MEMO_SIZE = 64


def model_hash_of(generator: Generator) -> str:
    """The checkpoint's hash when loaded from a file; else a hash of the config and weights (built in memory)."""
    known = getattr(generator, "model_hash", None)
    if known:
        return known
    digest = hashlib.sha256(generator.config.to_json().encode())
    for name, tensor in sorted(generator.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class TileRenderer:
    """Renders native tiles; thread-safe, so a pool of render threads can share one generator."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator.eval()
        self.model_hash = model_hash_of(generator)
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

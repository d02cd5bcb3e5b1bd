"""Native tiles from the model: one tile is exactly one world chunk, so tiles share seams with render_region."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping

import torch

from infinitygan.blend import Blend
from infinitygan.checkpoint import LoadedGenerator
from infinitygan.generator import FORWARD_VERSION, Generator
from infinitygan.runtime import ChunkSession, chunk_graph_bytes, runtime_id
from infinitygan.world import World, WorldSpec
from tiles.anchors import StoredAnchor
from tiles.errors import UnknownWorld
from tiles.geometry import TileAddress
from tiles.imaging import encode_png

WORLD_MEMO_SIZE = 64
BLEND_MEMO_SIZE = 8  # blended generators (a copy of the weights each)


class TileRenderer:
    """Renders native tiles; thread-safe, so a pool of render threads can share one generator.

    partners: layer-swapping partners (fine-tunes of the model) by model hash; a world with a Blend renders with the
    blended weights, computed once per blend and memoised."""

    def __init__(
        self,
        model: LoadedGenerator,
        partners: Mapping[str, LoadedGenerator] | None = None,
        *,
        runtime: str = "eager",
        threads: int = 1,
    ) -> None:
        """runtime: one of infinitygan.runtime.RUNTIMES; "onnxruntime" exports the model's chunk graph here (seconds)
        and renders plain chunks of unblended worlds with it, `threads` intra-op threads per render. Raises
        ValueError for an unknown runtime, RuntimeUnavailable where it is not installed."""
        self.generator = model.generator.eval()
        self.model_hash = model.model_hash
        self.runtime = runtime_id(runtime)  # checks the name before the export's seconds
        self.session = None if runtime == "eager" else ChunkSession(chunk_graph_bytes(self.generator), threads)
        self.scene_height = model.scene_height
        self.partners = dict(partners or {})
        self._worlds: OrderedDict[tuple[WorldSpec, str | None, Blend | None], World] = OrderedDict()
        self._blends: OrderedDict[Blend, Generator] = OrderedDict()
        self._lock = threading.Lock()

    def _generator_for(self, blend: Blend | None) -> Generator:
        """The model's generator, or its blend with a partner (UnknownWorld when this server lacks the partner)."""
        if blend is None:
            return self.generator
        generator = self._blends.get(blend)
        if generator is None:
            partner = self.partners.get(blend.partner)
            if partner is None:
                raise UnknownWorld(f"this server does not have the world's partner model {blend.partner}")
            generator = blend.apply(self.generator, partner.generator)
            self._blends[blend] = generator
            if len(self._blends) > BLEND_MEMO_SIZE:
                self._blends.popitem(last=False)
        else:
            self._blends.move_to_end(blend)
        return generator

    @property
    def render_id(self) -> str:
        """What a tile's bits depend on besides its world and address: the model, the runtime and the generator's
        arithmetic (FORWARD_VERSION): cache keys."""
        return f"{self.model_hash}.{self.runtime}.f{FORWARD_VERSION}"

    def world(self, spec: WorldSpec, anchor: StoredAnchor | None = None, blend: Blend | None = None) -> World:
        # A World precomputes its styles; memoise a few so each tile does not redo that.
        key = (spec, anchor.id if anchor is not None else None, blend)
        with self._lock:
            world = self._worlds.get(key)
            if world is None:
                generator = self._generator_for(blend)
                session = self.session if blend is None else None  # a blend's weights are not in the graph
                world = World(generator, spec, anchor.anchor if anchor is not None else None, session=session)
                self._worlds[key] = world
                if len(self._worlds) > WORLD_MEMO_SIZE:
                    self._worlds.popitem(last=False)
            else:
                self._worlds.move_to_end(key)
            return world

    def render_native_png(
        self, spec: WorldSpec, tile: TileAddress, anchor: StoredAnchor | None = None, blend: Blend | None = None
    ) -> bytes:
        with torch.inference_mode():
            pixels = self.world(spec, anchor, blend).render_chunk(tile.y, tile.x)
        return encode_png(pixels)

"""The exported runtime (infinitygan/runtime.py): the MobileStyleGAN student traced to ONNX and run by ONNX Runtime
matches the PyTorch student within RUNTIME_TOLERANCE, gives the same bits at 1 and 2 threads, and is a plain ONNX
protobuf (nothing pickled)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from infinitygan import FORWARD_VERSION, load_generator
from infinitygan.runtime import (
    RUNTIME_TOLERANCE,
    SIGNATURE_KEY,
    ChunkGraph,
    ChunkSession,
    chunk_arguments,
    export_chunk_graph,
    input_names,
)
from infinitygan.world import World, WorldSpec, render_region, to_uint8


@pytest.fixture(scope="module")
def student():
    return load_generator(None).generator  # the shipped model: the student


@pytest.fixture(scope="module")
def exported(student, tmp_path_factory) -> Path:
    return export_chunk_graph(student, tmp_path_factory.mktemp("onnx") / "student-chunk.onnx")


def test_export_is_a_checked_onnx_protobuf(exported, student):
    model = onnx.load(str(exported))
    onnx.checker.check_model(model)
    assert [node.name for node in model.graph.input][:4] == ["local", "coords", "structure_style", "texture_styles"]
    # Every noise input a layer reads; the signature in the metadata lists them all (ChunkSession feeds by it).
    # The output noise is read too (GeneratorConfig.output_noise).
    noisy = 2 * (len(student.texture.stages) - student.config.noise_free_stages) + int(student.config.output_noise)
    assert len(model.graph.input) == 4 + noisy
    signature = {prop.key: prop.value for prop in model.metadata_props}[SIGNATURE_KEY].split(",")
    assert signature == input_names(student) and len(signature) == 4 + student.texture.num_noises
    assert not list(exported.parent.glob("*.part"))  # the atomic write left nothing behind


@pytest.mark.parametrize(("seed", "psi", "chunk"), [(3, 0.8, (0, 0)), (11, 0.6, (-2, 7))])
def test_onnx_runtime_matches_the_pytorch_student(exported, student, seed, psi, chunk):
    """Other worlds and chunks than the traced one (seed 0, chunk (0, 0)): positions and seeds are inputs."""
    arguments = chunk_arguments(World(student, WorldSpec(seed=seed, psi=psi)), *chunk)
    with torch.no_grad():
        eager = ChunkGraph(student)(*arguments)
    one, two = ChunkSession(exported, threads=1).run(*arguments), ChunkSession(exported, threads=2).run(*arguments)
    assert np.array_equal(one, two), "ONNX Runtime output changed with the thread count"
    difference = float(np.abs(one - eager.numpy()).max())
    assert difference <= RUNTIME_TOLERANCE, difference
    levels = np.abs(to_uint8(torch.from_numpy(one[0])).astype(int) - to_uint8(eager[0]).astype(int))
    assert levels.max() <= 1 and (levels > 0).mean() < 1e-3


def test_the_session_rejects_a_wrong_input_count(exported):
    with pytest.raises(ValueError, match="inputs"):
        ChunkSession(exported).run(torch.zeros(1))
    with pytest.raises(ValueError, match="threads"):
        ChunkSession(exported, threads=0)


def test_a_world_with_a_session_stitches_bit_for_bit_and_stays_near_eager(exported, student):
    """Chunks through ONNX Runtime: a 512 render equals its four 256 quarters (and a render shifted by a chunk, so
    every chunk is computed in another call), and is within one 8-bit level of the eager render."""
    session = ChunkSession(exported.read_bytes(), threads=2)
    world = World(student, WorldSpec(seed=5, psi=0.8), session=session)
    whole = render_region(world, -256, -256, 512, 512)
    for x, y in ((-256, -256), (0, -256), (-256, 0), (0, 0)):
        assert np.array_equal(whole[y + 256 : y + 512, x + 256 : x + 512], render_region(world, x, y, 256, 256))
    eager = render_region(World(student, WorldSpec(seed=5, psi=0.8)), -256, -256, 512, 512)
    levels = np.abs(whole.astype(int) - eager.astype(int))
    assert levels.max() <= 1 and (levels > 0).mean() < 1e-3


def test_chunks_with_style_maps_render_eagerly_in_a_session_world(exported, student):
    """A biome transition's chunks have per-location styles, which the graph does not take: they render eagerly
    (the same bits as a world without a session), and the plain chunks beside them through the session."""
    from infinitygan.biomes import Biomes

    class CountingSession(ChunkSession):
        runs = 0

        def run(self, *arguments):
            CountingSession.runs += 1
            return super().run(*arguments)

    spec = WorldSpec(seed=5, biomes=Biomes(region_px=2048, transition_px=128))
    world = World(student, spec, session=CountingSession(exported))
    eager_world = World(student, spec)
    kinds = {world.graph_arguments(*world.chunk_window(0, x)) is None: x for x in range(-16, 16)}
    assert set(kinds) == {True, False}, "the row should cross both plain chunks and transitions"
    mapped, plain = kinds[True], kinds[False]
    assert np.array_equal(world.render_chunk(0, mapped), eager_world.render_chunk(0, mapped))
    assert CountingSession.runs == 0, "a chunk with style maps must not go through the graph"
    world.render_chunk(0, plain)
    assert CountingSession.runs == 1, "a plain chunk goes through the session"


def test_the_service_settings_pick_the_runtime_and_tile_keys_carry_it(student):
    """Another runtime's tiles may differ in rare bits, so they never share a cache key."""
    from infinitygan.checkpoint import LoadedGenerator
    from tiles.renderer import TileRenderer

    model = LoadedGenerator.in_memory(student)
    eager, onnx_runtime = TileRenderer(model), TileRenderer(model, runtime="onnxruntime")
    assert eager.session is None and onnx_runtime.session is not None
    assert eager.render_id != onnx_runtime.render_id and onnx_runtime.render_id.startswith(model.model_hash)
    assert onnx_runtime.render_id.endswith(f".f{FORWARD_VERSION}")  # the arithmetic, too
    with pytest.raises(ValueError, match="runtime"):
        TileRenderer(model, runtime="tensorrt")

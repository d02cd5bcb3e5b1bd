"""The exported runtime (infinitygan/runtime.py): the MobileStyleGAN student traced to ONNX and run by ONNX Runtime
matches the PyTorch student within RUNTIME_TOLERANCE, gives the same bits at 1 and 2 threads, and is a plain ONNX
protobuf (nothing pickled)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from infinitygan import load_generator
from infinitygan.runtime import (
    RUNTIME_TOLERANCE,
    ChunkGraph,
    ChunkSession,
    chunk_arguments,
    export_chunk_graph,
)
from infinitygan.world import World, WorldSpec, to_uint8

STUDENT = Path(__file__).resolve().parents[1] / "models" / "students" / "landscapes-small-mobile.safetensors"


@pytest.fixture(scope="module")
def student():
    return load_generator(STUDENT).generator


@pytest.fixture(scope="module")
def exported(student, tmp_path_factory) -> Path:
    return export_chunk_graph(student, tmp_path_factory.mktemp("onnx") / "student-chunk.onnx")


def test_export_is_a_checked_onnx_protobuf(exported, student):
    model = onnx.load(str(exported))
    onnx.checker.check_model(model)
    assert [node.name for node in model.graph.input][:4] == ["local", "coords", "structure_style", "texture_styles"]
    assert len(model.graph.input) == 4 + 2 * len(student.texture.stages)
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

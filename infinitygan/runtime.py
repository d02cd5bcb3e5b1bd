"""An exported inference runtime for a world's chunks: G traced to ONNX and run by ONNX Runtime (CPU provider).

Every chunk of a world is one z_S window of the same shape (World.render_chunk), so one graph with fixed shapes
serves them all: G as a function of plain tensors (z_l, the coordinate grid, the G_S style, W+ and the noise images),
traced for a window whose styles are one vector per layer (a plain world's chunk). Windows with per-location style
maps (biome transitions, photo anchors) have another signature and stay with eager PyTorch.

The graph is an ONNX protobuf (weights inside, nothing pickled); `export_chunk_graph` writes it atomically.
`ChunkSession` runs it with a fixed intra-op thread count and sequential execution, and `bench.bench_runtime` measures
that its output is bit-identical at 1 and 2 threads and how far it is from eager (tests/test_runtime.py holds it to
RUNTIME_TOLERANCE). onnxruntime and onnx are optional (the `dev` extra); importing this module does not need them.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from infinitygan.generator import Generator, WindowInputs
from infinitygan.world import World, WorldSpec

OPSET = 17
# Largest |ORT - eager| allowed on the image (values in [-1, 1]): a float32 sum taken in another order differs in the
# last bits (~1e-6 here); 1e-4 is a fortieth of one uint8 level (2 / 255), so a PNG differs in at most rare pixels
# that sit on a rounding boundary, by one level.
RUNTIME_TOLERANCE = 1e-4


class RuntimeUnavailable(RuntimeError):
    """onnxruntime (or onnx, which torch's exporter writes through) is not installed: `pip install .[dev]`."""


class ChunkGraph(torch.nn.Module):
    """G as a function of plain tensors, the form ONNX export and torch.compile trace.

    forward(local (1, local_dim, H, W), coords (1, 3, H, W), structure_style (1, global_dim),
    texture_styles (1, num_styles, w_dim), *noises (1, 1, H_l, W_l) per G_T layer) -> (1, 3, S, S) image."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, local, coords, structure_style, texture_styles, *noises):
        return self.generator(WindowInputs(local, coords, list(noises)), structure_style, texture_styles)


def input_names(generator: Generator) -> list[str]:
    layers = 2 * len(generator.texture.stages)
    return ["local", "coords", "structure_style", "texture_styles"] + [f"noise{i}" for i in range(layers)]


def chunk_arguments(world: World, chunk_y: int = 0, chunk_x: int = 0) -> tuple[torch.Tensor, ...]:
    """The graph's inputs for chunk (chunk_y, chunk_x) of a world without per-location styles.

    Raises ValueError where the window's styles are maps (a biome transition or a photo anchor nearby)."""
    window = world.chunk_window(chunk_y, chunk_x)
    inputs = world.window_inputs(*window)
    structure, texture = world.window_styles(*window)
    if structure.dim() != 2 or any(style.dim() != 2 for style in texture):
        raise ValueError(f"chunk ({chunk_y}, {chunk_x}) has per-location styles: the exported graph takes vectors")
    return (inputs.local_latents, inputs.coords, structure, torch.stack(texture, 1), *inputs.noises)


def export_chunk_graph(generator: Generator, path: str | os.PathLike) -> Path:
    """Trace G for one chunk window and write the ONNX graph (weights embedded) to `path`, atomically.

    Uses torch's TorchScript-based exporter (dynamo=False): the torch.export-based one needs onnxscript besides, and
    this graph has no control flow for it to gain on.

    Raises RuntimeUnavailable without the onnx package."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export serialises through it)
    except ImportError as error:
        raise RuntimeUnavailable("exporting needs the onnx package (pip install .[dev])") from error
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = generator.eval()
    arguments = chunk_arguments(World(generator, WorldSpec(seed=0)))
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    os.close(handle)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer warns that shape tests (batch of one, Haar band count) become constants: they are, for
            # the one fixed window shape this graph is for.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's, see above
            torch.onnx.export(
                ChunkGraph(generator).eval(),
                arguments,
                temporary,
                opset_version=OPSET,
                dynamo=False,
                input_names=input_names(generator),
                output_names=["image"],
            )
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


class ChunkSession:
    """An ONNX Runtime session of an exported chunk graph, on the CPU provider.

    threads: intra-op threads (>= 1); inter-op parallelism is off and execution sequential, so the order of every
    reduction is fixed by the graph. Raises RuntimeUnavailable without onnxruntime."""

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise RuntimeUnavailable("ONNX Runtime is not installed (pip install .[dev])") from error
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = [node.name for node in self.session.get_inputs()]

    def run(self, *arguments: torch.Tensor) -> np.ndarray:
        """The image, float32 (1, 3, S, S), for the graph's inputs in ChunkGraph.forward's order.

        Raises ValueError for a wrong number of inputs; ONNX Runtime raises for wrong shapes."""
        if len(arguments) != len(self.names):
            raise ValueError(f"the graph takes {len(self.names)} inputs, got {len(arguments)}")
        feeds = {
            name: np.ascontiguousarray(value.detach().numpy())
            for name, value in zip(self.names, arguments, strict=True)
        }
        return self.session.run(None, feeds)[0]

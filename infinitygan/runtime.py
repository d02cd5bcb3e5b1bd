"""An exported inference runtime for a world's chunks: G traced to ONNX and run by ONNX Runtime (CPU provider).

Every chunk of a world is one z_S window of the same shape (World.render_chunk), so one graph with fixed shapes
serves them all: G as a function of plain tensors (z_l, the coordinate grid, the G_S style, W+ and the noise images),
traced for a window whose styles are one vector per layer (a plain world's chunk). Windows with per-location style
maps (biome transitions, photo anchors) have another signature and stay with eager PyTorch.

The graph is an ONNX protobuf (weights inside, nothing pickled); `export_chunk_graph` writes it atomically.
`ChunkSession` runs it with a fixed intra-op thread count and sequential execution, and `bench.bench_runtime` measures
that its output is bit-identical at 1 and 2 threads and how far it is from eager (tests/test_runtime.py holds it to
RUNTIME_TOLERANCE). World takes a ChunkSession to render its chunks with; the service picks the runtime by
`INFINITYGAN_RUNTIME` (README: the runtimes measured). onnxruntime and onnx load on first use, not at import.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from infinitygan.checkpoint import write_atomic
from infinitygan.generator import Generator, WindowInputs
from infinitygan.world import World, WorldSpec

RUNTIMES = ("onnxruntime", "eager")
OPSET = 17
# Largest |ORT - eager| allowed on the image (values in [-1, 1]): float32 sums taken in another order differ in the
# last bits (measured: 1.6e-6 for the student, 3.2e-5 for the teacher); 1e-4 is 1/78 of one uint8 level (2 / 255),
# so a PNG differs only in rare pixels that sit on a rounding boundary, by one level.
RUNTIME_TOLERANCE = 1e-4


class RuntimeUnavailable(RuntimeError):
    """onnxruntime (or onnx, which torch's exporter writes through) is not installed."""


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
    """ChunkGraph.forward's arguments by name. The exporter drops inputs nothing reads (the noise images of
    noise-free stages), so the full list is also kept in the model's metadata (SIGNATURE_KEY)."""
    layers = generator.texture.num_noises
    return ["local", "coords", "structure_style", "texture_styles"] + [f"noise{i}" for i in range(layers)]


SIGNATURE_KEY = "infinitygan.chunk_inputs"


def chunk_arguments(world: World, chunk_y: int = 0, chunk_x: int = 0) -> tuple[torch.Tensor, ...]:
    """The graph's inputs for chunk (chunk_y, chunk_x) of a world (World.graph_arguments).

    Raises ValueError where the window's styles are maps (a biome transition or a photo anchor nearby)."""
    arguments = world.graph_arguments(*world.chunk_window(chunk_y, chunk_x))
    if arguments is None:
        raise ValueError(f"chunk ({chunk_y}, {chunk_x}) has per-location styles: the exported graph takes vectors")
    return arguments


def chunk_graph_bytes(generator: Generator) -> bytes:
    """G traced for one chunk window, as a serialised ONNX model (weights embedded).

    Uses torch's TorchScript-based exporter (dynamo=False): the torch.export-based one needs onnxscript besides, and
    this graph has no control flow for it to gain on. Raises RuntimeUnavailable without the onnx package."""
    try:
        import onnx  # torch.onnx.export serialises through it too
    except ImportError as error:
        raise RuntimeUnavailable("exporting needs the onnx package") from error
    generator = generator.eval()
    arguments = chunk_arguments(World(generator, WorldSpec(seed=0)))
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns that shape tests (batch of one, Haar band count) become constants: they are, for the one
        # fixed window shape this graph is for.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's, see above
        torch.onnx.export(
            ChunkGraph(generator).eval(),
            arguments,
            buffer,
            opset_version=OPSET,
            dynamo=False,
            input_names=input_names(generator),
            output_names=["image"],
        )
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, {SIGNATURE_KEY: ",".join(input_names(generator))})
    return model.SerializeToString()


def export_chunk_graph(generator: Generator, path: str | os.PathLike) -> Path:
    """chunk_graph_bytes written to `path` atomically (a reader never sees a partial file)."""
    path = Path(path)
    write_atomic(path, chunk_graph_bytes(generator))
    return path


def runtime_id(runtime: str) -> str:
    """What identifies a runtime's bits: "eager", or "onnxruntime-<version>" (another version may sum in another
    order). Raises ValueError for a runtime not in RUNTIMES."""
    if runtime == "eager":
        return "eager"
    if runtime == "onnxruntime":
        try:
            import onnxruntime
        except ImportError as error:
            raise RuntimeUnavailable("ONNX Runtime is not installed") from error
        return f"onnxruntime-{onnxruntime.__version__}"
    raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")


class ChunkSession:
    """An ONNX Runtime session of an exported chunk graph (its bytes or a path), on the CPU provider. Thread-safe:
    render threads share one.

    threads: intra-op threads (>= 1); inter-op parallelism is off and execution sequential, so the order of every
    reduction is fixed by the graph. Raises RuntimeUnavailable without onnxruntime."""

    def __init__(self, model: bytes | str | os.PathLike, threads: int = 1) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise RuntimeUnavailable("ONNX Runtime is not installed") from error
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        # Workers busy-wait between the graph's many small parallel sections instead of sleeping and waking: a
        # student chunk's graph took 4.2 instead of 5.1-7.4 ms on 2 threads (twelfth session). It once cost more
        # than it saved, while the chunk's own uint8 conversion ran on torch's thread pool, which spins too; now
        # World.render_chunk's work around the graph is NumPy on the calling thread (6.6 against 9.6 ms a chunk).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
        source = model if isinstance(model, bytes) else str(model)
        self.session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        used = {node.name for node in self.session.get_inputs()}
        signature = self.session.get_modelmeta().custom_metadata_map.get(SIGNATURE_KEY)
        if signature is None:
            raise ValueError(f"{source if isinstance(source, str) else 'the model'} is not an exported chunk graph")
        self.names = signature.split(",")  # ChunkGraph.forward's arguments
        self.used = [name in used for name in self.names]  # those the graph reads

    def run(self, *arguments: torch.Tensor) -> np.ndarray:
        """The image, float32 (1, 3, S, S), for ChunkGraph.forward's arguments in its order (those the graph does not
        read, e.g. noise images of noise-free stages, are not passed on).

        Raises ValueError for a wrong number of inputs; ONNX Runtime raises for wrong shapes."""
        if len(arguments) != len(self.names):
            raise ValueError(f"the graph takes {len(self.names)} inputs, got {len(arguments)}")
        feeds = {
            name: np.ascontiguousarray(value.detach().numpy())
            for name, value, used in zip(self.names, arguments, self.used, strict=True)
            if used
        }
        return self.session.run(None, feeds)[0]

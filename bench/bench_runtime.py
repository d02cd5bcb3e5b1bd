"""Inference runtimes for a generator chunk, compared in one run: eager PyTorch, ONNX Runtime (CPU provider) and
torch.compile (inductor), each at 1 and 2 threads.

For each: ms per 256x256 chunk (median after warm-up, batch 1), whether its output at 2 threads is bit-identical to
its output at 1 thread, and its largest difference from eager. A runtime the service may use must keep tiles
bit-identical across thread counts and processes (issue 14), so identity is printed beside speed.

    .venv/bin/python -m bench.bench_runtime [--checkpoint PATH] [--repeats 15]

Default checkpoint: a small-mobile student built from the shipped model (an undistilled student costs what a
distilled one does). The ONNX graph is traced for a window with one style vector per layer (a plain world's chunk);
windows with per-location style maps (biome transitions, photo anchors) trace to another graph.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import median_ms, time_call
from infinitygan.runtime import ChunkGraph, ChunkSession, chunk_arguments, export_chunk_graph
from infinitygan.world import World, WorldSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="generator checkpoint (default: the shipped student)")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    from infinitygan import load_generator

    generator = load_generator(args.checkpoint).generator
    name = args.checkpoint or "the shipped student"
    graph = ChunkGraph(generator.eval()).eval()
    arguments = chunk_arguments(World(generator, WorldSpec(seed=3, psi=0.8)))
    print(f"model: {name}; one 256x256 chunk, batch 1, fp32; torch {torch.__version__}")

    results: dict[tuple[str, int], tuple[float, np.ndarray]] = {}
    with torch.no_grad():
        for threads in (1, 2):
            torch.set_num_threads(threads)
            output = graph(*arguments).numpy().copy()
            results["eager", threads] = (median_ms(time_call(lambda: graph(*arguments), repeats=args.repeats)), output)

        with tempfile.TemporaryDirectory() as tmp:
            path = export_chunk_graph(generator, Path(tmp) / "chunk.onnx")
            for threads in (1, 2):
                session = ChunkSession(path, threads)
                output = session.run(*arguments)
                ms = median_ms(time_call(lambda session=session: session.run(*arguments), repeats=args.repeats))
                results["onnxruntime", threads] = (ms, output)

        for threads in (1, 2):
            torch.set_num_threads(threads)
            compiled = torch.compile(graph)
            started = time.perf_counter()
            output = compiled(*arguments).numpy().copy()
            print(f"torch.compile at {threads} thread(s): first call (compiling) {time.perf_counter() - started:.1f} s")
            ms = median_ms(time_call(lambda compiled=compiled: compiled(*arguments), repeats=args.repeats))
            results["torch.compile", threads] = (ms, output)

    eager = results["eager", 1][1]
    print(f"\n{'runtime':15} {'threads':>7} {'ms/chunk':>9} {'= own 1-thread bits':>20} {'max |diff| vs eager':>20}")
    for (runtime, threads), (ms, output) in results.items():
        identical = np.array_equal(output, results[runtime, 1][1])
        print(f"{runtime:15} {threads:7d} {ms:9.1f} {str(identical):>20} {float(np.abs(output - eager).max()):20.2e}")
    base = results["eager", 2][0]
    print("\nspeed-up over eager at 2 threads: " + ", ".join(
        f"{runtime} {base / results[runtime, 2][0]:.2f}x" for runtime in ("onnxruntime", "torch.compile")
    ))  # fmt: skip


if __name__ == "__main__":
    main()

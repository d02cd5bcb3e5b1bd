"""What the served biomes cost per native tile: a world of one look against a world with the served biomes
(infinitygan.biomes.SERVED_REGION_PX / SERVED_TRANSITION_PX, what POST /worlds gives a world that does not ask
otherwise), rendered as the service renders (ONNX Runtime for chunks whose styles are vectors, eager PyTorch for the
chunks near a region boundary, whose styles are per-location maps).

Prints, per model: the share of chunk columns that render eagerly, ms per chunk over a row of chunks spanning
several regions (the mean, since the row mixes the two paths; the two worlds are timed in turn, round after round, so
a change in the shared machine's speed moves both alike) and their ratio.

    .venv/bin/python -m bench.bench_biomes [--checkpoint PATH ...] [--chunks 48] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from infinitygan import World, WorldSpec, load_generator
from infinitygan.biomes import Biomes
from infinitygan.checkpoint import TEACHER_MODEL
from infinitygan.runtime import ChunkSession, chunk_graph_bytes


def row_ms(world: World, columns: range) -> float:
    """Mean ms per chunk over chunk row 0, columns `columns`."""
    start = time.perf_counter()
    for column in columns:
        world.render_chunk(0, column)
    return (time.perf_counter() - start) / len(columns) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", nargs="*", default=None, help="default: the served student and its teacher")
    parser.add_argument("--chunks", type=int, default=48, help="chunk columns per row (256 px each)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    paths = args.checkpoint or [None, TEACHER_MODEL]
    columns = range(-args.chunks // 2, args.chunks - args.chunks // 2)
    biomes = Biomes()
    print(f"torch threads {torch.get_num_threads()}; biomes {biomes.region_px}:{biomes.transition_px}; "
          f"{len(columns)} chunks of row 0")  # fmt: skip
    for path in paths:
        model = load_generator(path)
        session = ChunkSession(chunk_graph_bytes(model.generator), threads=torch.get_num_threads())
        worlds = {
            "one look": World(model.generator, WorldSpec(seed=0), session=session),
            "served biomes": World(model.generator, WorldSpec(seed=0, biomes=biomes), session=session),
        }
        eager = sum(not worlds["served biomes"].chunk_styles_are_vectors(0, c) for c in columns) / len(columns)
        for world in worlds.values():
            world.render_chunk(0, 0)  # warm-up
        samples: dict[str, list[float]] = {name: [] for name in worlds}
        for _ in range(args.rounds):
            for name, world in worlds.items():
                samples[name].append(row_ms(world, columns))
        plain, biome = (statistics.median(samples[name]) for name in worlds)
        print(f"{path or 'served student'} ({model.model_hash}): eager chunks {eager:.0%}, one look {plain:.1f} ms, "
              f"served biomes {biome:.1f} ms per chunk: {biome / plain:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()

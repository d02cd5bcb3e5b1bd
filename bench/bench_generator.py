"""Generator cost per 256x256 tile, for each preset and upsampler, and the shipped teacher against its
MobileStyleGAN student (issue 14: the student at most 25 ms per tile and at least 4x faster than the eager teacher).

Prints GFLOP per tile (counted by torch's FlopCounterMode over the convolutions and matmuls), ms per tile (median,
batch 1, after warm-up), and achieved GFLOP/s as a ratio of the dense fp32 matmul peak measured in the same run.
Then the peak RSS of an 8192x2048 CLI render (target: ~2 GB at most).

    .venv/bin/python -m bench.bench_generator [--presets tiny small] [--repeats 5] [--skip-big-render]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.common import matmul_peak_gflops, median_ms, time_call
from infinitygan import PRESETS, World, WorldSpec, build_generator, save_generator
from infinitygan.config import UPSAMPLERS


def tile_gflop(world: World) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        world.render_chunk(0, 0)
    return counter.get_total_flops() / 1e9


def big_render_rss(preset: str, width: int, height: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_generator(build_generator(preset), Path(tmp) / "model.safetensors")
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "infinitygan", "render", "--checkpoint", str(checkpoint), "--seed", "1",
             "--x", "0", "--y", "-1024", "--width", str(width), "--height", str(height),
             "--out", str(Path(tmp) / "big.png"), "--quiet"],
            check=True,
        )  # fmt: skip
        seconds = time.perf_counter() - start
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, seconds


def teacher_vs_student(repeats: int, peak: float) -> None:
    """The teacher and the shipped student distilled from it (the served default), timed on the same tile in one
    run, eager and through ONNX Runtime (the service's default runtime, infinitygan.runtime) with as many threads as
    torch has here. The four are timed in turn, round after round, so a change in the shared machine's speed
    during the run moves them all alike and the ratios stay fair."""
    from infinitygan import load_generator
    from infinitygan.checkpoint import TEACHER_MODEL
    from infinitygan.runtime import ChunkSession, chunk_graph_bytes

    teacher = load_generator(TEACHER_MODEL).generator
    student = load_generator(None).generator
    print("\nteacher vs the shipped student (small-mobile), one 256x256 chunk, fp32:")
    worlds, gflops = {}, {}
    for name, generator in (("teacher", teacher), ("student", student)):
        gflops[name] = tile_gflop(World(generator, WorldSpec(seed=1)))
        session = ChunkSession(chunk_graph_bytes(generator), threads=torch.get_num_threads())
        worlds[name, "eager"] = World(generator, WorldSpec(seed=1))
        worlds[name, "onnxruntime"] = World(generator, WorldSpec(seed=1), session=session)
    samples = {key: [] for key in worlds}
    for _ in range(repeats):
        for key, world in worlds.items():
            samples[key].extend(time_call(lambda w=world: w.render_chunk(3, -2), repeats=3))
    results = {key: median_ms(values) for key, values in samples.items()}
    for (name, runtime), ms in results.items():
        print(
            f"  {name:<8} {runtime:<12} {gflops[name]:>6.2f} GFLOP/tile {ms:>8.1f} ms/tile "
            f"{gflops[name] / (ms / 1e3) / peak:>6.0%} of peak"
        )
    eager_teacher = results["teacher", "eager"]
    print(
        "  over the eager teacher: "
        + ", ".join(f"{name} {runtime} {eager_teacher / ms:.2f}x" for (name, runtime), ms in results.items())
    )


def blend_cost(repeats: int) -> None:
    """A layer-swapped world against a plain one (issue 15: at most 1.2x per tile): the blend is computed once per
    world, then it is a plain generator. Timed alternately on the same tile, medians over the repeats."""
    from infinitygan import load_generator
    from infinitygan.blend import blend_generators

    base, partner = load_generator(None).generator, load_generator(None).generator
    start = time.perf_counter()
    blended = blend_generators(base, partner, 2.0, smooth=0.5)
    blend_ms = (time.perf_counter() - start) * 1e3
    plain_world, blended_world = World(base, WorldSpec(seed=1)), World(blended, WorldSpec(seed=1))
    plain_ms, blended_ms = [], []
    for _ in range(repeats):
        plain_ms.append(median_ms(time_call(lambda: plain_world.render_chunk(3, -2), repeats=1)))
        blended_ms.append(median_ms(time_call(lambda: blended_world.render_chunk(3, -2), repeats=1)))
    ratio = sorted(blended_ms)[len(blended_ms) // 2] / sorted(plain_ms)[len(plain_ms) // 2]
    print(f"\nlayer-swapped world: blend {blend_ms:.0f} ms once, then {ratio:.2f}x a plain world's ms per tile")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "base"], choices=sorted(PRESETS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-big-render", action="store_true")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    peak = matmul_peak_gflops()
    print(f"dense fp32 matmul peak: {peak:.1f} GFLOP/s\n")
    header = ("preset", "upsampler", "params", "GFLOP/tile", "ms/tile", "GFLOP/s", "of peak")
    print("{:<7} {:<11} {:>10} {:>11} {:>9} {:>8} {:>8}".format(*header))
    for preset in args.presets:
        for upsampler in UPSAMPLERS:
            generator = build_generator(preset, upsampler=upsampler)
            world = World(generator, WorldSpec(seed=1))
            gflop = tile_gflop(world)
            repeats = max(1, args.repeats // 3) if preset == "base" else args.repeats
            ms = median_ms(time_call(lambda w=world: w.render_chunk(3, -2), repeats=repeats))
            achieved = gflop / (ms / 1e3)
            params = sum(p.numel() for p in generator.parameters())
            print(
                f"{preset:<7} {upsampler:<11} {params:>10,} {gflop:>11.2f} {ms:>9.1f} {achieved:>8.1f} "
                f"{achieved / peak:>7.0%}"
            )
    teacher_vs_student(args.repeats, peak)
    blend_cost(args.repeats)
    if not args.skip_big_render:
        rss_mb, seconds = big_render_rss("small", 8192, 2048)
        print(f"\n8192x2048 render, small preset, CLI process: {seconds:.1f} s, peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()

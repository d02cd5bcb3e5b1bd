"""Shared helpers for the benchmarks: a dense-matmul peak measured in the same run, and robust timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def time_call(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds per call, after warm-up calls (first calls pay for allocator and oneDNN kernel setup)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def matmul_peak_gflops(size: int = 1024, repeats: int = 10) -> float:
    """Best-of dense fp32 matmul throughput on this machine, now, with the current thread count."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    best = min(time_call(lambda: a @ b, repeats=repeats, warmup=2))
    return 2 * size**3 / best / 1e9


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3

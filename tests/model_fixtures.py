"""Small generators for tests: tiny presets with every input made to matter."""

from __future__ import annotations

import torch

from infinitygan import Generator, build_generator


def lively_tiny_generator(upsampler: str = "transposed", init_seed: int = 0) -> Generator:
    """A tiny generator whose noise strengths are non-zero, so misaligned noise would show up as seams."""
    generator = build_generator("tiny", init_seed=init_seed, upsampler=upsampler)
    with torch.no_grad():
        for index, module in enumerate(m for m in generator.modules() if hasattr(m, "strength")):
            module.strength.fill_(0.3 + 0.05 * index)
    return generator

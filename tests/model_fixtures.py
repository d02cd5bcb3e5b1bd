"""Small generators for tests: tiny presets with every input made to matter."""

from __future__ import annotations

import dataclasses

import torch

from infinitygan import Generator, build_generator, preset_config

# Every upsampler, with and without SWAGAN's wavelet output ("+wavelet": three feature stages and Haar bands out,
# so the latent cell stays 16 px like the others; "+linear": its low band placed bilinearly, output_low_band).
ARCHITECTURES = ["transposed", "haar", "transposed+wavelet", "haar+wavelet", "haar+wavelet+linear"]


def tiny_config(architecture: str = "transposed"):
    upsampler, *output = architecture.split("+")
    config = preset_config("tiny", upsampler)
    if "wavelet" in output:
        config = dataclasses.replace(config, texture_widths=config.texture_widths[:-1], wavelet_output=True)
    if "linear" in output:
        config = dataclasses.replace(config, output_low_band="linear")
    return config


def lively_tiny_generator(architecture: str = "transposed", init_seed: int = 0) -> Generator:
    """A tiny generator whose noise strengths are non-zero, so misaligned noise would show up as seams."""
    generator = build_generator(tiny_config(architecture), init_seed=init_seed)
    with torch.no_grad():
        for index, module in enumerate(m for m in generator.modules() if hasattr(m, "strength")):
            module.strength.fill_(0.3 + 0.05 * index)
    return generator


def served_world(generator: Generator, spec, anchor=None):
    """The world as the service and `infinitygan render` draw it by default: plain chunks through ONNX Runtime."""
    from infinitygan.runtime import ChunkSession, chunk_graph_bytes
    from infinitygan.world import World

    return World(generator, spec, anchor, session=ChunkSession(chunk_graph_bytes(generator)))

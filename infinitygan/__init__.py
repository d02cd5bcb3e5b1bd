"""InfinityGAN for endless, reproducible landscapes: model library (pure PyTorch, no web code)."""

from infinitygan.checkpoint import CheckpointError, LoadedGenerator, load_generator, save_generator
from infinitygan.config import PRESETS, GeneratorConfig, preset_config
from infinitygan.generator import FORWARD_VERSION, Generator, WindowInputs, build_generator
from infinitygan.geometry import Geometry
from infinitygan.world import CHUNK_PX, COORD_LIMIT, DEFAULT_PSI, RegionError, World, WorldSpec, render_region

__all__ = [
    "CHUNK_PX",
    "COORD_LIMIT",
    "DEFAULT_PSI",
    "FORWARD_VERSION",
    "PRESETS",
    "CheckpointError",
    "Generator",
    "GeneratorConfig",
    "LoadedGenerator",
    "Geometry",
    "RegionError",
    "WindowInputs",
    "World",
    "WorldSpec",
    "build_generator",
    "load_generator",
    "preset_config",
    "render_region",
    "save_generator",
]

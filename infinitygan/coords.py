"""InfinityGAN's coordinate channels: (tanh(vertical), cos(horizontal), sin(horizontal)).

The vertical channel saturates a few cells away from an absolute horizon at world pixel row 0 (endless sky above,
endless ground below); the horizontal pair is periodic. Nothing depends on the canvas being rendered.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from infinitygan.config import GeneratorConfig


def coordinate_grid(row_px: np.ndarray, col_cells: np.ndarray, config: GeneratorConfig) -> torch.Tensor:
    """(3, H, W) coordinates for latent rows centred at world pixel rows `row_px` (relative to the horizon) and
    latent columns `col_cells` (cell indices; fractional values allowed for training jitter).

    Integer columns should already be reduced modulo the period by the caller (exact integer arithmetic), so that
    columns near 2**36 lose no precision.
    """
    cell_px = config.cell_px
    vertical = np.tanh(config.vertical_gain * np.asarray(row_px, dtype=np.float64) / cell_px)
    angle = (2.0 * math.pi / config.coord_period_cells) * np.asarray(col_cells, dtype=np.float64)
    height, width = vertical.shape[0], angle.shape[0]
    grid = np.empty((3, height, width), dtype=np.float64)
    grid[0] = vertical[:, None]
    grid[1] = np.cos(angle)[None, :]
    grid[2] = np.sin(angle)[None, :]
    return torch.from_numpy(grid.astype(np.float32))

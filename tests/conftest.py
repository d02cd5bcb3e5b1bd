"""Shared pytest configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "network: downloads from a package registry; runs only when RUN_NETWORK_TESTS=1")


@pytest.fixture(scope="module")
def landscape_dir(tmp_path_factory) -> Path:
    """Four synthetic 'landscapes' (scene0..3.png, 320x200): a sky gradient above a noisy ground, horizon near the
    middle."""
    folder = tmp_path_factory.mktemp("landscapes")
    rng = np.random.default_rng(0)
    for i in range(4):
        height, width = 200, 320
        rows = np.arange(height)[:, None, None]
        sky = np.broadcast_to(np.array([90, 140, 230]) - rows * 0.3, (height, width, 3))
        ground = np.array([60 + 20 * i, 110, 40]) + rng.normal(0, 25, (height, width, 3))
        horizon = height // 2 + rng.integers(-10, 10)
        pixels = np.where(rows < horizon, sky, ground).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"scene{i}.png")
    return folder


@pytest.fixture
def one_thread():
    """Training tests run on one torch thread (request with pytestmark = pytest.mark.usefixtures)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

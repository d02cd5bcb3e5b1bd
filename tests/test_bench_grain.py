"""bench_grain's statistic: the finest band holds isolated bright pixels, not smooth gradients."""

from __future__ import annotations

import math

import torch

from bench.bench_grain import grain_on_edges, grain_stats


def test_smooth_images_have_no_grain_and_salt_has_bright_pixels():
    ramp = torch.linspace(-1, 1, 64).expand(2, 3, 64, 64).contiguous()
    smooth = grain_stats(ramp)
    assert smooth["q99.9"] < 0.05 and smooth[">0.2"] == 0.0
    salt = ramp.clone()
    salt[:, :, 10::16, 10::16] = 1.0  # isolated white pixels, 1 in 256
    speckled = grain_stats(salt)
    assert speckled[">0.2"] > 0.002 and speckled["q99.9"] > 0.2


def test_grain_on_edges_tells_speckle_on_a_rim_from_speckle_in_a_field():
    images = torch.full((1, 3, 64, 64), -0.5)
    images[:, :, 28:36] = torch.linspace(-0.5, 0.5, 8)[:, None]  # a soft horizon: no fine detail of its own
    images[:, :, 36:] = 0.5
    on_rim, in_field = images.clone(), images.clone()
    on_rim[:, :, 30, 4:60:6] = 1.0  # white grains along the edge
    in_field[:, :, 50, 4:60:6] = 1.0  # as many in the flat ground below it
    assert grain_on_edges(on_rim, edge_threshold=0.2) == 1.0
    assert grain_on_edges(in_field, edge_threshold=0.2) == 0.0
    assert math.isnan(grain_on_edges(images, edge_threshold=0.2))  # no bright grain at all

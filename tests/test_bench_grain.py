"""bench_grain's statistic: the finest band holds isolated bright pixels, not smooth gradients."""

from __future__ import annotations

import torch

from bench.bench_grain import grain_stats


def test_smooth_images_have_no_grain_and_salt_has_bright_pixels():
    ramp = torch.linspace(-1, 1, 64).expand(2, 3, 64, 64).contiguous()
    smooth = grain_stats(ramp)
    assert smooth["q99.9"] < 0.05 and smooth[">0.2"] == 0.0
    salt = ramp.clone()
    salt[:, :, 10::16, 10::16] = 1.0  # isolated white pixels, 1 in 256
    speckled = grain_stats(salt)
    assert speckled[">0.2"] > 0.002 and speckled["q99.9"] > 0.2

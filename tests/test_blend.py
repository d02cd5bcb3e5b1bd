"""Layer swapping (Pinkney & Adler): coarse layers from the base model, fine ones from its fine-tuned partner."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infinitygan import World, WorldSpec, build_generator, render_region
from infinitygan.blend import blend_generators, layer_level, partner_weight, swap_levels
from tests.model_fixtures import lively_tiny_generator


def partner_of(base):
    """A stand-in for a fine-tune: the base's weights, nudged everywhere (same architecture)."""
    partner = build_generator(base.config, init_seed=0)
    partner.load_state_dict(base.state_dict())
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        for parameter in partner.parameters():
            scale = parameter.abs().mean().clamp_min(0.1)
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator) * scale)
    return partner


def test_levels_and_shares():
    assert layer_level("mapping.layers.0.weight", 4) is None and layer_level("structure.blocks.1.conv.weight", 4) == 0
    assert layer_level("texture.stages.2.conv.conv.weight", 4) == 3
    assert layer_level("texture.output_noise.filters", 3) == 4
    assert layer_level("texture.skip_upsample.blur_kernel", 3) is None
    with pytest.raises(ValueError, match="no resolution level"):
        layer_level("texture.something_new.weight", 4)
    assert [partner_weight(level, 2) for level in range(5)] == [0, 0, 0, 1, 1]
    smooth = [partner_weight(level, 2, smooth=0.5) for level in range(5)]
    assert smooth == sorted(smooth) and smooth[2] == 0.5 and 0 < smooth[0] < 0.05 and smooth[4] > 0.95


def test_a_hard_swap_takes_coarse_layers_from_the_base_and_fine_ones_from_the_partner():
    base = lively_tiny_generator()
    partner = partner_of(base)
    blended = blend_generators(base, partner, swap_level=2)
    for name, tensor in blended.state_dict().items():
        level = layer_level(name, len(base.texture.stages))
        source = base if level is None or level <= 2 else partner
        assert torch.equal(tensor, source.state_dict()[name]), name
    # Nothing from the partner below the cut, everything above: the extremes are the parents themselves.
    assert all(torch.equal(a, b) for a, b in zip(blend_generators(base, partner, 99).state_dict().values(),
                                                  base.state_dict().values(), strict=True))  # fmt: skip


def test_a_blended_world_differs_from_both_parents_and_is_reproducible():
    base = lively_tiny_generator()
    partner = partner_of(base)
    area = (-128, -128, 256, 256)
    renders = {
        name: render_region(World(generator, WorldSpec(seed=2)), *area)
        for name, generator in (
            ("base", base),
            ("partner", partner),
            ("blend", blend_generators(base, partner, 1.5, smooth=0.5)),
            ("again", blend_generators(base, partner, 1.5, smooth=0.5)),
        )
    }
    assert not np.array_equal(renders["blend"], renders["base"])
    assert not np.array_equal(renders["blend"], renders["partner"])
    assert np.array_equal(renders["blend"], renders["again"])


def test_different_architectures_are_refused():
    with pytest.raises(ValueError, match="same architecture"):
        blend_generators(build_generator("tiny"), build_generator("tiny-mobile"), 1)


def test_students_blend_too_their_output_noise_being_the_finest_level():
    """A MobileStyleGAN student (the served model) has an output noise beyond its last stage: the finest level."""
    base = build_generator("tiny-mobile", init_seed=1)
    partner = partner_of(base)
    levels = swap_levels(base)
    assert levels == len(base.texture.stages) + 2
    for swap_level, source in ((levels - 2, partner), (levels - 1, base)):
        blended = blend_generators(base, partner, swap_level)
        state, expected = blended.state_dict(), source.state_dict()
        assert torch.equal(state["texture.output_noise.filters"], expected["texture.output_noise.filters"])
    render_region(World(blend_generators(base, partner, 1.5, smooth=0.5), WorldSpec(seed=2)), 0, 0, 64, 64)

import dataclasses

import pytest
import torch

from infinitygan import World, WorldSpec
from infinitygan.geometry import Geometry
from tests.model_fixtures import ARCHITECTURES, lively_tiny_generator, tiny_config

UPSAMPLERS = ARCHITECTURES


@pytest.mark.parametrize("upsampler", UPSAMPLERS)
@pytest.mark.parametrize("cells", [6, 9, 13])
def test_size_algebra_matches_module_outputs(upsampler, cells):
    generator = lively_tiny_generator(upsampler)
    geometry = generator.geometry
    if cells < geometry.min_cells():
        pytest.skip("window smaller than the architecture's minimum")
    world = World(generator, WorldSpec(seed=1))
    inputs = world.window_inputs(0, 0, cells, cells + 2)
    z_s = generator.structure(inputs.local_latents, inputs.coords, world.structure_style)
    assert z_s.shape[-2:] == (cells, cells + 2)
    image = generator(inputs, world.structure_style, world.texture_styles)
    assert image.shape[-2:] == (geometry.texture_size(cells), geometry.texture_size(cells + 2))
    assert [n.shape[-1] for n in inputs.noises] == geometry.layer_sizes(cells + 2)
    k = geometry.stages
    features = 2**k * cells - (5 if upsampler.startswith("transposed") else 2) * (2**k - 1)
    assert features == geometry.layer_sizes(cells)[-1]
    expected = 2 * features - 2 * geometry.output_margin if geometry.wavelet_output else features
    assert geometry.texture_size(cells) == expected
    assert geometry.cell_px == 16


def test_reference_sizes_of_the_paper():
    geometry = Geometry(stages=4, upsampler="transposed", structure_margin=12)
    # 11 -> 19 -> 17 -> 31 -> 29 -> 55 -> 53 -> 103 -> 101 (InfinityGAN's 101 px configuration).
    assert geometry.layer_sizes(11) == [19, 17, 31, 29, 55, 53, 103, 101]
    assert geometry.pixel_offset == 30 and geometry.center_frac == 0.0
    assert geometry.structure_cell_reach() == 45  # each z_S cell influences 91 px
    assert geometry.local_cells(11) == 35


@pytest.mark.parametrize("upsampler", UPSAMPLERS)
def test_window_for_span_covers_exactly(upsampler):
    geometry = lively_tiny_generator(upsampler).geometry
    for first, length in [(0, 256), (-37, 300), (10**9, 1), (-(2**40), 513)]:
        window = geometry.window_for_span(first, length)
        assert window.first_pixel <= first
        assert window.first_pixel + window.size >= first + length
        assert geometry.texture_size(window.cells - 1) < first + length - window.first_pixel  # smallest
        assert window.first_pixel == geometry.cell_px * window.start + geometry.pixel_offset


@pytest.mark.parametrize("upsampler", UPSAMPLERS)
def test_alignment_pixels_agree_between_offset_windows(upsampler):
    """A window starting one cell later renders the same world pixels cell_px further along."""
    generator = lively_tiny_generator(upsampler)
    world, geometry = World(generator, WorldSpec(seed=4)), generator.geometry
    n = geometry.min_cells() + 3
    a = world.render_window(5, -3, n, n)
    b = world.render_window(6, -2, n, n)
    shift = geometry.cell_px
    torch.testing.assert_close(b[..., :-shift, :-shift], a[..., shift:, shift:], rtol=0, atol=2e-5)


@pytest.mark.parametrize("upsampler", UPSAMPLERS)
def test_one_latent_cell_changes_pixels_only_inside_its_footprint(upsampler):
    generator = lively_tiny_generator(upsampler)
    world, geometry = World(generator, WorldSpec(seed=2)), generator.geometry
    cells = 40  # z_S window wide enough that the footprint lies strictly inside it
    inputs = world.window_inputs(0, 0, cells, cells)
    with torch.no_grad():
        base = generator(inputs, world.structure_style, world.texture_styles)[0]
        target_row, target_col = 31, 29  # z_l index inside the window (global cell = index - margin)
        inputs.local_latents[0, :, target_row, target_col] += 3.0
        changed = generator(inputs, world.structure_style, world.texture_styles)[0]
    diff = (changed - base).abs().amax(dim=0)
    rows, cols = torch.nonzero(diff > 0, as_tuple=True)
    assert rows.numel() > 0, "perturbing a local latent must change some pixels"
    origin = geometry.pixel_offset  # world pixel of output index 0 (window starts at z_S cell 0)
    m = geometry.structure_margin
    lo_r, hi_r = geometry.local_cell_footprint(target_row - m)
    lo_c, hi_c = geometry.local_cell_footprint(target_col - m)
    assert lo_r <= int(rows.min()) + origin and int(rows.max()) + origin < hi_r
    assert lo_c <= int(cols.min()) + origin and int(cols.max()) + origin < hi_c
    # and the footprint is tight: the change reaches close to its documented edges
    assert int(rows.max()) + origin >= hi_r - 1 - geometry.cell_px


def test_linear_output_low_band_is_the_bilinear_nearest_output_without_blocks():
    """With the detail bands silenced, a "nearest" wavelet output is 2 x 2 blocks of its low band; "linear" places
    the same low band bilinearly: the bilinear interpolation of those block values, one pixel cropped per side."""
    nearest = lively_tiny_generator("haar+wavelet")
    linear = lively_tiny_generator("haar+wavelet+linear")
    linear.load_state_dict(nearest.state_dict())
    for generator in (nearest, linear):
        with torch.no_grad():
            generator.texture.stages[-1].to_rgb.conv.weight[3:].zero_()
            generator.texture.stages[-1].to_rgb.bias[:, 3:].zero_()
    assert nearest.texture.output_noise is None
    world = World(nearest, WorldSpec(seed=3))
    cells = nearest.geometry.min_cells() + 2
    inputs = world.window_inputs(0, 0, cells, cells)
    with torch.no_grad():
        blocks = nearest(inputs, world.structure_style, world.texture_styles)
        smooth = linear(inputs, world.structure_style, world.texture_styles)
    values = blocks[..., ::2, ::2]
    torch.testing.assert_close(blocks, values.repeat_interleave(2, 2).repeat_interleave(2, 3))
    bilinear = torch.nn.functional.interpolate(values, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(smooth, bilinear[..., 1:-1, 1:-1], rtol=0, atol=1e-5)
    assert linear.geometry.output_origin == nearest.geometry.output_origin + 1


def test_output_low_band_needs_a_wavelet_output():
    with pytest.raises(ValueError, match="output_low_band needs wavelet_output"):
        dataclasses.replace(tiny_config("haar"), output_low_band="linear")
    with pytest.raises(ValueError, match="output_low_band must be one of"):
        dataclasses.replace(tiny_config("haar+wavelet"), output_low_band="cubic")


@pytest.mark.parametrize("upsampler", UPSAMPLERS)
def test_cells_covering_is_the_smallest_window_that_covers(upsampler):
    geometry = lively_tiny_generator(upsampler).geometry
    for px in (1, 69, 256, 1000):
        cells = geometry.cells_covering(px)
        assert cells >= geometry.min_cells() and geometry.texture_size(cells) >= px
        assert cells == geometry.min_cells() or geometry.texture_size(cells - 1) < px

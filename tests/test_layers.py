import pytest
import torch
import torch.nn.functional as F

from infinitygan.layers import (
    EqualLinear,
    HaarSkipUpsample,
    HaarUpsampleConv,
    MappingNetwork,
    ModulatedConv2d,
    NoiseInjection,
    TransposedUpsampleConv,
    scaled_leaky_relu,
)
from infinitygan.wavelets import haar_dwt, haar_iwt


def reference_modulated_conv(x, weight, s, demodulate):
    """StyleGAN2's direct form: per-sample weights w'_oik = s_i w_oik, demodulated, as a grouped conv."""
    b, c_in = s.shape
    c_out, _, k, _ = weight.shape
    w = weight[None] * s[:, None, :, None, None] / (c_in * k * k) ** 0.5
    if demodulate:
        w = w / torch.sqrt(w.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    out = F.conv2d(x.reshape(1, b * c_in, *x.shape[-2:]), w.reshape(b * c_out, c_in, k, k), groups=b)
    return out.reshape(b, c_out, *out.shape[-2:])


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("kernel", [1, 3, 7])
def test_modulated_conv_matches_direct_reference(demodulate, kernel):
    torch.manual_seed(0)
    conv = ModulatedConv2d(5, 6, kernel, style_dim=4, demodulate=demodulate)
    x, style = torch.randn(3, 5, 12, 12), torch.randn(3, 4)
    s = conv.affine(style)[:, :, 0, 0]
    expected = reference_modulated_conv(x, conv.weight, s, demodulate)
    actual = conv(x, style)
    assert actual.shape == (3, 6, 12 - kernel + 1, 12 - kernel + 1)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_constant_style_map_equals_style_vector():
    torch.manual_seed(1)
    # HaarUpsampleConv takes another route for a vector (the band mix folded into its weights, one transposed conv)
    for conv in (
        ModulatedConv2d(4, 5, 3, style_dim=6),
        TransposedUpsampleConv(4, 5, style_dim=6),
        HaarUpsampleConv(4, 5, 6),
    ):
        x, style = torch.randn(2, 4, 9, 9), torch.randn(2, 6)
        style_map = style[:, :, None, None].expand(-1, -1, 9, 9)
        torch.testing.assert_close(conv(x, style_map), conv(x, style), rtol=1e-5, atol=1e-6)


def test_style_map_modulates_per_location():
    torch.manual_seed(2)
    conv = ModulatedConv2d(4, 5, 3, style_dim=6)
    x, a, b = torch.randn(1, 4, 20, 20), torch.randn(1, 6), torch.randn(1, 6)
    style_map = torch.cat([a[:, :, None, None].expand(-1, -1, 20, 10), b[:, :, None, None].expand(-1, -1, 20, 10)], 3)
    out = conv(x, style_map)
    torch.testing.assert_close(out[..., :7], conv(x, a)[..., :7], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[..., 11:], conv(x, b)[..., 11:], rtol=1e-5, atol=1e-6)


def test_transposed_upsample_is_valid_and_crop_consistent():
    torch.manual_seed(3)
    up = TransposedUpsampleConv(3, 4, style_dim=2)
    x, style = torch.randn(1, 3, 10, 10), torch.randn(1, 2)
    full = up(x, style)
    assert full.shape[-1] == 2 * 10 - 3
    # A window starting one input cell later yields the same pixels starting two output pixels later.
    part = up(x[..., 1:, 1:], style)
    torch.testing.assert_close(part, full[..., 2:, 2:], rtol=1e-5, atol=1e-6)


def test_haar_round_trip_and_energy():
    torch.manual_seed(4)
    x = torch.randn(2, 3, 16, 12)
    bands = haar_dwt(x)
    assert bands.shape == (2, 12, 8, 6)
    torch.testing.assert_close(haar_iwt(bands), x, rtol=0, atol=1e-6)
    torch.testing.assert_close(bands.pow(2).sum(), x.pow(2).sum(), rtol=1e-5, atol=0)  # orthonormal


def test_haar_block_values_follow_the_documented_convention():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    ll, lh, hl, hh = haar_dwt(x).flatten().tolist()
    assert (ll, lh, hl, hh) == pytest.approx(((1 + 2 + 3 + 4) / 2, (1 + 2 - 3 - 4) / 2, (1 - 2 + 3 - 4) / 2, 0.0))


def test_iwt_of_crop_is_crop_of_iwt_exactly():
    torch.manual_seed(5)
    bands = torch.randn(1, 8, 9, 11)
    full = haar_iwt(bands)
    for top, left in [(0, 0), (1, 2), (3, 5)]:
        crop = haar_iwt(bands[..., top : top + 5, left : left + 4])
        assert torch.equal(crop, full[..., 2 * top : 2 * top + 10, 2 * left : 2 * left + 8])


def test_dwt_of_odd_offset_crop_differs():
    x = torch.randn(1, 1, 8, 8)
    assert not torch.allclose(haar_dwt(x[..., 1:7, 1:7])[..., :1, :1], haar_dwt(x)[..., :1, :1])


def test_haar_skip_upsample_is_nearest_neighbour():
    x = torch.randn(1, 3, 4, 5)
    torch.testing.assert_close(HaarSkipUpsample()(x), x.repeat_interleave(2, 2).repeat_interleave(2, 3))


def test_linear_haar_skip_is_bilinear_without_the_outer_children():
    x = torch.randn(1, 3, 4, 5)
    bilinear = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    out = HaarSkipUpsample("linear")(x)
    assert out.shape == (1, 3, 6, 8)
    torch.testing.assert_close(out, bilinear[..., 1:-1, 1:-1])
    # Crop-consistent (what tiling needs): the skip of a crop is the crop of the skip.
    torch.testing.assert_close(HaarSkipUpsample("linear")(x[..., 1:, 2:]), out[..., 2:, 4:])


def test_unknown_haar_skip_is_refused():
    with pytest.raises(ValueError, match="haar skip"):
        HaarSkipUpsample("cubic")


def test_noise_injection_starts_at_zero_and_scales():
    noise = NoiseInjection()
    x, n = torch.randn(1, 4, 5, 5), torch.randn(1, 1, 5, 5)
    assert torch.equal(noise(x, n), x)
    with torch.no_grad():
        noise.strength.fill_(0.5)
    torch.testing.assert_close(noise(x, n), x + 0.5 * n)


def test_equal_linear_runtime_scaling_and_lr_multiplier():
    torch.manual_seed(6)
    layer = EqualLinear(16, 8, lr_mul=0.01, bias_init=1.0)
    x = torch.randn(4, 16)
    expected = x @ (layer.weight * 0.01 / 4.0).t() + layer.bias * 0.01
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer.bias * 0.01, torch.ones(8))


def test_scaled_leaky_relu_gain():
    x = torch.tensor([-1.0, 2.0])
    torch.testing.assert_close(scaled_leaky_relu(x), torch.tensor([-0.2, 2.0]) * 2**0.5)


def test_mapping_truncation_moves_toward_tracked_average():
    torch.manual_seed(7)
    mapping = MappingNetwork(8, 8, num_layers=2)
    w = mapping(torch.randn(64, 8))
    mapping.track_average(w, beta=0.0)
    torch.testing.assert_close(mapping.w_avg, w.mean(0))
    torch.testing.assert_close(mapping.truncate(w, 0.0), mapping.w_avg.expand_as(w))
    torch.testing.assert_close(mapping.truncate(w, 0.5), (w + mapping.w_avg) / 2)


def test_conv1x1_is_the_1x1_convolution_and_independent_of_threads_and_batch():
    import torch.nn.functional as F

    from infinitygan.layers import conv1x1

    torch.manual_seed(0)
    previous = torch.get_num_threads()
    try:
        for c_in, c_out, hw in ((64, 3, 69), (128, 12, 37), (32, 128, 133)):
            x, weight = torch.randn(3, c_in, hw, hw), torch.randn(c_out, c_in, 1, 1)
            torch.set_num_threads(2)
            two = conv1x1(x, weight)
            torch.testing.assert_close(two, F.conv2d(x, weight), rtol=1e-5, atol=1e-4)
            assert torch.equal(conv1x1(x[1:2], weight), two[1:2])  # what else is in the batch changes nothing
            torch.set_num_threads(1)
            assert torch.equal(conv1x1(x, weight), two)
    finally:
        torch.set_num_threads(previous)


def test_shuffle_conv1x1_is_the_shuffled_1x1_conv_and_independent_of_threads_and_batch():
    from infinitygan.layers import conv1x1, shuffle_conv1x1

    torch.manual_seed(0)
    previous = torch.get_num_threads()
    try:
        for c_in, c_out, hw in ((64, 32, 19), (48, 32, 70), (32, 48, 36)):
            x, weight = torch.randn(3, c_in, hw, hw), torch.randn(3, 4 * c_out, c_in)
            torch.set_num_threads(2)
            two = shuffle_conv1x1(x, weight)
            assert two.shape == (3, c_out, 2 * hw, 2 * hw)
            torch.testing.assert_close(two, F.pixel_shuffle(conv1x1(x, weight), 2), rtol=1e-5, atol=1e-4)
            assert torch.equal(shuffle_conv1x1(x[1:2], weight[1:2]), two[1:2])
            torch.set_num_threads(1)
            assert torch.equal(shuffle_conv1x1(x, weight), two)
    finally:
        torch.set_num_threads(previous)


def test_haar_synthesis_weight_folds_the_inverse_transform_into_the_weights():
    from infinitygan.layers import conv1x1
    from infinitygan.wavelets import haar_synthesis_weight

    torch.manual_seed(0)
    x, weight = torch.randn(2, 6, 5, 7), torch.randn(2, 4 * 3, 6)
    expected = haar_iwt(conv1x1(x, weight))
    torch.testing.assert_close(F.pixel_shuffle(conv1x1(x, haar_synthesis_weight(weight)), 2), expected)
    with pytest.raises(ValueError, match="divisible by 4"):
        haar_synthesis_weight(torch.randn(2, 6, 6))


def test_linear_skip_is_the_inverse_haar_nearest_step_then_the_binomial_blur_and_thread_independent():
    torch.manual_seed(0)
    rgb = torch.randn(2, 3, 37, 41)
    nearest = haar_iwt(torch.cat([rgb * 2.0, torch.zeros_like(rgb).repeat(1, 3, 1, 1)], dim=1))
    taps = torch.tensor([1.0, 2.0, 1.0])
    blur = (torch.outer(taps, taps) / 16).expand(3, 1, 3, 3)
    skip = HaarSkipUpsample("linear")
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = skip(rgb)
        assert torch.equal(two, F.conv2d(nearest, blur, groups=3))  # the same bits as the inverse-Haar form
        torch.set_num_threads(1)
        assert torch.equal(skip(rgb), two)
    finally:
        torch.set_num_threads(previous)


def test_a_column_map_serves_every_row_with_the_bits_of_the_full_map():
    """Biome worlds pass column maps (B, D, 1, W) (they vary along x only), which broadcast down the rows of every
    modulated layer (layers.crop_map): what the map written out at every location gives, for each kind (to rounding:
    the written-out map's affine is one matrix product over all locations, of another shape)."""
    from infinitygan.layers import SeparableModulatedConv2d

    torch.manual_seed(0)
    for conv in (
        ModulatedConv2d(4, 5, 3, style_dim=6),
        ModulatedConv2d(4, 5, 1, style_dim=6),
        TransposedUpsampleConv(4, 5, style_dim=6),
        HaarUpsampleConv(4, 5, 6),
        SeparableModulatedConv2d(4, 5, 3, style_dim=6),
    ):
        x, column = torch.randn(2, 4, 11, 13), torch.randn(2, 6, 1, 13)
        full = column.expand(-1, -1, 11, -1).contiguous()
        torch.testing.assert_close(conv(x, column), conv(x, full), rtol=1e-5, atol=1e-5, msg=type(conv).__name__)


def test_crop_map_crops_only_the_axes_a_map_has():
    from infinitygan.layers import crop_map

    m = torch.arange(2 * 1 * 9, dtype=torch.float32).view(1, 2, 1, 9)
    assert torch.equal(crop_map(m, 5, 5), m[..., 2:7])  # rows broadcast, columns cropped
    assert crop_map(torch.zeros(1, 2, 7, 9), 5, 5).shape == (1, 2, 5, 5)
    with pytest.raises(ValueError, match="centre-crop"):
        crop_map(m, 5, 6)  # an odd margin

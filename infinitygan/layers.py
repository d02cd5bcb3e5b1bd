"""StyleGAN2 layer vocabulary, padding-free.

Every convolution here is *valid* (no padding): a feature at any location depends only on inputs that exist in every
window containing it, which is what lets independently rendered windows of the world agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from infinitygan.config import HAAR_SKIPS, OUTPUT_NOISE_FILTERS, OUTPUT_NOISE_KERNEL
from infinitygan.wavelets import haar_iwt, haar_synthesis_weight

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
DEMOD_EPS = 1e-8


def scaled_leaky_relu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU times sqrt(2), so activations keep unit variance through the stack."""
    return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN


def conv1x1(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution as one matrix product per sample: (B, I, H, W) x weight -> (B, O, H, W), where weight is
    (O, I, 1, 1) or (O, I) for every sample, or (B, O, I) per sample (a modulated conv's style folded into its weights).

    The same sum as F.conv2d, but bit-reproducible: oneDNN's 1x1 convolutions split the channel reduction by the
    thread count (60 of 216 layer shapes gave different bits at 1 and 2 threads) and a batched product can differ
    from per-sample ones, while a per-sample GEMM gave identical bits at 1 and 2 threads for all 216
    (tests/test_layers.py). So a tile does not depend on threads or on what else is in the batch.
    """
    b, i, h, w = x.shape
    weights = weight if weight.dim() == 3 else weight.flatten(1).expand(b, -1, -1)
    if b == 1:  # a tile: a reshape, no gather or stack
        return (weights[0] @ x.reshape(i, h * w)).view(1, weights.shape[1], h, w)
    return torch.stack([(weights[k] @ x[k].reshape(i, h * w)).view(-1, h, w) for k in range(b)])


def shuffle_conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """pixel_shuffle(conv1x1(x, weight), 2) (+ bias (C,) per output channel) as one stride-2, 2 x 2 transposed
    convolution per sample: (B, I, H, W) x (B, 4C, I) per-sample weights in pixel_shuffle order -> (B, C, 2H, 2W).

    The same products and sums as the 1x1 conv (a GEMM, then each column placed on its 2 x 2 block, nothing
    overlapping), and the same bits at 1 and 2 threads (tests/test_layers.py), without the separate shuffle pass:
    ONNX Runtime's DepthToSpace took a fifth of a student chunk, its ConvTranspose a third of the conv + shuffle.
    """
    b, i, h, w = x.shape
    c = weight.shape[1] // 4
    kernels = weight.reshape(b, c, 2, 2, i).permute(0, 4, 1, 2, 3)  # (B, I, C, 2, 2): conv_transpose2d's layout
    samples = [F.conv_transpose2d(x[k : k + 1], kernels[k], bias, stride=2) for k in range(b)]
    return samples[0] if b == 1 else torch.cat(samples)


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop equal margins from both sides; the margins must be whole pixels."""
    dh, dw = x.shape[-2] - height, x.shape[-1] - width
    if dh < 0 or dw < 0 or dh % 2 or dw % 2:
        raise ValueError(f"cannot centre-crop {tuple(x.shape[-2:])} to {(height, width)}")
    return x[..., dh // 2 : dh // 2 + height, dw // 2 : dw // 2 + width]


def crop_map(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """center_crop of a per-location map (a style map, a demodulation map) that may have size 1 along an axis: there
    it broadcasts and is left as it is. A column map (B, D, 1, W), one value per column (biomes vary along x only),
    thus serves every row of a layer at a row's cost. Raises ValueError like center_crop."""
    return center_crop(x, height if x.shape[-2] > 1 else 1, width if x.shape[-1] > 1 else 1)


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: N(0, 1) weights scaled by lr_mul / sqrt(fan_in) at run time."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_mul)
        return scaled_leaky_relu(out) if self.activation else out


class EqualConv2d(nn.Module):
    """Plain valid convolution with equalized learning rate (the discriminator's; G_T's noise gates): N(0, 1)
    weights scaled by lr_mul / sqrt(fan_in) at run time, as EqualLinear."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        bias: bool = True,
        lr_mul: float = 1.0,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = lr_mul / math.sqrt(in_channels * kernel_size * kernel_size)
        self.lr_mul = lr_mul
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        return F.conv2d(x, self.weight * self.weight_gain, bias, stride=self.stride)


class BiasedActivation(nn.Module):
    """Per-channel bias then scaled leaky ReLU (StyleGAN2's FusedLeakyReLU)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return scaled_leaky_relu(x + self.bias.view(1, -1, 1, 1))


class MappingNetwork(nn.Module):
    """z -> PixelNorm -> MLP (lr multiplier 0.01) -> w, with a tracked average w for truncation."""

    def __init__(self, z_dim: int, w_dim: int, num_layers: int, *, lr_mul: float = 0.01) -> None:
        super().__init__()
        dims = [z_dim] + [w_dim] * num_layers
        self.norm = PixelNorm()
        self.layers = nn.ModuleList(
            EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, activation=True) for i in range(num_layers)
        )
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.norm(z)
        for layer in self.layers:
            x = layer(x)
        return x

    @torch.no_grad()
    def track_average(self, w: torch.Tensor, beta: float = 0.995) -> None:
        self.w_avg.copy_(w.detach().mean(dim=0).lerp(self.w_avg, beta))

    def truncate(self, w: torch.Tensor, psi: float) -> torch.Tensor:
        return self.w_avg.lerp(w, psi) if psi != 1.0 else w


class StyleAffine(nn.Module):
    """A(w): the per-channel style of a modulated conv, bias initialised to 1.

    Accepts a style vector (B, D) or a per-location style map (B, D, H, W) (spatial style fusion; H or W may be 1,
    e.g. a column map (B, D, 1, W): crop_map); returns (B, C, 1, 1) or (B, C, H, W) so it broadcasts against the
    features either way.
    """

    def __init__(self, style_dim: int, channels: int) -> None:
        super().__init__()
        self.linear = EqualLinear(style_dim, channels, bias_init=1.0)

    def forward(self, style: torch.Tensor) -> torch.Tensor:
        if style.dim() == 2:
            return self.linear(style)[:, :, None, None]
        return self.linear(style.movedim(1, -1)).movedim(-1, 1)


class ModulatedConv2d(nn.Module):
    """Modulated (and optionally demodulated) valid convolution, in the x*s -> conv(W) -> *d form.

    This form is equivalent to StyleGAN2's per-sample weights, but also takes a per-location style map and exports
    with a dynamic batch. A style map must match the input's spatial size.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, *, demodulate=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.affine = StyleAffine(style_dim, in_channels)
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.kernel_size = kernel_size
        self.demodulate = demodulate

    def scaled_weight(self) -> torch.Tensor:
        return self.weight * self.weight_gain

    def demodulation(self, s: torch.Tensor, weight: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
        """1 / sqrt(sum_{i,k} (s_i w_oik)^2 + eps), per sample (vector style) or per output location (style map)."""
        energy = weight.pow(2).sum(dim=(2, 3))  # (O, I)
        if s.shape[-2:] == (1, 1):
            return torch.rsqrt(s.flatten(1).pow(2) @ energy.t() + DEMOD_EPS)[:, :, None, None]
        per_location = conv1x1(s.pow(2), energy)
        return torch.rsqrt(crop_map(per_location, *out_hw) + DEMOD_EPS)

    def folded_weight(self, style: torch.Tensor) -> torch.Tensor:
        """(B, O, I) per-sample weights of a 1x1 layer for a style vector (B, D), modulation and demodulation folded in
        (StyleGAN2's weight modulation): conv1x1(x, folded_weight(style)) equals forward(x, style) up to rounding,
        and another linear map can be folded in too (HaarUpsampleConv). forward itself keeps x * s: a 1x1 layer was
        no faster folded, and its bits stay those of every model trained so far."""
        s = self.affine(style)
        weight = self.scaled_weight()
        folded = weight.flatten(1)[None] * s.flatten(1)[:, None, :]
        if self.demodulate:
            folded = folded * self.demodulation(s, weight, (1, 1)).flatten(2)
        return folded

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.affine(style)
        weight = self.scaled_weight()
        out = conv1x1(x * s, weight) if self.kernel_size == 1 else F.conv2d(x * s, weight)
        if self.demodulate:
            out = out * self.demodulation(s, weight, out.shape[-2:])
        return out


class SeparableModulatedConv2d(nn.Module):
    """MobileStyleGAN's depthwise-separable modulated convolution (Belousov 2021): per-input-channel style scale,
    depthwise k x k valid conv, pointwise 1x1 conv, demodulation.

    The demodulation depends on the weights only (d_o = 1 / sqrt(sum_i |w_dw,i|^2 w_pw,oi^2 + eps), MobileStyleGAN's
    demodulation fusion), so at inference it folds into the pointwise weights (`fused_pointwise`), and for a fixed
    style vector the modulation folds into the depthwise weights: one depthwise and one pointwise conv per layer.
    Same margin as a full k x k valid conv (k // 2 per side), so a student keeps its teacher's geometry algebra;
    about k^2 C_out / (k^2 + C_out) times fewer MACs. Takes a style vector (B, D) or a per-location map.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int) -> None:
        super().__init__()
        self.depthwise = nn.Parameter(torch.randn(in_channels, 1, kernel_size, kernel_size))
        self.pointwise = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.affine = StyleAffine(style_dim, in_channels)
        self.depthwise_gain = 1.0 / math.sqrt(kernel_size * kernel_size)
        self.pointwise_gain = 1.0 / math.sqrt(in_channels)
        self.kernel_size = kernel_size

    def fused_pointwise(self) -> torch.Tensor:
        """(out, in, 1, 1) pointwise weights with the gains and the (weights-only) demodulation folded in."""
        depthwise = self.depthwise * self.depthwise_gain
        pointwise = self.pointwise * self.pointwise_gain
        energy = pointwise[:, :, 0, 0].pow(2) @ depthwise.pow(2).sum(dim=(1, 2, 3))  # (out,)
        return pointwise * torch.rsqrt(energy + DEMOD_EPS)[:, None, None, None]

    def style_scale(self, style: torch.Tensor) -> torch.Tensor:
        """The per-channel modulation, normalised to unit RMS over channels (per sample or per location): what the
        full demodulation divides out, so a weights-only demodulation keeps activations at unit scale."""
        s = self.affine(style)
        return s * torch.rsqrt(s.pow(2).mean(dim=1, keepdim=True) + DEMOD_EPS)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # The style scales x rather than each sample's depthwise weights: ONNX Runtime runs a depthwise conv with
        # computed weights slower than the multiply it saves (5.4 against 6.3 ms per student chunk, 1 thread).
        out = F.conv2d(x * self.style_scale(style), self.depthwise * self.depthwise_gain, groups=x.shape[1])
        return conv1x1(out, self.fused_pointwise())


class TransposedUpsampleConv(ModulatedConv2d):
    """InfinityGAN's padding-free upsampling: modulated 3x3 transposed conv, stride 2 (H -> 2H+1), crop the
    outermost pixel on each side (it lacks one of its inputs: keeping it breaks tiling), then a valid [1,2,1]^2 blur.
    H -> 2H - 3.
    """

    def __init__(self, in_channels: int, out_channels: int, style_dim: int) -> None:
        super().__init__(in_channels, out_channels, 3, style_dim)
        self.register_buffer("blur_kernel", _binomial_kernel(out_channels), persistent=False)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.affine(style)
        weight = self.scaled_weight()
        out = F.conv_transpose2d(x * s, weight.transpose(0, 1), stride=2)[..., 1:-1, 1:-1]
        out = F.conv2d(out, self.blur_kernel, groups=out.shape[1])
        d = self.demodulation(s, weight, s.shape[-2:])
        # Output pixel o sits on input location (o + 1) // 2: give it that location's demodulation (nearest), which
        # keeps a style map crop-consistent; an axis of size 1 (a vector's, or a column map's rows) broadcasts.
        for dim, size in ((-2, out.shape[-2]), (-1, out.shape[-1])):
            if d.shape[dim] > 1:
                d = d.repeat_interleave(2, dim=dim).narrow(dim, 1, size)
        return out * d


class HaarUpsampleConv(nn.Module):
    """MobileStyleGAN-style upsampling: a modulated 1x1 conv predicts the four Haar bands of each output channel and
    the inverse Haar transform doubles the resolution. Consumes no margin: H -> 2H.
    """

    def __init__(self, in_channels: int, out_channels: int, style_dim: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, 4 * out_channels, 1, style_dim)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if style.dim() == 4:  # a style map: modulate, convolve, demodulate per location, then the inverse transform
            return haar_iwt(self.conv(x, style))
        # A style vector: the inverse transform's band mix is linear per pixel, so it folds into the per-sample
        # weights too: the conv predicts each output pixel of a 2 x 2 block and places it there (shuffle_conv1x1).
        return shuffle_conv1x1(x, haar_synthesis_weight(self.conv.folded_weight(style)))


NOISE_GATE_LR_MUL = 10.0  # part of what a gated checkpoint's tensors mean: fixed


class NoiseInjection(nn.Module):
    """Adds a per-pixel noise image times a learned strength (initialised to 0, as in StyleGAN2).

    With `channels` (GeneratorConfig.noise_gate), the noise is also weighted per location by 1 + a 1x1 conv of the
    layer's features (that conv starts at zero, so a gated layer adds what an ungated one adds until it learns): with
    one scalar strength, the noise reaches the image wherever the features sit near the activation's kink, and the
    only way to keep it off a flat sky or a cloud rim is to move the features; the gate lets G say where grain goes.
    It learns NOISE_GATE_LR_MUL x faster than the layers around it (at the teacher's 0.1x fine-tuning rate a plain
    one moved the noise by +-10% in 2,500 iterations). Measured on the teacher (MODEL_CARD.md, the fifteenth
    session): it turned the noise down by an eighth nearly everywhere and the picture did not change.

    forward(x (B, C, H, W), noise (B or 1, 1, H, W)) -> (B, C, H, W).
    """

    def __init__(self, channels: int | None = None) -> None:
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(()))
        self.gate = None
        if channels is not None:
            self.gate = EqualConv2d(channels, 1, 1, lr_mul=NOISE_GATE_LR_MUL)
            nn.init.zeros_(self.gate.weight)

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            return x + self.strength * noise
        return x + self.strength * noise * (1.0 + self.gate(x))


class StyledLayer(nn.Module):
    """conv -> noise -> bias + scaled leaky ReLU; `conv` is any modulated conv taking (x, style). Without use_noise
    the layer ignores any noise image it is given (so every layer of G_T takes one, whichever inject it); with
    noise_gate its noise is weighted per location by its features (NoiseInjection)."""

    def __init__(self, conv: nn.Module, out_channels: int, *, use_noise: bool = True, noise_gate: bool = False) -> None:
        super().__init__()
        self.conv = conv
        self.noise = NoiseInjection(out_channels if noise_gate else None) if use_noise else None
        self.activation = BiasedActivation(out_channels)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        x = self.conv(x, style)
        if self.noise is not None:
            if noise is None:
                raise ValueError("this layer injects noise: pass the noise image for its window")
            x = self.noise(x, noise)
        return self.activation(x)


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation, plus bias: 3 RGB channels, or 12 Haar bands (SWAGAN's tWavelets)."""

    def __init__(self, in_channels: int, style_dim: int, out_channels: int = 3) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.conv(x, style) + self.bias


class OutputNoise(nn.Module):
    """Grain added to a wavelet-output image (GeneratorConfig.output_noise): F learned 4 x 4 valid filters of a noise
    image at the output's step, each weighted per colour and location by a modulated 1x1 conv of the last G_T
    features, upsampled like the inverse Haar transform places their pixels (each feature element's value on its
    2 x 2 output pixels).

    forward(x (B, C, h, w) last features, style, noise (B or 1, 1, 2h + 3, 2w + 3)) -> (B, 3, 2h, 2w). The weighting
    conv starts at zero, so a generator that gains this layer renders what it rendered before until it learns it.
    """

    def __init__(self, in_channels: int, style_dim: int) -> None:
        super().__init__()
        self.filters = nn.Parameter(torch.randn(OUTPUT_NOISE_FILTERS, 1, OUTPUT_NOISE_KERNEL, OUTPUT_NOISE_KERNEL))
        self.filter_gain = 1.0 / OUTPUT_NOISE_KERNEL  # unit-variance filtered noise at init
        self.weights = ToRGB(in_channels, style_dim, out_channels=3 * OUTPUT_NOISE_FILTERS)
        with torch.no_grad():
            self.weights.conv.weight.zero_()

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        grain = F.conv2d(noise, self.filters * self.filter_gain)  # (B or 1, F, 2h, 2w)
        if style.dim() == 4:
            weights = F.interpolate(self.weights(x, style), scale_factor=2.0, mode="nearest")
        else:  # the 1x1 conv and its nearest 2x in one pass: each output row on all four pixels of its block
            folded = self.weights.conv.folded_weight(style).repeat_interleave(4, dim=1)
            weights = shuffle_conv1x1(x, folded, self.weights.bias.flatten())
        b, _, h, w = weights.shape
        return (weights.view(b, 3, OUTPUT_NOISE_FILTERS, h, w) * grain[:, None]).sum(dim=2)


class TransposedSkipUpsample(nn.Module):
    """Upsamples the RGB skip the same padding-free way as the features: linear-interpolating transposed conv
    (H -> 2H+1), minus the invalid outer pixel (2H-1)."""

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor([0.5, 1.0, 0.5])
        self.register_buffer("kernel", torch.outer(taps, taps).expand(3, 1, 3, 3).clone(), persistent=False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(rgb, self.kernel, stride=2, groups=3)[..., 1:-1, 1:-1]


class HaarSkipUpsample(nn.Module):
    """Upsamples the RGB skip onto the inverse Haar transform's pixel grid (each parent's four children at +-1/4 of
    a parent pixel).

    "nearest": the inverse Haar transform of the LL band alone, H -> 2H, no margin. Summed over a student's stages it
    leaves a visible grid of 2^k-pixel blocks that the finer stages must cancel.
    "linear": that, then a valid [1, 2, 1]^2 / 16 blur, H -> 2H - 2: exactly bilinear interpolation (0.75 of the
    parent, 0.25 of its neighbour, along each axis), the outer child on each side dropped because it lacks its
    neighbour. A Haar stage's valid 3x3 conv also turns 2H into 2H - 2, so the skip still covers the stage's output
    and the geometry is unchanged (its reach, 3/2 output pixels per stage, equals the feature path's).
    """

    def __init__(self, mode: str = "nearest") -> None:
        super().__init__()
        if mode not in HAAR_SKIPS:
            raise ValueError(f"haar skip must be one of {HAAR_SKIPS}, got {mode!r}")
        self.mode = mode
        self.register_buffer("blur_kernel", _binomial_kernel(3), persistent=False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        # The inverse Haar transform of the LL band alone is nearest-neighbour 2x (each child equals its parent):
        # resampled directly, one pass instead of a band mix and a shuffle (ONNX Runtime: a Resize; the fused
        # alternatives were slower: a grouped [1, 3, 3, 1] transposed conv 2x, or differed between thread counts:
        # bilinear resampling).
        up = F.interpolate(rgb, scale_factor=2.0, mode="nearest")
        return up if self.mode == "nearest" else F.conv2d(up, self.blur_kernel, groups=3)


def _binomial_kernel(channels: int) -> torch.Tensor:
    taps = torch.tensor([1.0, 2.0, 1.0])
    kernel = torch.outer(taps, taps)
    return (kernel / kernel.sum()).expand(channels, 1, 3, 3).clone()

"""InfinityGAN generator: structure synthesizer G_S + padding-free texture synthesizer G_T.

The generator is a pure function of explicit inputs (local latents, coordinates, styles, noise images). Where those
inputs come from (the world's coordinate hash, a training batch, an inversion) is decided by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from infinitygan.config import GeneratorConfig, preset_config
from infinitygan.geometry import Geometry
from infinitygan.layers import (
    HaarSkipUpsample,
    HaarUpsampleConv,
    MappingNetwork,
    ModulatedConv2d,
    OutputNoise,
    SeparableModulatedConv2d,
    StyledLayer,
    ToRGB,
    TransposedSkipUpsample,
    TransposedUpsampleConv,
    center_crop,
    crop_map,
)
from infinitygan.wavelets import haar_iwt

# The arithmetic of G's forward pass: bumped whenever a change to it gives other output bits for the same weights, so
# that cached tiles of the old arithmetic are never mixed with new ones (tile cache keys carry it).
# 2: the inverse Haar transform folded into the student's upsampling convs, its output noise's 2x into its conv.
FORWARD_VERSION = 2


@dataclass
class WindowInputs:
    """Everything random a z_S window needs, already cut to that window.

    local_latents: (B, local_dim, n_h + 2m, n_w + 2m) z_l, with m = geometry.structure_margin.
    coords: (B or 1, 3, same H, same W) coordinate channels aligned with local_latents.
    noises: one (B or 1, 1, H_l, W_l) image per G_T layer (and the output noise's), sized by geometry.layer_sizes.
    """

    local_latents: torch.Tensor
    coords: torch.Tensor
    noises: list[torch.Tensor]


class StructureSynthesizer(nn.Module):
    """G_S: valid modulated convs over [z_l, coordinates], coordinates re-concatenated (centre-cropped) at every
    block, modulated by the raw global latent. Output z_S is 2 * margin cells smaller per axis than z_l."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        channels = [config.local_dim] + [config.structure_width] * config.structure_blocks
        conv_type = SeparableModulatedConv2d if config.structure_conv == "separable" else ModulatedConv2d
        self.blocks = nn.ModuleList(
            StyledLayer(
                conv_type(channels[i] + 3, channels[i + 1], config.structure_kernel, config.global_dim),
                channels[i + 1],
                use_noise=False,
            )
            for i in range(config.structure_blocks)
        )

    def forward(self, local_latents: torch.Tensor, coords: torch.Tensor, global_style: torch.Tensor) -> torch.Tensor:
        x = local_latents
        for block in self.blocks:
            c = center_crop(coords, *x.shape[-2:]).expand(x.shape[0], -1, -1, -1)
            style = global_style if global_style.dim() == 2 else crop_map(global_style, *x.shape[-2:])
            x = block(torch.cat([x, c], dim=1), style)
        return x


class TextureStage(nn.Module):
    """One G_T stage: padding-free upsampling layer, valid 3x3 conv, ToRGB; noise: whether its two layers inject
    their noise images; noise_gate: whether that noise is weighted per location by their features."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        upsampler: str,
        *,
        wavelets: bool,
        conv: str = "full",
        noise: bool = True,
        noise_gate: bool = False,
    ) -> None:
        super().__init__()
        up_conv = (TransposedUpsampleConv if upsampler == "transposed" else HaarUpsampleConv)(
            in_channels, out_channels, w_dim
        )
        self.up = StyledLayer(up_conv, out_channels, use_noise=noise, noise_gate=noise_gate)
        conv_type = SeparableModulatedConv2d if conv == "separable" else ModulatedConv2d
        self.conv = StyledLayer(
            conv_type(out_channels, out_channels, 3, w_dim), out_channels, use_noise=noise, noise_gate=noise_gate
        )
        self.to_rgb = ToRGB(out_channels, w_dim, out_channels=12 if wavelets else 3)


class TextureSynthesizer(nn.Module):
    """G_T: a padding-free StyleGAN2 synthesis network fed z_S instead of a constant, with ToRGB skips.

    With config.wavelet_output (SWAGAN), the last stage's ToRGB predicts the 4 Haar bands of each colour at that
    stage's resolution; the RGB skip joins them as the LL band and the image is their inverse Haar transform.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        widths = [config.structure_width, *config.texture_widths]
        last = config.stages - 1
        self.stages = nn.ModuleList(
            TextureStage(
                widths[i],
                widths[i + 1],
                config.w_dim,
                config.upsampler,
                wavelets=config.wavelet_output and i == last,
                conv=config.texture_conv,
                noise=i >= config.noise_free_stages,
                noise_gate=config.noise_gate,
            )
            for i in range(config.stages)
        )
        self.skip_upsample = (
            TransposedSkipUpsample() if config.upsampler == "transposed" else HaarSkipUpsample(config.haar_skip)
        )
        self.wavelet_output = config.wavelet_output
        self.low_band_upsample = HaarSkipUpsample("linear") if config.output_low_band == "linear" else None
        self.input_gain = config.texture_input_gain
        self.output_noise = OutputNoise(widths[-1], config.w_dim) if config.output_noise else None

    @property
    def num_styles(self) -> int:
        # Two convs per stage, and the last ToRGB takes one more (StyleGAN2: ToRGB uses the next conv's w).
        return 2 * len(self.stages) + 1

    @property
    def num_noises(self) -> int:
        """Noise images G_T takes: one per layer, and the output noise's (geometry.layer_sizes gives their sizes)."""
        return 2 * len(self.stages) + int(self.output_noise is not None)

    @property
    def noise_reads(self) -> tuple[bool, ...]:
        """Per noise image (num_noises of them), whether G_T reads it: the layers of noise-free stages do not."""
        layers = tuple(layer.noise is not None for stage in self.stages for layer in (stage.up, stage.conv))
        return layers + ((True,) if self.output_noise is not None else ())

    def forward(self, z_s: torch.Tensor, styles: Sequence[torch.Tensor], noises: Sequence[torch.Tensor]):
        if len(styles) != self.num_styles or len(noises) != self.num_noises:
            raise ValueError(f"G_T needs {self.num_styles} styles and {self.num_noises} noise images")
        x, rgb = (z_s if self.input_gain == 1.0 else z_s * self.input_gain), None
        for i, stage in enumerate(self.stages):
            x = stage.up(x, _fit(styles[2 * i], x), noises[2 * i])
            x = stage.conv(x, _fit(styles[2 * i + 1], x), noises[2 * i + 1])
            stage_rgb = stage.to_rgb(x, _fit(styles[2 * i + 2], x))
            skip = None if rgb is None else center_crop(self.skip_upsample(rgb), *x.shape[-2:])
            if stage_rgb.shape[1] == 12:  # Haar bands of the image (wavelet output): the skip is their LL band
                return self._wavelet_image(stage_rgb, skip, x, _fit(styles[2 * i + 2], x), noises[-1])
            rgb = stage_rgb if skip is None else stage_rgb + skip
        return rgb

    def _wavelet_image(self, bands, skip, x, style, noise) -> torch.Tensor:
        """The image of the last stage's (B, 12, h, w) Haar bands, the RGB skip (B, 3, h, w) or None, and the output
        noise: (B, 3, 2h - 2m, 2w - 2m), m = geometry.output_margin."""
        if self.low_band_upsample is None:  # output_low_band "nearest"
            if skip is not None:
                bands = bands + torch.cat([2.0 * skip, torch.zeros_like(skip).repeat(1, 3, 1, 1)], dim=1)
            image = haar_iwt(bands)
        else:  # the low band bilinearly (the LL band is twice the mean of its 2 x 2 pixels), the details by iDWT
            low = bands[:, :3] * 0.5 if skip is None else bands[:, :3] * 0.5 + skip
            details = haar_iwt(torch.cat([torch.zeros_like(low), bands[:, 3:]], dim=1))
            image = self.low_band_upsample(low) + details[..., 1:-1, 1:-1]
        if self.output_noise is not None:
            grain = self.output_noise(x, style, noise)
            image = image + center_crop(grain, *image.shape[-2:])
        return image


def _fit(style: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A style map is given on the finest grid it will be used at; crop it to this layer's input (crop_map)."""
    return style if style.dim() == 2 else crop_map(style, *x.shape[-2:])


class Generator(nn.Module):
    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.geometry = Geometry.of(config)
        self.mapping = MappingNetwork(config.global_dim, config.w_dim, config.mapping_layers)
        self.structure = StructureSynthesizer(config)
        self.texture = TextureSynthesizer(config)

    @property
    def num_styles(self) -> int:
        return self.texture.num_styles

    def texture_styles(
        self,
        z_global: torch.Tensor,
        *,
        psi: float = 1.0,
        z_mix: torch.Tensor | None = None,
        mix_from: int | None = None,
    ) -> torch.Tensor:
        """(B, num_styles, w_dim): mapped, truncated w per G_T layer; layers >= mix_from take z_mix's w."""
        w = self.mapping.truncate(self.mapping(z_global), psi)
        styles = w[:, None, :].repeat(1, self.num_styles, 1)
        if z_mix is not None:
            cut = self.num_styles // 2 if mix_from is None else mix_from
            styles[:, cut:] = self.mapping.truncate(self.mapping(z_mix), psi)[:, None, :]
        return styles

    def synthesize(
        self, inputs: WindowInputs, structure_style: torch.Tensor, texture_styles
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(image, z_S): the image as forward() returns it and the structure G_S produced for it,
        (B, structure_width, n, n) for an n-cell window (the diversity loss compares z_S of paired samples)."""
        z_s = self.structure(inputs.local_latents, inputs.coords, structure_style)
        styles = list(texture_styles.unbind(1)) if isinstance(texture_styles, torch.Tensor) else texture_styles
        return self.texture(z_s, styles, inputs.noises), z_s

    def forward(self, inputs: WindowInputs, structure_style: torch.Tensor, texture_styles) -> torch.Tensor:
        """Image in [-1, 1]-ish, (B, 3, S, S) with S = geometry.texture_size(n) for an n-cell z_S window.

        structure_style: (B, global_dim) z_g, or a per-location map; texture_styles: (B, num_styles, w_dim) or a
        list of per-layer styles."""
        return self.synthesize(inputs, structure_style, texture_styles)[0]


def build_generator(preset_or_config: str | GeneratorConfig, *, init_seed: int = 0, upsampler=None) -> Generator:
    """A freshly initialised generator; the same init_seed always gives the same weights."""
    config = preset_or_config if isinstance(preset_or_config, GeneratorConfig) else preset_config(preset_or_config)
    if upsampler:
        config = config.with_upsampler(upsampler)
    rng_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(init_seed)
        generator = Generator(config)
    finally:
        torch.random.set_rng_state(rng_state)
    return generator.eval()

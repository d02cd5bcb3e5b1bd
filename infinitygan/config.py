"""Generator configuration: a dataclass stored inside every checkpoint, plus the named presets."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Literal

Upsampler = Literal["transposed", "haar"]
UPSAMPLERS: tuple[str, ...] = ("transposed", "haar")
TextureConv = Literal["full", "separable"]
TEXTURE_CONVS: tuple[str, ...] = ("full", "separable")
OUTPUT_NOISE_KERNEL = 4  # output_noise's filters: 4 x 4, from a noise grid half a pixel off the output's
OUTPUT_NOISE_FILTERS = 4
HaarSkip = Literal["nearest", "linear"]
HAAR_SKIPS: tuple[str, ...] = ("nearest", "linear")


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that determines a generator's architecture (and so the geometry of its world).

    global_dim: size of the global latent z_g (G_S modulation input and mapping-network input).
    w_dim: size of the mapped style w that modulates G_T.
    mapping_layers: depth of the mapping MLP.
    local_dim: channels of the local latent grid z_l (one vector per latent cell).
    structure_width: channels of G_S's hidden layers and of its output z_S.
    structure_blocks, structure_kernel: G_S is this many valid kernel x kernel modulated convs; each eats
        kernel // 2 latent cells per side.
    texture_widths: G_T channels after each upsampling stage; the number of stages k sets the latent cell size to 2^k
        pixels.
    upsampler: "transposed" (InfinityGAN: transposed conv, crop, blur) or "haar" (inverse wavelet, no margin).
    coord_period_cells: horizontal period of the (cos, sin) coordinate channels, in latent cells.
    vertical_gain: pre-tanh slope of the vertical coordinate per latent cell away from the horizon.
    wavelet_output: SWAGAN's generator: the last stage predicts the four Haar bands of the image at its own resolution
        and the image is their inverse Haar transform, so the features stop at half the output resolution and the
        latent cell is 2^(k+1) pixels for k stages.
    texture_conv: G_T's 3x3 convs: "full" (StyleGAN2's modulated conv) or "separable" (MobileStyleGAN's
        depthwise-separable modulated conv with demodulation fusion, for distilled students).
    texture_input_gain: G_T multiplies z_S by this first. 1 for a trained teacher; a student distilled from it takes
        1 / RMS of the teacher's z_S, since its weights start at the unit scale a long-trained G_S has left behind
        (measured: RMS 12 for the first shipped model, 140 after 28k more iterations, and a fresh student's output
        scales with it).
    structure_conv: G_S's convs: "full" (InfinityGAN's modulated conv) or "separable" (MobileStyleGAN's
        depthwise-separable modulated conv; same margins, ~24x fewer MACs for the small presets' 7x7 kernels). A
        student with a separable G_S learns its own (it cannot copy the teacher's) and takes texture_input_gain 1, its
        G_S regressing the teacher's z_S divided by the teacher's z_S RMS.
    haar_skip: how a "haar" G_T upsamples its RGB skip between stages: "nearest" (the LL band's inverse Haar
        transform; checkpoints from before this field) or "linear" (that, blurred into bilinear interpolation with the
        margin the stage's conv leaves anyway: no block grid, same geometry). Ignored by "transposed".
    output_low_band: (wavelet output only) how the image's low band (the RGB skip plus the last LL band) is placed on
        the output pixels: "nearest" (the inverse Haar transform spreads each value over 2 x 2 pixels: a grid of
        2-px blocks the detail bands must cancel; checkpoints from before this field) or "linear" (bilinear, the
        way haar_skip "linear" places the skip, and only the LH/HL/HH bands go through the inverse transform; the
        output loses one pixel per side, which lacks a neighbour to interpolate with).
    output_noise: (wavelet output only) the image also takes grain from one more noise image, at the output's step
        (layer 2 * stages: a stage-k teacher's last stage injects noise at that step, with the same hash, so a student
        distilled from it reads the very noise that drives its teacher's finest texture): OUTPUT_NOISE_FILTERS learned
        4 x 4 valid filters of it, weighted per colour and location by a modulated 1x1 conv of the last features.
        Without it a 3-stage student has no noise at its teacher's step, and L1 distillation can only learn the
        conditional mean of the teacher's grain: a blur (measured: the shipped teacher with that noise zeroed scores
        SWD 160.7 instead of 43.8).
    noise_free_stages: G_T's first this many stages inject no noise (their layers take the noise images of the
        geometry and ignore them). StyleGAN's noise is for stochastic detail; at G_T's coarsest stage one noise pixel
        spans 8 output pixels, and the shipped small model learnt to draw it as white blotches and streaks on the
        ground and in the sky (strength 0.30 at step 42,269; zeroing it after training removes them).
    noise_gate: each noise-injecting G_T layer weights its noise per location by 1 + a zero-initialised 1x1 conv of
        its features (layers.NoiseInjection), so G can say where grain goes instead of one strength everywhere
        (False: StyleGAN2's; checkpoints from before this field).
    """

    preset: str
    global_dim: int
    w_dim: int
    mapping_layers: int
    local_dim: int
    structure_width: int
    texture_widths: tuple[int, ...]
    upsampler: Upsampler = "transposed"
    structure_blocks: int = 4
    structure_kernel: int = 7
    coord_period_cells: int = 139
    vertical_gain: float = 0.3
    wavelet_output: bool = False
    texture_conv: TextureConv = "full"
    texture_input_gain: float = 1.0
    noise_free_stages: int = 0
    structure_conv: TextureConv = "full"
    haar_skip: HaarSkip = "nearest"
    output_noise: bool = False
    output_low_band: HaarSkip = "nearest"
    noise_gate: bool = False

    def __post_init__(self) -> None:
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {UPSAMPLERS}, got {self.upsampler!r}")
        if self.texture_conv not in TEXTURE_CONVS:
            raise ValueError(f"texture_conv must be one of {TEXTURE_CONVS}, got {self.texture_conv!r}")
        if self.structure_conv not in TEXTURE_CONVS:
            raise ValueError(f"structure_conv must be one of {TEXTURE_CONVS}, got {self.structure_conv!r}")
        if self.output_noise and not self.wavelet_output:
            raise ValueError("output_noise needs wavelet_output (it adds grain at the step the Haar bands reach)")
        if self.haar_skip not in HAAR_SKIPS:
            raise ValueError(f"haar_skip must be one of {HAAR_SKIPS}, got {self.haar_skip!r}")
        if self.output_low_band not in HAAR_SKIPS:
            raise ValueError(f"output_low_band must be one of {HAAR_SKIPS}, got {self.output_low_band!r}")
        if self.output_low_band != "nearest" and not self.wavelet_output:
            raise ValueError("output_low_band needs wavelet_output (it places the low band of the Haar bands)")
        if self.structure_kernel % 2 == 0:
            raise ValueError("structure_kernel must be odd so margins are symmetric")
        if not (math.isfinite(self.texture_input_gain) and self.texture_input_gain > 0):
            raise ValueError(f"texture_input_gain must be positive and finite, got {self.texture_input_gain!r}")
        if not self.texture_widths:
            raise ValueError("texture_widths needs at least one stage")
        if not 0 <= self.noise_free_stages <= len(self.texture_widths):
            stages = len(self.texture_widths)
            raise ValueError(f"noise_free_stages must be 0..{stages} (the G_T stages), got {self.noise_free_stages}")
        object.__setattr__(self, "texture_widths", tuple(int(w) for w in self.texture_widths))

    @property
    def stages(self) -> int:
        return len(self.texture_widths)

    @property
    def cell_px(self) -> int:
        """Output pixels per latent cell: 2 per upsampling stage, and 2 more for a wavelet output."""
        return 2 ** (self.stages + int(self.wavelet_output))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GeneratorConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown generator config fields: {sorted(unknown)}")
        return cls(**data)

    def with_upsampler(self, upsampler: Upsampler) -> GeneratorConfig:
        return dataclasses.replace(self, upsampler=upsampler)


PRESETS: dict[str, GeneratorConfig] = {
    # Tests: < 100k parameters, same geometry as the real models.
    "tiny": GeneratorConfig(
        preset="tiny",
        global_dim=32,
        w_dim=32,
        mapping_layers=2,
        local_dim=8,
        structure_width=12,
        texture_widths=(16, 16, 16, 8),
    ),
    # Tests: the MobileStyleGAN student shape of "tiny" (its mapping; a separable G_S and wavelet G_T).
    "tiny-mobile": GeneratorConfig(
        preset="tiny-mobile",
        global_dim=32,
        w_dim=32,
        mapping_layers=2,
        local_dim=8,
        structure_width=12,
        texture_widths=(16, 16, 8),
        upsampler="haar",
        wavelet_output=True,
        texture_conv="separable",
        structure_conv="separable",
        haar_skip="linear",
        output_noise=True,
        output_low_band="linear",
    ),
    # CPU serving: at most ~5 GFLOP per 256x256 tile (bench/bench_generator.py counts it).
    "small": GeneratorConfig(
        preset="small",
        global_dim=128,
        w_dim=128,
        mapping_layers=4,
        local_dim=32,
        structure_width=48,
        texture_widths=(64, 64, 48, 32),
    ),
    # SWAGAN variant of "small": three feature stages, the last predicting Haar bands (same 16 px latent cell).
    "small-wavelet": GeneratorConfig(
        preset="small-wavelet",
        global_dim=128,
        w_dim=128,
        mapping_layers=4,
        local_dim=32,
        structure_width=48,
        texture_widths=(64, 64, 48),
        wavelet_output=True,
    ),
    # MobileStyleGAN student of "small": the same mapping network (copied from the teacher); G_S and G_T of
    # depthwise-separable modulated convs (G_S: the teacher's margins and width, 24x fewer MACs: it was 0.8 of the
    # 0.91 GFLOP per tile with the teacher's G_S), inverse-Haar upsampling and a wavelet output (same 16 px cell), a
    # linear RGB skip and an output noise (the teacher's last-stage noise: SWD 61.3 instead of 107.1 in a 40-min A/B,
    # MODEL_CARD.md), and a bilinear output low band (no 2-px blocks at the output).
    "small-mobile": GeneratorConfig(
        preset="small-mobile",
        global_dim=128,
        w_dim=128,
        mapping_layers=4,
        local_dim=32,
        structure_width=48,
        texture_widths=(64, 48, 32),
        upsampler="haar",
        wavelet_output=True,
        texture_conv="separable",
        structure_conv="separable",
        haar_skip="linear",
        output_noise=True,
        output_low_band="linear",
    ),
    # GPU training.
    "base": GeneratorConfig(
        preset="base",
        global_dim=512,
        w_dim=512,
        mapping_layers=8,
        local_dim=128,
        structure_width=256,
        texture_widths=(256, 256, 128, 64),
    ),
}


def preset_config(name: str, upsampler: Upsampler | None = None) -> GeneratorConfig:
    try:
        config = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
    return config.with_upsampler(upsampler) if upsampler else config

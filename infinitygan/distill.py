"""MobileStyleGAN distillation (Belousov 2021): a student generator learns to render what its teacher renders.

The student (e.g. preset "small-mobile") keeps the teacher's mapping network, copied and frozen, so both see exactly
the same z_g, w, z_l and coordinates for a window. A student whose structure synthesizer G_S has the teacher's
architecture copies it too (and so reads the same z_S); one with a depthwise-separable G_S (structure_conv) learns
it: first alone (`structure_warmup` steps regressing the teacher's z_S, divided by its RMS, at L1), then jointly
with G_T under the same L1 term. The texture synthesizer G_T (depthwise-separable modulated convs, inverse-Haar
upsampling, a wavelet output, and an output noise that reads the noise of the teacher's last stage) is always
trained. Image losses compare the student's output with the teacher's on
the world pixels both cover: L1 over an image pyramid (pixel space, 3 scales), L1 over the Haar bands (wavelet
space), and a non-saturating adversarial term from a wavelet discriminator that sees teacher renders as real (no
downloaded perceptual network), regularised by R1 on those renders; and a sliced Wasserstein loss on the two images'
finest Laplacian neighbourhoods (`detail_swd`), which matches the distribution of the detail L1 cannot place and so
blurs.

The two generators' pixel grids may sit half a pixel apart (the inverse Haar transform centres its pixels between
the teacher's): `align` resamples the teacher's render onto the student's pixel positions, from the two geometries,
by Lanczos-3 interpolation (`half_pixel="lanczos3"`). The first runs took the 2x2 mean ("mean"), a box filter that
keeps only ~0.68 of the teacher's finest Laplacian level (std 0.080 -> 0.055 on 69 px patches; Lanczos-3: 0.073):
students learnt a blurred teacher, with half its fine detail.

A run lives in a folder like training runs: `student.safetensors` (a generator checkpoint any tool loads) and
`state/` (student, discriminator, optimisers, step, RNG) written atomically, so `distill --out` on an existing
folder resumes.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from infinitygan.checkpoint import LoadedGenerator, load_generator, read_checkpoint_tensors, save_generator
from infinitygan.config import GeneratorConfig, preset_config
from infinitygan.discriminator import Discriminator
from infinitygan.evaluate import DESCRIPTOR_SIZE, laplacian_pyramid, neighbourhoods
from infinitygan.generator import Generator, WindowInputs
from infinitygan.losses import d_logistic_loss, g_nonsaturating_loss, r1_penalty, structure_gain
from infinitygan.sampling import sample_coords, sample_local
from infinitygan.training.config import checked_lr_steps, extended_lr_steps, lr_multiplier
from infinitygan.wavelets import haar_dwt
from infinitygan.world import World, WorldSpec, noise_images

STATE_DIR = "state"
STUDENT_FILE = "student.safetensors"
SHARED_PREFIXES = ("mapping.", "structure.")  # what a student may copy from its teacher


def shared_prefixes(student: Generator) -> tuple[str, ...]:
    """The parts a student copies from its teacher and keeps frozen: the mapping network, and G_S unless the
    student's G_S is separable (then it learns its own)."""
    return ("mapping.",) if student.config.structure_conv == "separable" else SHARED_PREFIXES


class DistillError(Exception):
    """A distillation that cannot run as asked (mismatched teacher and student, a foreign run folder)."""


@dataclass(frozen=True)
class DistillConfig:
    student_preset: str = "small-mobile"
    batch: int = 4
    cells: int = 12  # z_S cells per window side (both generators render the same window)
    lr: float = 2e-3
    pyramid_weight: float = 1.0
    wavelet_weight: float = 1.0
    adversarial_weight: float = 0.05
    psi_range: tuple[float, float] = (0.6, 1.0)  # truncation sampled per batch: the student serves psi < 1 worlds
    seed: int = 0
    init_from: str | None = None  # a student checkpoint, or a run folder (its student and D), that starts this run
    structure_weight: float = 1.0  # L1 between the student's z_S and the teacher's / its RMS (a student's own G_S)
    structure_warmup: int = 1000  # first steps: an own G_S learns the teacher's z_S alone (G_T, D untouched)
    lr_steps: tuple[tuple[int, float], ...] = ()  # (step, multiplier): from step on, G and D train at lr * multiplier
    # The saved student is an exponential moving average of the trained one (StyleGAN's G_ema), with this decay per
    # step (0.999: a half-life of ~690 steps); 0 saves the trained weights themselves.
    ema_beta: float = 0.999
    half_pixel: str = "lanczos3"  # how the teacher is resampled half a pixel onto the student's grid (HALF_PIXEL)
    # R1 (Mescheder 2018; StyleGAN2's lazy form): gamma/2 E||grad D(teacher image)||^2 every r1_interval-th step,
    # scaled by the interval. Runs before the tenth session had none (0); the ninth's D overpowered its student late.
    r1_gamma: float = 1.0
    r1_interval: int = 16
    # First steps after the structure warmup in which D alone trains (the student and its average untouched), so a
    # fresh D of a warm-started student does not teach it from random judgements. Tried in the tenth session: its
    # D stayed at chance through 1,000 such steps and the student got worse after them all the same (57.5 at 2,000).
    d_warmup: int = 0
    # Sliced Wasserstein-1 between the student's and the teacher's 7x7 neighbourhoods of the finest `detail_levels`
    # Laplacian levels (detail_swd): the distribution of the detail L1 cannot place pixel for pixel (0: off). The
    # tenth session's A/B, from the same student at lr 0.1x: without it SWD 51.5 -> 57.5 in 1,000 steps, with it
    # (weight 10, the term ~0.004 against pixel L1 ~0.2) 51.5 -> 47.1 in 1,600.
    detail_weight: float = 10.0
    detail_levels: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_steps", checked_lr_steps(self.lr_steps))
        weights = (
            self.pyramid_weight, self.wavelet_weight, self.adversarial_weight, self.structure_weight, self.detail_weight
        )  # fmt: skip
        if min(weights) < 0 or self.structure_warmup < 0 or self.d_warmup < 0:
            raise ValueError("distillation loss weights, structure_warmup and d_warmup must be >= 0")
        if self.d_warmup and not self.adversarial_weight:
            raise ValueError("d_warmup trains D alone: it needs adversarial_weight > 0")
        if self.half_pixel not in HALF_PIXEL:
            raise ValueError(f"half_pixel must be one of {sorted(HALF_PIXEL)}, got {self.half_pixel!r}")
        if self.detail_levels < 1:
            raise ValueError(f"detail_levels must be >= 1, got {self.detail_levels}")
        if self.r1_gamma < 0 or self.r1_interval < 1:
            raise ValueError(f"r1_gamma must be >= 0 and r1_interval >= 1, got {self.r1_gamma}, {self.r1_interval}")
        if not 0.0 <= self.ema_beta < 1.0:
            raise ValueError(f"ema_beta must lie in [0, 1), got {self.ema_beta}")
        if self.batch < 1 or self.lr <= 0:
            raise ValueError(f"batch must be >= 1 and lr > 0, got {self.batch} and {self.lr}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DistillConfig:
        """The config a run stored (to_json); keys an older run lacks take their defaults, but what every run before
        a setting did for half_pixel ("mean"), r1_gamma and detail_weight (0: none)."""
        raw = json.loads(text)
        raw["psi_range"] = tuple(raw["psi_range"])
        raw.setdefault("half_pixel", "mean")
        raw.setdefault("r1_gamma", 0.0)
        raw.setdefault("detail_weight", 0.0)
        return cls(**raw)

    def lr_at(self, step: int) -> float:
        """The learning rate of G and D at a step: lr times the last lr_steps multiplier at or before it."""
        return self.lr * lr_multiplier(self.lr_steps, step)

    def resumed_with(self, step: int, lr_steps: tuple[tuple[int, float], ...]) -> DistillConfig:
        """This config with lr_steps added for a run resumed at `step`; each must lie at or after `step`, so the
        recorded config stays true of every step already trained. Raises ValueError otherwise."""
        return dataclasses.replace(self, lr_steps=extended_lr_steps(self.lr_steps, lr_steps, step))


def build_student(teacher: Generator, preset: str | GeneratorConfig, *, init_seed: int = 0) -> Generator:
    """A student of `preset` with the teacher's mapping network (and G_S, unless the student's is separable) copied
    in and frozen, and the teacher's noise-free stages. A copied G_S outputs the teacher's z_S, which the student's
    G_T reads at unit scale (texture_input_gain 1 / RMS); an own G_S is trained to output that unit-scale z_S
    directly (gain 1).

    Raises DistillError unless both share the latent cell size and the shapes of what is copied (and, for an own
    G_S, the z_S width it regresses)."""
    config = preset if isinstance(preset, GeneratorConfig) else preset_config(preset)
    if config.cell_px != teacher.config.cell_px:
        raise DistillError(f"student cell {config.cell_px} px != teacher cell {teacher.config.cell_px} px")
    own_structure = config.structure_conv == "separable"
    if own_structure and config.structure_width != teacher.config.structure_width:
        raise DistillError(
            f"the student's G_S regresses the teacher's z_S: width {config.structure_width} != "
            f"{teacher.config.structure_width}"
        )
    gain = 1.0 if own_structure else 1.0 / structure_rms(teacher)
    # Stage k of either G_T works at the same step (cell_px / 2^(k+1)), so the student leaves out the noise the
    # teacher leaves out: it could only add texture the teacher does not draw.
    noise_free = min(teacher.config.noise_free_stages, config.stages)
    config = dataclasses.replace(config, texture_input_gain=gain, noise_free_stages=noise_free)
    torch.manual_seed(init_seed)
    student = Generator(config)
    prefixes = shared_prefixes(student)
    shared = {k: v for k, v in teacher.state_dict().items() if k.startswith(prefixes)}
    own = student.state_dict()
    mismatched = [k for k, v in shared.items() if k not in own or own[k].shape != v.shape]
    if mismatched:
        raise DistillError(
            f"the student's {'/'.join(p[:-1] for p in prefixes)} do not match the teacher's: {mismatched[:3]}"
        )
    student.load_state_dict(shared, strict=False)
    for name, parameter in student.named_parameters():
        parameter.requires_grad_(not name.startswith(prefixes))
    return student


@torch.no_grad()
def structure_rms(teacher: Generator, cells: int = 12, batch: int = 8) -> float:
    """RMS of the teacher's z_S (G_S's output) over a fixed probe of windows around the horizon, rounded to 3
    significant digits (a stable config value)."""
    rng = torch.Generator().manual_seed(0)
    top_px = (torch.rand(batch, generator=rng) - 0.5) * 4 * teacher.geometry.cell_px * cells
    coords = sample_coords(teacher, top_px, cells, rng, jitter=False)
    local = sample_local(teacher, batch, cells, rng)
    z_global = torch.randn(batch, teacher.config.global_dim, generator=rng)
    rms = float(teacher.structure(local, coords, z_global).pow(2).mean().sqrt())
    return float(f"{rms:.3g}")


def init_tensors(source: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(student tensors, discriminator tensors) to start a run from: a student checkpoint gives its generator and no
    D; a distillation run folder gives the student and D of its saved state (optimisers start afresh). Raises
    CheckpointError for an unreadable checkpoint."""
    state = Path(source) / STATE_DIR / "tensors.safetensors"
    if state.is_file():
        tensors = load_file(str(state))
        student = {k[len("student.") :]: v for k, v in tensors.items() if k.startswith("student.")}
        return student, {k[len("d.") :]: v for k, v in tensors.items() if k.startswith("d.")}
    return read_checkpoint_tensors(source), {}


def warm_start_student(student: Generator, checkpoint: Path, source: dict[str, torch.Tensor] | None = None) -> int:
    """Copy another student's trained tensors (same name and shape; read from `checkpoint` unless `source` gives
    them) into `student`, leaving what it copies from the teacher alone: its G_T, and its G_S where both have a
    separable one; returns how many were copied. Raises DistillError unless every G_T tensor matches (another preset;
    an output noise the source lacks may stay at its zero start), CheckpointError for an unreadable file."""
    source = read_checkpoint_tensors(checkpoint) if source is None else source
    own = student.state_dict()
    prefixes = shared_prefixes(student)
    copied = {k: v for k, v in source.items() if not k.startswith(prefixes) and k in own and own[k].shape == v.shape}
    # A G_T that gains an output noise starts it at zero (OutputNoise): the source need not have it.
    texture = [k for k in own if k.startswith("texture.") and not k.startswith("texture.output_noise.")]
    missing = sorted(set(texture) - set(copied))
    if missing:
        raise DistillError(f"{checkpoint} is not a student of this preset: {len(missing)} differ, e.g. {missing[:3]}")
    student.load_state_dict(copied, strict=False)
    return len(copied)


def pixel_shift(teacher: Generator, student: Generator) -> Fraction:
    """Where the student's output pixel 0 sits in the teacher's output pixels, for the same z_S window."""
    return student.geometry.output_origin - teacher.geometry.output_origin


def _lanczos_half_pixel(radius: int) -> torch.Tensor:
    """The 2 * radius taps that interpolate a signal half-way between two samples (at offsets +-0.5, +-1.5, ...) with
    the Lanczos kernel sinc(x) sinc(x / radius), normalised to sum 1."""
    offsets = torch.arange(-radius, radius, dtype=torch.float64) + 0.5
    taps = torch.sinc(offsets) * torch.sinc(offsets / radius)
    return (taps / taps.sum()).float()


# Half-pixel resampling filters (taps along each axis), applied separably and valid.
HALF_PIXEL = {"mean": torch.tensor([0.5, 0.5]), "lanczos3": _lanczos_half_pixel(3)}


def align(teacher_image: torch.Tensor, student_image: torch.Tensor, shift: Fraction, half_pixel: str = "lanczos3"):
    """(teacher, student) crops covering the same world positions: the teacher resampled onto the student's pixel
    centres when shift's fractional part is 1/2 (HALF_PIXEL[half_pixel], a valid separable filter), both cut to
    their overlap. Raises DistillError for other fractional shifts or windows that barely overlap."""
    whole = math.floor(shift)
    frac = shift - whole
    if frac == Fraction(1, 2):
        taps = HALF_PIXEL[half_pixel].to(teacher_image)
        k, channels = taps.numel(), teacher_image.shape[1]
        teacher_image = F.conv2d(teacher_image, taps.view(1, 1, 1, k).expand(channels, 1, 1, k), groups=channels)
        teacher_image = F.conv2d(teacher_image, taps.view(1, 1, k, 1).expand(channels, 1, k, 1), groups=channels)
        whole -= k // 2 - 1  # filtered element i sits at teacher position i + (k - 1) / 2
    elif frac != 0:
        raise DistillError(f"cannot align pixel grids {float(frac)} px apart")
    # Student element i <-> (filtered) teacher element i + whole.
    start = max(0, -whole)
    stop = min(student_image.shape[-1], teacher_image.shape[-1] - whole)
    if stop - start < 8:
        raise DistillError("the window is too small for the two outputs to overlap")
    t = teacher_image[..., start + whole : stop + whole, start + whole : stop + whole]
    s = student_image[..., start:stop, start:stop]
    return t, s


def pyramid_l1(a: torch.Tensor, b: torch.Tensor, levels: int = 3) -> torch.Tensor:
    loss = a.new_zeros(())
    for _ in range(levels):
        loss = loss + (a - b).abs().mean()
        if min(a.shape[-2:]) < 8:
            break
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return loss


def wavelet_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    even = a.shape[-1] - a.shape[-1] % 2
    return (haar_dwt(a[..., :even, :even]) - haar_dwt(b[..., :even, :even])).abs().mean()


def detail_swd(
    image: torch.Tensor,
    target: torch.Tensor,
    rng: torch.Generator,
    *,
    levels: int = 2,
    per_image: int = 1024,
    directions: int = 64,
) -> torch.Tensor:
    """Sliced Wasserstein-1 distance between two image batches' 7x7 neighbourhoods on each of the finest `levels`
    Laplacian levels, averaged: the loss of Heitz et al. 2021 ("A Sliced Wasserstein Loss for Neural Texture
    Synthesis") on the descriptors of PGGAN's SWD (evaluate.laplacian_pyramid), unnormalised, so amplitude counts.

    image, target: (B, 3, H, W) in [-1, 1], H, W >= 2 * MIN_PYRAMID_SIZE; per_image random neighbourhoods of each
    image, drawn at the same places in both (so equal batches score 0), `directions` random unit projections (from
    rng). Differentiable in both; a scalar >= 0. L1 can only learn the mean of detail it cannot place exactly (a
    blur); this matches its distribution."""
    total = image.new_zeros(())
    pairs = list(zip(laplacian_pyramid(image), laplacian_pyramid(target), strict=True))[:levels]
    for level_a, level_b in pairs:
        n, _, h, w = level_a.shape
        k = DESCRIPTOR_SIZE
        ys = torch.randint(0, h - k + 1, (n, per_image), generator=rng)
        xs = torch.randint(0, w - k + 1, (n, per_image), generator=rng)
        a, b = (neighbourhoods(level, ys, xs) for level in (level_a, level_b))
        projection = torch.randn(a.shape[1], directions, generator=rng).to(a)
        projection = projection / projection.norm(dim=0, keepdim=True)
        sorted_a, _ = torch.sort(a @ projection, dim=0)
        sorted_b, _ = torch.sort(b @ projection, dim=0)
        total = total + (sorted_a - sorted_b).abs().mean()
    return total / len(pairs)


class Distiller:
    """One distillation run: `step()` trains once; `save(out)` / `Distiller.resume(out, teacher)` persist it."""

    def __init__(self, teacher: LoadedGenerator, config: DistillConfig, student: Generator | None = None) -> None:
        self.teacher_model = teacher
        self.teacher = teacher.generator.eval().requires_grad_(False)
        self.config = config
        self.student = student if student is not None else build_student(self.teacher, config.student_preset)
        # What is saved and served: the moving average of the trained student (a copy of it, never trained itself).
        self.student_ema = copy.deepcopy(self.student).eval().requires_grad_(False)
        self.own_structure = "structure." not in shared_prefixes(self.student)
        # An own G_S regresses the teacher's z_S at unit scale (what a copied G_S feeds G_T through its input gain).
        self.structure_scale = 1.0 / structure_rms(self.teacher) if self.own_structure else 1.0
        self.shift = pixel_shift(self.teacher, self.student)
        probe = self._render_pair(self._inputs(torch.Generator().manual_seed(0), 1), 1.0)[0]
        self.patch = probe.shape[-1]
        self.discriminator = Discriminator(self.patch, wavelet_input=True)
        trainable = [p for p in self.student.parameters() if p.requires_grad]
        self.g_opt = torch.optim.Adam(trainable, lr=config.lr, betas=(0.0, 0.99))
        self.d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=(0.0, 0.99))
        self.rng = torch.Generator().manual_seed(config.seed)
        self.step_count = 0
        self.seconds = 0.0
        self.last: dict[str, float] = {}

    # ---- inputs ----------------------------------------------------------------------------------------------------
    def _inputs(self, rng: torch.Generator, batch: int) -> tuple[WindowInputs, WindowInputs, torch.Tensor]:
        """`batch` windows of random worlds, as a world renders them: the same z_l, coordinates and, for every
        layer the two generators share (same step), the same hashed noise, since the student can only learn the
        teacher's noise-driven texture from the noise that drives it. Rows within two windows of the horizon."""
        cells = self.config.cells
        teacher_windows, noises = [], []
        for _ in range(batch):
            seed = int(torch.randint(0, 2**31, (), generator=rng))
            row0 = int(torch.randint(-2 * cells, cells + 1, (), generator=rng))
            col0 = int(torch.randint(-(2**20), 2**20, (), generator=rng))
            # Untruncated z_l (psi_local 1): the student learns the teacher on the whole distribution, served or not.
            world = World(self.teacher, WorldSpec(seed=seed, psi_local=1.0))
            teacher_windows.append(world.window_inputs(row0, col0, cells, cells))
            noises.append(noise_images(self.student.geometry, seed, row0, col0, cells, cells))
        local = torch.cat([w.local_latents for w in teacher_windows])
        coords = torch.cat([w.coords for w in teacher_windows])
        teacher_noises = [torch.cat(layer) for layer in zip(*(w.noises for w in teacher_windows), strict=True)]
        student_noises = [torch.cat(layer) for layer in zip(*noises, strict=True)]
        z_global = torch.randn(batch, self.teacher.config.global_dim, generator=rng)
        return WindowInputs(local, coords, teacher_noises), WindowInputs(local, coords, student_noises), z_global

    def _render_pair(self, inputs, psi: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(teacher image, student image) on the pixels both cover, and the L1 between the student's z_S and the
        teacher's at unit scale (0 for a student that copies G_S)."""
        teacher_inputs, student_inputs, z_global = inputs
        with torch.no_grad():
            target, target_z = self.teacher.synthesize(
                teacher_inputs, z_global * psi, self.teacher.texture_styles(z_global, psi=psi)
            )
            student_styles = self.student.texture_styles(z_global, psi=psi)  # the same w: mapping is shared
        image, z_s = self.student.synthesize(student_inputs, z_global * psi, student_styles)
        structure = (z_s - target_z * self.structure_scale).abs().mean() if self.own_structure else z_s.new_zeros(())
        return (*align(target, image, self.shift, self.config.half_pixel), structure)

    def _structure_step(self, inputs, psi: float) -> dict[str, float]:
        """A warm-up step of an own G_S: the teacher's z_S alone (G_T and D are not run)."""
        teacher_inputs, student_inputs, z_global = inputs
        with torch.no_grad():
            target = self.teacher.structure(teacher_inputs.local_latents, teacher_inputs.coords, z_global * psi)
        z_s = self.student.structure(student_inputs.local_latents, student_inputs.coords, z_global * psi)
        structure = (z_s - target * self.structure_scale).abs().mean()
        self.g_opt.zero_grad(set_to_none=True)
        (self.config.structure_weight * structure).backward()
        self.g_opt.step()
        return {"structure": float(structure.detach()), "psi": psi}

    # ---- diagnosis -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def error_breakdown(self, *, windows: int = 24, psi: float = 0.8, seed: int = 123) -> dict[str, float]:
        """Where the student's image error comes from, on `windows` fixed windows (seed) at truncation psi: pyramid
        L1 against the teacher's render of the student (`student`), of the teacher's G_T fed the student's z_S
        (`teacher_g_t_on_student_z_s`: G_S's share) and of the student's G_T fed the teacher's z_S
        (`student_g_t_on_teacher_z_s`: G_T's share), of the teacher fed other noise images (`teacher_other_noise`:
        what a student that does not see its teacher's noise cannot help missing), the student's z_S L1 relative to
        the teacher's mean |z_S| (`z_s_relative_l1`), and both G_T's gains (losses.structure_gain). Pixels in
        [-1, 1]; no gradients."""
        rng = torch.Generator().manual_seed(seed)
        noise_rng = torch.Generator().manual_seed(seed + 1)  # its own stream: the windows stay those of `seed`
        sums: dict[str, float] = {}
        batches = math.ceil(windows / self.config.batch)
        for _ in range(batches):
            teacher_inputs, student_inputs, z_global = self._inputs(rng, self.config.batch)
            teacher_styles = list(self.teacher.texture_styles(z_global, psi=psi).unbind(1))
            student_styles = list(self.student.texture_styles(z_global, psi=psi).unbind(1))
            target, target_z = self.teacher.synthesize(teacher_inputs, z_global * psi, teacher_styles)
            image, z_s = self.student.synthesize(student_inputs, z_global * psi, student_styles)
            unit_target_z = target_z * self.structure_scale
            student_z_for_teacher = z_s / self.structure_scale if self.own_structure else z_s
            hybrid_gs = self.teacher.texture(student_z_for_teacher, teacher_styles, teacher_inputs.noises)
            hybrid_gt = self.student.texture(
                unit_target_z if self.own_structure else target_z, student_styles, student_inputs.noises
            )
            other_noises = [torch.randn(n.shape, generator=noise_rng) for n in teacher_inputs.noises]
            other_noise = self.teacher.texture(target_z, teacher_styles, other_noises)
            values = {
                "student": pyramid_l1(*align(target, image, self.shift, self.config.half_pixel)),
                "teacher_other_noise": pyramid_l1(other_noise, target),
                "teacher_g_t_on_student_z_s": pyramid_l1(hybrid_gs, target),
                "student_g_t_on_teacher_z_s": pyramid_l1(*align(target, hybrid_gt, self.shift, self.config.half_pixel)),
                "z_s_relative_l1": (z_s - unit_target_z).abs().mean() / unit_target_z.abs().mean()
                if self.own_structure
                else torch.zeros(()),
                "teacher_gain": structure_gain(
                    self.teacher.texture, target_z, target, teacher_styles, teacher_inputs.noises, rng
                ).mean(),
                "student_gain": structure_gain(
                    self.student.texture, z_s, image, student_styles, student_inputs.noises, rng
                ).mean(),
            }
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + float(value) / batches
        return {key: round(value, 4) for key, value in sums.items()}

    # ---- one step --------------------------------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        """One step: the structure warmup (an own G_S regresses z_S), then the D warmup (D alone), then D and the
        student each once. Returns the step's losses (also kept as `last`)."""
        started = time.perf_counter()
        config = self.config
        lr = config.lr_at(self.step_count)
        for optimizer in (self.g_opt, self.d_opt):
            for group in optimizer.param_groups:
                group["lr"] = lr
        low, high = config.psi_range
        psi = low + (high - low) * float(torch.rand((), generator=self.rng))
        inputs = self._inputs(self.rng, config.batch)
        structure_warmup = config.structure_warmup if self.own_structure else 0
        if self.step_count < structure_warmup:
            return self._finish(started, self._structure_step(inputs, psi))
        train_student = self.step_count >= structure_warmup + config.d_warmup
        with torch.set_grad_enabled(train_student):
            target, image, structure = self._render_pair(inputs, psi)

        losses: dict[str, float] = {}
        if config.adversarial_weight > 0:
            regularize = config.r1_gamma > 0 and self.step_count % config.r1_interval == 0
            real = target.detach().requires_grad_(regularize)
            real_logit, _ = self.discriminator(real)
            fake_logit, _ = self.discriminator(image.detach())
            d_loss = d_logistic_loss(real_logit, fake_logit)
            losses["d"] = float(d_loss.detach())
            if regularize:
                penalty = r1_penalty(real_logit, real)
                d_loss = d_loss + config.r1_gamma / 2 * penalty * config.r1_interval
                losses["r1"] = float(penalty.detach())
            self.d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.d_opt.step()
        if not train_student:
            return self._finish(started, losses)

        pixel = pyramid_l1(image, target)
        wavelet = wavelet_l1(image, target)
        loss = config.pyramid_weight * pixel + config.wavelet_weight * wavelet
        if self.own_structure:
            loss = loss + config.structure_weight * structure
            losses["structure"] = float(structure.detach())
        if config.detail_weight > 0:
            detail = detail_swd(image, target, self.rng, levels=config.detail_levels)
            loss = loss + config.detail_weight * detail
            losses["detail"] = float(detail.detach())
        if config.adversarial_weight > 0:
            self.discriminator.requires_grad_(False)
            adversarial = g_nonsaturating_loss(self.discriminator(image)[0])
            self.discriminator.requires_grad_(True)
            loss = loss + config.adversarial_weight * adversarial
            losses["g_adv"] = float(adversarial.detach())
        self.g_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.g_opt.step()
        losses.update(pixel=float(pixel.detach()), wavelet=float(wavelet.detach()), loss=float(loss.detach()), psi=psi)
        return self._finish(started, losses)

    def _finish(self, started: float, losses: dict[str, float]) -> dict[str, float]:
        """The end of every step: the moving average, the step count and clock, `last`."""
        self._update_ema()
        self.step_count += 1
        self.seconds += time.perf_counter() - started
        self.last = losses
        return losses

    @torch.no_grad()
    def _update_ema(self) -> None:
        """student_ema <- beta * student_ema + (1 - beta) * student, for the trained tensors (the rest are shared)."""
        beta = self.config.ema_beta
        for averaged, trained in zip(self.student_ema.parameters(), self.student.parameters(), strict=True):
            if trained.requires_grad:
                averaged.lerp_(trained, 1.0 - beta)

    # ---- persistence -----------------------------------------------------------------------------------------------
    def save(self, out: Path) -> Path:
        """Write the student checkpoint and the exact resume state into `out`, atomically; returns the checkpoint."""
        out.mkdir(parents=True, exist_ok=True)
        student_path = save_generator(
            self.student_ema,
            out / STUDENT_FILE,
            metadata={
                "scene_height": self.teacher_model.scene_height,
                "distilled_from": self.teacher_model.model_hash,
                "distill_config": self.config.to_json(),
                "distill_steps": self.step_count,
                "distill_seconds": round(self.seconds, 1),
            },
        )
        state = out / STATE_DIR
        state.mkdir(exist_ok=True)
        tensors = {f"student.{k}": v.contiguous() for k, v in self.student.state_dict().items()}
        tensors.update({f"ema.{k}": v.contiguous() for k, v in self.student_ema.state_dict().items()})
        tensors.update({f"d.{k}": v.contiguous() for k, v in self.discriminator.state_dict().items()})
        tensors["rng"] = self.rng.get_state()
        optimisers = {}
        for name, optimizer in (("g_opt", self.g_opt), ("d_opt", self.d_opt)):
            saved = optimizer.state_dict()
            for index, entry in saved["state"].items():
                for key, value in entry.items():
                    if isinstance(value, torch.Tensor):
                        tensors[f"{name}.{index}.{key}"] = value.contiguous()
            optimisers[name] = saved["param_groups"]
        meta = {
            "config": self.config.to_json(),
            "teacher": self.teacher_model.model_hash,
            "step": str(self.step_count),
            "seconds": repr(self.seconds),
            "optimisers": json.dumps(optimisers),
        }
        temporary = state / "tensors.safetensors.tmp"
        save_file(tensors, str(temporary), metadata=meta)
        os.replace(temporary, state / "tensors.safetensors")
        return student_path

    @classmethod
    def resume(cls, out: Path, teacher: LoadedGenerator, lr_steps: tuple[tuple[int, float], ...] = ()) -> Distiller:
        """The run saved in `out`, with lr_steps added to its schedule (DistillConfig.resumed_with); raises
        DistillError when it was distilled from another teacher or a step lies before the run's current step."""
        path = out / STATE_DIR / "tensors.safetensors"
        with open(path, "rb") as handle:
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))["__metadata__"]
        if header["teacher"] != teacher.model_hash:
            raise DistillError(f"{out} distils teacher {header['teacher']}, not {teacher.model_hash}")
        try:
            config = DistillConfig.from_json(header["config"]).resumed_with(int(header["step"]), lr_steps)
        except ValueError as exc:
            raise DistillError(str(exc)) from None
        # The architecture the run was started with (a preset may have changed since); weights: from the state.
        student_config = load_generator(out / STUDENT_FILE).generator.config
        run = cls(teacher, config, build_student(teacher.generator, student_config))
        tensors = load_file(str(path))
        run.student.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("student.")})
        # A run saved before the moving average existed starts it from its trained weights.
        ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        run.student_ema.load_state_dict(ema or run.student.state_dict())
        run.discriminator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("d.")})
        run.rng.set_state(tensors["rng"])
        optimisers = json.loads(header["optimisers"])
        for name, optimizer in (("g_opt", run.g_opt), ("d_opt", run.d_opt)):
            state: dict[int, dict] = {}
            prefix = f"{name}."
            for key, value in tensors.items():
                if key.startswith(prefix):
                    index, field = key[len(prefix) :].split(".", 1)
                    state.setdefault(int(index), {})[field] = value
            optimizer.load_state_dict({"state": state, "param_groups": optimisers[name]})
        run.step_count = int(header["step"])
        run.seconds = float(header["seconds"])
        return run


def distill(
    teacher: LoadedGenerator,
    out: Path,
    config: DistillConfig | None = None,
    *,
    max_steps: int | None = None,
    max_minutes: float | None = None,
    save_every: int = 200,
    log=None,
) -> Distiller:
    """Run (or resume, when `out` holds a run) until max_steps in total, max_minutes in this call, or SIGTERM/SIGINT
    (in the main thread: the step under way finishes and the run is saved, so nothing is lost). A resumed run keeps
    its stored config but for config.lr_steps, which are added to its schedule. log: a callable taking each progress
    line (default: print, flushed)."""
    log = log or functools.partial(print, flush=True)
    out = Path(out)
    if (out / STATE_DIR / "tensors.safetensors").exists():
        run = Distiller.resume(out, teacher, config.lr_steps if config is not None else ())
        log(f"resumed {out} at step {run.step_count}")
    else:
        config = config or DistillConfig()
        student = build_student(teacher.generator, config.student_preset)
        d_tensors: dict[str, torch.Tensor] = {}
        if config.init_from is not None:
            g_tensors, d_tensors = init_tensors(Path(config.init_from))
            copied = warm_start_student(student, Path(config.init_from), g_tensors)
            log(f"warm start: {copied} student tensors (G_T, and G_S if both are separable) from {config.init_from}")
        run = Distiller(teacher, config, student)
        if d_tensors:
            own = run.discriminator.state_dict()
            if set(own) != set(d_tensors) or any(own[k].shape != v.shape for k, v in d_tensors.items()):
                raise DistillError(f"{config.init_from}'s discriminator does not fit this run's windows (--cells)")
            run.discriminator.load_state_dict(d_tensors)
            log(f"warm start: the discriminator of {config.init_from}")
    deadline = None if max_minutes is None else time.monotonic() + 60 * max_minutes
    stop = threading.Event()
    handled = (signal.SIGTERM, signal.SIGINT) if threading.current_thread() is threading.main_thread() else ()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in handled}
    log(f"distilling into {out} from step {run.step_count}")
    try:
        while (
            (max_steps is None or run.step_count < max_steps)
            and (deadline is None or time.monotonic() < deadline)
            and not stop.is_set()
        ):
            losses = run.step()
            if run.step_count % save_every == 0:
                run.save(out)
                log(f"step {run.step_count}: " + " ".join(f"{k} {v:.4f}" for k, v in sorted(losses.items())))
        run.save(out)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stop.is_set():
        log(f"stopped by a signal at step {run.step_count}; saved")
    return run

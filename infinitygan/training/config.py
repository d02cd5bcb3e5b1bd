"""TrainConfig: every setting of a training run, stored with the run's state and in every checkpoint it writes."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from infinitygan.augment import DEFAULT_POLICY, parse_policy
from infinitygan.config import PRESETS, GeneratorConfig
from infinitygan.evaluate import SCALEINV_DOWNSAMPLE  # D_scene sees what the ScaleInv-4x score sees

PRECISIONS = ("auto", "bf16", "fp32")
D_INPUTS = ("rgb", "wavelet")
# Settings a resumed run may change: when and where it runs, not what it learns.
RUNTIME_FIELDS = (
    "max_iterations",
    "max_minutes",
    "threads",
    "device",
    "checkpoint_minutes",
    "sample_every",
    "eval_minutes",
)


def parse_lr_step(text: str) -> tuple[int, float]:
    """ "ITERATION:MULTIPLIER" (e.g. "25372:0.25") -> (25372, 0.25). Raises ValueError on anything else."""
    try:
        iteration, multiplier = text.split(":")
        step = (int(iteration), float(multiplier))
    except ValueError:
        raise ValueError(f"a learning-rate step is ITERATION:MULTIPLIER (e.g. 25000:0.25), got {text!r}") from None
    if step[0] < 0 or not 0.0 < step[1] <= 1.0:
        raise ValueError(f"a learning-rate step needs iteration >= 0 and 0 < multiplier <= 1, got {text!r}")
    return step


def checked_lr_steps(lr_steps) -> tuple[tuple[int, float], ...]:
    """(step, multiplier) pairs, sorted, as (int, float); raises ValueError unless step >= 0 and 0 < multiplier <= 1."""
    steps = tuple(sorted((int(i), float(m)) for i, m in lr_steps))
    if any(i < 0 or not 0.0 < m <= 1.0 for i, m in steps):
        raise ValueError(f"lr_steps need step >= 0 and 0 < multiplier <= 1, got {steps}")
    return steps


def extended_lr_steps(lr_steps, added, step: int) -> tuple[tuple[int, float], ...]:
    """lr_steps with `added` for a run resumed at `step`; each added step must lie at or after it, so a recorded
    schedule stays true of every step already trained. Raises ValueError otherwise."""
    past = [f"{i}:{m}" for i, m in added if i < step]
    if past:
        raise ValueError(f"the run is at step {step}; a learning-rate step cannot start before it: {past}")
    return checked_lr_steps((*lr_steps, *added))


def lr_multiplier(lr_steps: tuple[tuple[int, float], ...], iteration: int) -> float:
    """The multiplier of the last (iteration, multiplier) step at or before `iteration` (1.0 before the first)."""
    multiplier = 1.0
    for start, value in sorted(lr_steps):
        if start <= iteration:
            multiplier = value
    return multiplier


def fast_bf16(device: str) -> bool:
    """Whether bf16 convolutions are fast on device: CUDA with bf16 support, or a CPU with oneDNN bf16 kernels."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@dataclass
class TrainConfig:
    """A training run's recipe.

    preset: generator preset ("small", "small-wavelet" = SWAGAN's wavelet G, ...); d_input: "rgb" or "wavelet"
    (SWAGAN's D reads the Haar DWT of its input). augment: DiffAugment policy, comma-separated ("" = off).
    precision: "bf16" runs the forward passes of the adversarial steps under bf16 autocast (losses, R1, path length,
    EMA and w_avg stay fp32); "fp32" everywhere; "auto" (default) picks bf16 where the device has fast bf16
    kernels (CUDA, or a CPU whose oneDNN supports bf16: AVX512-BF16/AMX) and fp32 elsewhere, since oneDNN's
    fallback for bf16 convolutions is ~30x slower than fp32 (measured: bench/bench_training.py).
    init_from: a warm start: a generator checkpoint whose tensors of matching name and shape start G and its EMA, or
    a training resume point whose G, G_ema and D tensors of matching name and shape start all three (the optimiser
    states and the iteration count start afresh; for a change of architecture that a resume cannot carry).
    noise_free_stages: G_T's first this many stages inject no noise (GeneratorConfig.noise_free_stages; 1 since the
    42,269-step model, whose coarsest noise drew white blotches; older runs resume with 0).
    structure_gain_weight: weight of the squared gain of G_T with respect to z_S (losses.structure_gain: how much a
    1% change of z_S moves the image, in % of its RMS), on the path-length step's renders. Unpenalised it grew with
    training (2.7 for the first model, 34.5 at 51,270 iterations: a 1% error in z_S moved the image by a third), and
    a distilled student's G_S, never that exact, could not feed such a G_T; the shipped model trained at 0.001
    (gain 6.7). 0: off (older runs).
    scene_weight: weight of the whole-scene adversarial term (phases.scene_d_step / scene_g_step): every
        scene_interval iterations, scene_batch whole-height squares (scene_height px, framed like the photos: the
        horizon on its row) are rendered and, downsampled SCALEINV_DOWNSAMPLE x like the ScaleInv-4x score, judged by a
        second discriminator D_scene against real squares. The patch D never sees more than a patch, so nothing
        else tells G how large a pale patch or a band of hills may grow across the scene. 0: off (older runs).
    scene_diversity_weight: weight of mode seeking with respect to z_g on the whole-scene step's squares (pairs with
        the same z_l and framing, different z_g; phases.scene_g_step). InfinityGAN's diversity loss moves only z_l's
        pairs apart; the eval's diversity (different seeds, one region) is mostly z_g's palette, and it fell under
        the whole-scene critic (0.239 -> 0.216). 0: off (older runs).
    scene_d_lr: D_scene's own fixed learning rate, or None: lr_at(iteration) like G and D (older runs). At 0.1x
        lr, one step every 4 iterations on 2 squares, D_scene sat at chance (logistic loss 1.39-1.42) while the
        whole-scene SWD stayed 2.6x its floor: too weak a critic to say what is still wrong.
    Sizes are in pixels, rates per iteration; batch is in images.
    """

    preset: str = "small"
    patch_cells: int = 9  # z_S cells per side of a training window: 9 -> 69 px (small), 74 px (small-wavelet)
    batch: int = 8
    lr: float = 0.002
    lr_steps: tuple[tuple[int, float], ...] = ()  # (iteration, multiplier of lr from there on), G and D alike
    betas: tuple[float, float] = (0.0, 0.99)
    r1_gamma: float = 1.0
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    position_weight: float = 1.0
    diversity_weight: float = 1.0
    style_mixing: float = 0.9
    ema_half_life_images: float = 5_000.0  # shorter than the paper's 10k: CPU runs see ~50k images
    ema_rampup: float | None = 0.05  # half-life <= this fraction of the images seen (StyleGAN2-ADA): early EMA
    # weights would otherwise stay mostly the random init for thousands of iterations
    scene_height: int = 256
    d_base_width: int = 16
    d_max_width: int = 128
    d_input: str = "wavelet"  # SWAGAN D won the 30-minute comparison (MODEL_CARD.md)
    augment: str = DEFAULT_POLICY
    precision: str = "auto"
    init_from: str | None = None
    noise_free_stages: int = 1
    noise_gate: bool = False
    structure_gain_weight: float = 0.0
    scene_weight: float = 0.0
    scene_interval: int = 4
    scene_batch: int = 2
    scene_d_lr: float | None = None
    scene_diversity_weight: float = 0.0
    init_seed: int = 0
    seed: int = 0
    data_seed: int = 0
    checkpoint_minutes: float = 5.0
    sample_every: int = 500
    eval_minutes: float | None = None  # score G_ema's SWD this often and keep the best checkpoint (best.safetensors)
    eval_patches: int = 512
    max_iterations: int | None = None
    max_minutes: float | None = None
    threads: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        self.lr_steps = checked_lr_steps(self.lr_steps)
        if self.batch < 2 or self.batch % 2:
            raise ValueError(f"batch must be even and >= 2 (the diversity loss pairs samples), got {self.batch}")
        if not (math.isfinite(self.structure_gain_weight) and self.structure_gain_weight >= 0):
            raise ValueError(f"structure_gain_weight must be >= 0, got {self.structure_gain_weight}")
        if not (math.isfinite(self.diversity_weight) and self.diversity_weight >= 0):
            raise ValueError(f"diversity_weight must be >= 0, got {self.diversity_weight}")
        if not (math.isfinite(self.scene_diversity_weight) and self.scene_diversity_weight >= 0):
            raise ValueError(f"scene_diversity_weight must be >= 0, got {self.scene_diversity_weight}")
        if not (math.isfinite(self.scene_weight) and self.scene_weight >= 0):
            raise ValueError(f"scene_weight must be >= 0, got {self.scene_weight}")
        if self.scene_interval < 1 or self.scene_batch < 2 or self.scene_batch % 2:
            raise ValueError(
                f"scene_interval must be >= 1 and scene_batch even and >= 2, got {self.scene_interval} and "
                f"{self.scene_batch}"
            )
        if self.scene_d_lr is not None and not (math.isfinite(self.scene_d_lr) and self.scene_d_lr > 0):
            raise ValueError(f"scene_d_lr must be > 0, got {self.scene_d_lr}")
        if self.scene_weight > 0 and self.scene_height % SCALEINV_DOWNSAMPLE:
            raise ValueError(f"scene_height must be a multiple of {SCALEINV_DOWNSAMPLE} for the whole-scene D")
        if self.patch_cells < 1:
            raise ValueError(f"patch_cells must be positive, got {self.patch_cells}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {sorted(PRESETS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.d_input not in D_INPUTS:
            raise ValueError(f"d_input must be one of {D_INPUTS}, got {self.d_input!r}")
        parse_policy(self.augment)
        stages = PRESETS[self.preset].stages
        if not 0 <= self.noise_free_stages <= stages:
            raise ValueError(
                f"noise_free_stages must be 0..{stages} for preset {self.preset!r}, got {self.noise_free_stages}"
            )

    def generator_config(self) -> GeneratorConfig:
        """The architecture this run trains: its preset with the recipe's noise_free_stages and noise_gate."""
        return dataclasses.replace(
            PRESETS[self.preset], noise_free_stages=self.noise_free_stages, noise_gate=self.noise_gate
        )

    def resolved_precision(self, device: str | None = None) -> str:
        """ "bf16" or "fp32": what the run computes in on device (default: self.device)."""
        if self.precision != "auto":
            return self.precision
        return "bf16" if fast_bf16(device or self.device) else "fp32"

    def lr_at(self, iteration: int) -> float:
        """The learning rate at an iteration: lr times the multiplier of the last lr_steps entry at or before it."""
        return self.lr * lr_multiplier(self.lr_steps, iteration)

    @property
    def augment_policy(self) -> tuple[str, ...]:
        return parse_policy(self.augment)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Unknown keys are ignored; keys missing from an older run's config take the defaults of that era
        (no augmentation, fp32, RGB discriminator, noise at every stage), so an old run resumes as it was."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {"augment": "", "precision": "fp32", "d_input": "rgb", "noise_free_stages": 0}
        values.update({k: v for k, v in data.items() if k in known})
        return cls(**values)

    def resumed_with(self, step: int = 0, lr_steps: tuple[tuple[int, float], ...] = (), **runtime: Any) -> TrainConfig:
        """This config with runtime settings (RUNTIME_FIELDS) and the batch size replaced, for a resumed run at
        iteration `step`. lr_steps are added to the schedule; each must lie at or after `step`, so the recorded
        recipe stays true of every iteration already trained. Raises ValueError otherwise."""
        allowed = {*RUNTIME_FIELDS, "batch"}
        unknown = sorted(set(runtime) - allowed)
        if unknown:
            raise ValueError(f"a resumed run keeps its recipe; cannot change {unknown}")
        return dataclasses.replace(self, lr_steps=extended_lr_steps(self.lr_steps, lr_steps, step), **runtime)

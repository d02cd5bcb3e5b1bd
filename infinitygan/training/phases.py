"""The loss phases of one InfinityGAN training iteration, apart from the run driver and from state storage.

Each phase takes the models, a batch and the run's random generator, takes one optimiser step and returns the
numbers it logs. Forward passes of the adversarial phases run under bf16 autocast when the config asks for it;
losses, R1, path length, EMA and the mapping's w_avg stay fp32 (data.md: bf16 convolutions are ~2x faster here).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from infinitygan.augment import diff_augment
from infinitygan.discriminator import Discriminator
from infinitygan.evaluate import SCALEINV_DOWNSAMPLE
from infinitygan.generator import Generator
from infinitygan.losses import (
    PathLengthRegularizer,
    d_logistic_loss,
    diversity_loss,
    g_nonsaturating_loss,
    position_loss,
    r1_penalty,
    structure_gain,
)
from infinitygan.sampling import FakeBatch, paired_labels, sample_fake_inputs
from infinitygan.training.config import TrainConfig


@dataclass
class Models:
    """What the phases train: G, D, G's EMA, their optimisers and the path-length running mean."""

    generator: Generator
    discriminator: Discriminator
    g_ema: Generator
    g_opt: torch.optim.Optimizer
    d_opt: torch.optim.Optimizer
    path_length: PathLengthRegularizer
    # The whole-scene critic and its optimiser (TrainConfig.scene_weight > 0), else None.
    scene_discriminator: Discriminator | None = None
    scene_d_opt: torch.optim.Optimizer | None = None


def lazy_adam(params, config: TrainConfig, interval: int) -> torch.optim.Adam:
    """Adam with StyleGAN2's lazy-regularisation correction: lr * c and beta ** c, c = k / (k + 1)."""
    c = interval / (interval + 1)
    return torch.optim.Adam(params, lr=config.lr * c, betas=(config.betas[0] ** c, config.betas[1] ** c), eps=1e-8)


def set_lr(models: Models, config: TrainConfig, iteration: int) -> None:
    """Set G's and D's optimisers to config.lr_at(iteration), with the same lazy-regularisation factor as lazy_adam,
    and D_scene's to config.scene_d_lr where set (else the same lr)."""
    lr = config.lr_at(iteration)
    for opt, interval in ((models.g_opt, config.pl_interval), (models.d_opt, config.r1_interval)):
        for group in opt.param_groups:
            group["lr"] = lr * interval / (interval + 1)
    if models.scene_d_opt is not None:  # R1 every step: no lazy-regularisation factor
        for group in models.scene_d_opt.param_groups:
            group["lr"] = lr if config.scene_d_lr is None else config.scene_d_lr


def autocast(config: TrainConfig, device: torch.device):
    """bf16 autocast when the config resolves to bf16 on device, else a no-op context."""
    if config.resolved_precision(device.type) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _fake(models: Models, config: TrainConfig, top_px, rng, device, *, pairs: str | None) -> FakeBatch:
    return sample_fake_inputs(
        models.generator, top_px, config.patch_cells, rng, device, mixing=config.style_mixing, pairs=pairs
    )


def _discriminate(d: Discriminator, images: torch.Tensor, config: TrainConfig, rng: torch.Generator):
    logits, position = d(diff_augment(images, config.augment_policy, rng))
    return logits.float(), position.float()


def d_step(
    models: Models, config: TrainConfig, real: torch.Tensor, top_px: torch.Tensor, vpos: torch.Tensor, rng
) -> dict[str, float]:
    """Logistic D loss + L_ar on real and fake (fakes at the reals' vertical positions), both augmented."""
    g, d, device = models.generator, models.discriminator, real.device
    g.requires_grad_(False)
    d.requires_grad_(True)
    with autocast(config, device):
        with torch.no_grad():
            batch = _fake(models, config, top_px, rng, device, pairs=None)
            fake_images = g(batch.inputs, batch.z_global, batch.styles)
        fake_logits, fake_pos = _discriminate(d, fake_images, config, rng)
        real_logits, real_pos = _discriminate(d, real, config, rng)
    adv = d_logistic_loss(real_logits, fake_logits)
    real_position = position_loss(real_pos, vpos)
    loss = adv + config.position_weight * (real_position + position_loss(fake_pos, vpos))
    models.d_opt.zero_grad(set_to_none=True)
    loss.backward()
    models.d_opt.step()
    return {
        "d": adv.item(),
        "d_pos_real": real_position.item(),
        "real_score": real_logits.detach().mean().item(),
        "fake_score": fake_logits.detach().mean().item(),
        # ADA's overfitting signal: the share of (augmented) reals D calls real, as 2p - 1.
        "r_t": real_logits.detach().sign().mean().item(),
    }


def r1_step(models: Models, config: TrainConfig, real: torch.Tensor, rng) -> dict[str, float]:
    """Lazy R1 on augmented reals, in fp32 (its double backward is where bf16 would lose the most)."""
    d = models.discriminator
    real = real.detach().requires_grad_(True)
    logits, position = d(diff_augment(real, config.augment_policy, rng))
    penalty = r1_penalty(logits, real)
    # 0 * position keeps every D parameter in the graph.
    loss = config.r1_gamma / 2 * penalty * config.r1_interval + 0 * position.sum()
    models.d_opt.zero_grad(set_to_none=True)
    loss.backward()
    models.d_opt.step()
    return {"r1": penalty.item()}


def g_step(models: Models, config: TrainConfig, top_px: torch.Tensor, vpos: torch.Tensor, rng) -> dict[str, float]:
    """Non-saturating G loss + L_ar + L1 diversity on paired samples (shared z_g and coordinates, fresh z_l)."""
    g, d = models.generator, models.discriminator
    device = vpos.device
    g.requires_grad_(True)
    d.requires_grad_(False)
    with autocast(config, device):
        batch = _fake(models, config, top_px, rng, device, pairs="same_z_g")
        images, z_s = g.synthesize(batch.inputs, batch.z_global, batch.styles)
        logits, position = _discriminate(d, images, config, rng)
    adv = g_nonsaturating_loss(logits)
    position_term = position_loss(position, paired_labels(vpos))
    half = images.shape[0] // 2
    local, z_s = batch.inputs.local_latents, z_s.float()
    diversity = diversity_loss(local[:half], local[half:], z_s[:half], z_s[half:])
    loss = adv + config.position_weight * position_term + config.diversity_weight * diversity
    models.g_opt.zero_grad(set_to_none=True)
    loss.backward()
    models.g_opt.step()
    return {"g": adv.item(), "g_pos": position_term.item(), "div": diversity.item()}


def path_length_step(models: Models, config: TrainConfig, top_px: torch.Tensor, rng) -> dict[str, float]:
    """StyleGAN2's path-length regulariser on half a batch, in fp32, and (structure_gain_weight > 0) the squared gain
    of G_T with respect to z_S on the same renders (losses.structure_gain)."""
    g = models.generator
    device = next(g.parameters()).device
    half = max(1, top_px.shape[0] // 2)
    batch = sample_fake_inputs(
        g, top_px[:half], config.patch_cells, rng, device, mixing=config.style_mixing, pairs=None
    )
    styles = batch.styles.detach().float().requires_grad_(True)
    images, z_s = g.synthesize(batch.inputs, batch.z_global, styles)
    penalty = models.path_length(images, styles)
    loss = config.pl_weight * config.pl_interval * penalty
    logged = {"pl": penalty.item(), "pl_mean": models.path_length.mean}
    if config.structure_gain_weight > 0:
        gain = structure_gain(g.texture, z_s, images, list(styles.unbind(1)), batch.inputs.noises, rng)
        loss = loss + config.structure_gain_weight * config.pl_interval * gain.pow(2).mean()
        logged["zs_gain"] = float(gain.detach().mean())
    models.g_opt.zero_grad(set_to_none=True)
    loss.backward()
    models.g_opt.step()
    return logged


def _fake_scenes(
    models: Models, config: TrainConfig, top_px: torch.Tensor, rng, device, pairs: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(squares (B, 3, H/4, H/4), z_g (B, global_dim)): G's whole-height squares, H = scene_height, their top row
    top_px rows from the horizon, downsampled SCALEINV_DOWNSAMPLE x (mean pooling, as the ScaleInv-4x score);
    pairs as sampling.sample_fake_inputs."""
    g, size = models.generator, config.scene_height
    batch = sample_fake_inputs(
        g, top_px, g.geometry.cells_covering(size), rng, device, mixing=config.style_mixing, pairs=pairs
    )
    images = g(batch.inputs, batch.z_global, batch.styles)[..., :size, :size]
    return F.avg_pool2d(images, SCALEINV_DOWNSAMPLE), batch.z_global


def _judge_scenes(
    d: Discriminator, images: torch.Tensor, config: TrainConfig, rng
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, 0 * position): D_scene has no position label (every square holds the whole height); the zero term
    keeps its position head in the graph."""
    logits, position = d(diff_augment(images, config.augment_policy, rng))
    return logits.float(), 0 * position.float().sum()


def scene_d_step(
    models: Models, config: TrainConfig, real: torch.Tensor, top_px: torch.Tensor, rng
) -> dict[str, float]:
    """D_scene: logistic loss on real whole-height squares (B, 3, H, H) against G's at the same framing (top_px),
    both downsampled SCALEINV_DOWNSAMPLE x, plus R1 (r1_gamma) on the reals, in one step."""
    g, d, device = models.generator, models.scene_discriminator, real.device
    g.requires_grad_(False)
    d.requires_grad_(True)
    with autocast(config, device):
        with torch.no_grad():
            fake, _ = _fake_scenes(models, config, top_px, rng, device)
        fake_logits, fake_zero = _judge_scenes(d, fake, config, rng)
    # The reals' pass stays fp32: R1's double backward runs through it.
    real = F.avg_pool2d(real, SCALEINV_DOWNSAMPLE).detach().requires_grad_(True)
    real_logits, real_zero = _judge_scenes(d, real, config, rng)
    adv = d_logistic_loss(real_logits, fake_logits)
    penalty = r1_penalty(real_logits, real)
    loss = adv + config.r1_gamma / 2 * penalty + fake_zero + real_zero
    models.scene_d_opt.zero_grad(set_to_none=True)
    loss.backward()
    models.scene_d_opt.step()
    return {"d_scene": adv.item(), "r1_scene": penalty.item()}


def scene_g_step(models: Models, config: TrainConfig, top_px: torch.Tensor, rng) -> dict[str, float]:
    """G: scene_weight x the non-saturating loss of D_scene on G's whole-height squares, plus (scene_diversity_weight
    > 0) mode seeking with respect to z_g on them: the squares come in pairs with the same z_l, noise and framing and
    different z_g, and the loss is mean|z_g^a - z_g^b| / mean|square_a - square_b| (losses.diversity_loss)."""
    g, d = models.generator, models.scene_discriminator
    g.requires_grad_(True)
    d.requires_grad_(False)
    device = next(g.parameters()).device
    pairs = "same_z_l" if config.scene_diversity_weight > 0 else None
    half = top_px.shape[0] // 2
    framing = torch.cat([top_px[:half], top_px[:half]]) if pairs else top_px
    with autocast(config, device):
        squares, z_global = _fake_scenes(models, config, framing, rng, device, pairs=pairs)
        logits, zero = _judge_scenes(d, squares, config, rng)
    logged, diversity = {}, torch.zeros(())
    if pairs:
        diversity = diversity_loss(z_global[:half], z_global[half:], squares[:half].float(), squares[half:].float())
        logged["div_scene"] = diversity.item()
    adv = g_nonsaturating_loss(logits)
    models.g_opt.zero_grad(set_to_none=True)
    (config.scene_weight * adv + config.scene_diversity_weight * diversity + zero).backward()
    models.g_opt.step()
    return {"g_scene": adv.item(), **logged}


@torch.no_grad()
def update_ema(models: Models, beta: float) -> None:
    """G_ema = beta G_ema + (1 - beta) G, in fp32; buffers (w_avg) are copied."""
    for p_ema, p in zip(models.g_ema.parameters(), models.generator.parameters(), strict=True):
        p_ema.lerp_(p, 1.0 - beta)
    for b_ema, b in zip(models.g_ema.buffers(), models.generator.buffers(), strict=True):
        b_ema.copy_(b)

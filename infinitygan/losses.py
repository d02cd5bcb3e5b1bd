"""InfinityGAN's losses: non-saturating logistic GAN loss, lazy R1, path length, L1 diversity, vertical position."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DIVERSITY_EPS = 1e-5


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_logits).mean()


def position_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_ar: L1 between predicted and true vertical position (both in [-1, 1])."""
    return (predicted - target).abs().mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """E ||grad_x D(x)||^2 over real images (real_images must require grad); multiply by gamma / 2 outside."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def diversity_loss(
    local_a: torch.Tensor, local_b: torch.Tensor, structure_a: torch.Tensor, structure_b: torch.Tensor
) -> torch.Tensor:
    """Mode seeking (MSGAN) in InfinityGAN's L1 form: mean|z_l^a - z_l^b| / mean|G_S(a) - G_S(b)| for pairs that
    share z_g and coordinates; pairs (B/2, ...) each. Minimising it pushes the pair's outputs apart. The same form
    serves z_g against whole-scene squares (phases.scene_g_step). (The reference's "angular" variant returns a
    similarity, which pulls them together, and its arccos can NaN.)"""
    latent_distance = (local_a - local_b).abs().flatten(1).mean(1)
    structure_distance = (structure_a - structure_b).abs().flatten(1).mean(1)
    return (latent_distance / (structure_distance + DIVERSITY_EPS)).mean()


class PathLengthRegularizer:
    """StyleGAN2 path length penalty w.r.t. the G_T styles, with a running mean of the path lengths."""

    def __init__(self, decay: float = 0.01) -> None:
        self.decay = decay
        self.mean = 0.0

    def __call__(self, images: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) computed from styles (B, L, w_dim), which must require grad."""
        noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
        (grad,) = torch.autograd.grad((images * noise).sum(), styles, create_graph=True)
        lengths = grad.pow(2).sum(2).mean(1).sqrt()
        batch_mean = float(lengths.detach().mean())
        if math.isfinite(batch_mean):
            self.mean += self.decay * (batch_mean - self.mean)
        return (lengths - self.mean).pow(2).mean()


STRUCTURE_SIGMA = 0.01  # the z_S perturbation of structure_gain, relative to z_S's RMS


def structure_gain(
    texture, z_s: torch.Tensor, images: torch.Tensor, styles, noises, rng: torch.Generator | None = None
) -> torch.Tensor:
    """Per-sample gain of G_T with respect to its input: RMS(G_T(z_S + d) - G_T(z_S)) / (sigma * RMS(images)) for an
    isotropic Gaussian d of RMS sigma * RMS(z_S) (sigma = STRUCTURE_SIGMA). A finite-difference Jacobian norm: 1
    means a 1% change of z_S moves the image by 1% of its RMS. Returns (B,); differentiable (a regulariser), same
    noise images in both passes.

    texture: G_T (a callable (z_S, styles, noises) -> images); z_s: (B, C, n, n); images: G_T(z_s), (B, 3, S, S)."""
    scale = STRUCTURE_SIGMA * z_s.detach().pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    noise = torch.randn(z_s.shape, generator=rng, device=z_s.device, dtype=z_s.dtype)
    perturbed = texture(z_s + scale * noise, styles, noises)
    change = (perturbed - images).pow(2).flatten(1).mean(1).sqrt()
    return change / (STRUCTURE_SIGMA * images.detach().pow(2).flatten(1).mean(1).sqrt() + 1e-8)

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
    """Mode seeking in the paper's L1 form: mean|z_l^a - z_l^b| / mean|G_S(a) - G_S(b)| for pairs that share z_g
    and coordinates. Minimising it pushes the pair's structures apart. (The reference's "angular" variant returns a
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

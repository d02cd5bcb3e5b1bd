"""InfinityGAN training loop, in one readable file.

Each iteration: a D step (logistic loss + L_ar on real and fake), lazily an R1 step, a G step (non-saturating loss +
L_ar + L1 diversity on paired G_S outputs), lazily a path-length step, then the G EMA update.

Training randomness comes from one seeded torch.Generator (and the seeded global RNG for autograd-side noise); both
states are saved with the run, so a resumed run continues the same sequence. Only the world uses the coordinate hash.
State is stored without pickle: tensors in safetensors, everything else in JSON.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import platform
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file as load_safetensors_file
from safetensors.torch import save as save_safetensors_bytes

from infinitygan.checkpoint import save_generator, write_atomic
from infinitygan.coords import coordinate_grid
from infinitygan.discriminator import Discriminator
from infinitygan.generator import Generator, WindowInputs, build_generator
from infinitygan.losses import (
    PathLengthRegularizer,
    d_logistic_loss,
    diversity_loss,
    g_nonsaturating_loss,
    position_loss,
    r1_penalty,
)

STATE_DIR = "state"
STATE_TENSORS = "tensors.safetensors"
STATE_JSON = "state.json"
GENERATOR_FILE = "generator.safetensors"


@dataclass
class TrainConfig:
    preset: str = "small"
    patch_cells: int = 9  # z_S cells per side of a training window: 9 -> 69 px with the transposed upsampler
    batch: int = 8
    lr: float = 0.002
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
    init_seed: int = 0
    seed: int = 0
    data_seed: int = 0
    checkpoint_minutes: float = 5.0
    sample_every: int = 500
    max_iterations: int | None = None
    max_minutes: float | None = None
    threads: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.batch < 2 or self.batch % 2:
            raise ValueError(f"batch must be even and >= 2 (the diversity loss pairs samples), got {self.batch}")
        if self.patch_cells < 1:
            raise ValueError(f"patch_cells must be positive, got {self.patch_cells}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# ---- inputs ---------------------------------------------------------------------------------------------------------


def window_row_px(generator: Generator, top_px: float, cells: int) -> np.ndarray:
    """World row (relative to the horizon) of every z_l row's centre for a window whose top output row is top_px.

    In the world, output pixel i of a window starting at z_S cell j0 is world row cell_px * j0 + pixel_offset + i,
    and z_l row J of that window is global cell j0 - m + J, centred at cell_px * (j0 - m + J) - center_frac.
    Solving for j0 from top_px gives the expression below (j0 may be fractional in training).
    """
    geometry = generator.geometry
    rows = np.arange(geometry.local_cells(cells), dtype=np.float64)
    return top_px - geometry.pixel_offset + geometry.cell_px * (rows - geometry.structure_margin) - geometry.center_frac


def sample_coords(
    generator: Generator, top_px: torch.Tensor, cells: int, rng: torch.Generator, *, jitter: bool
) -> torch.Tensor:
    """(B, 3, L, L) coordinates at the batch's vertical positions, with a random horizontal phase per sample and,
    in training, +-half-a-cell jitter (the paper's) on both axes."""
    config = generator.config
    cell_px = generator.geometry.cell_px
    length = generator.geometry.local_cells(cells)
    batch = top_px.shape[0]
    phase = torch.rand(batch, generator=rng, dtype=torch.float64) * config.coord_period_cells
    shift = (torch.rand(batch, 2, generator=rng, dtype=torch.float64) - 0.5) if jitter else torch.zeros(batch, 2)
    grids = []
    for b in range(batch):
        row_px = window_row_px(generator, float(top_px[b]) + float(shift[b, 0]) * cell_px, cells)
        col_cells = float(phase[b]) + float(shift[b, 1]) + np.arange(length, dtype=np.float64)
        grids.append(coordinate_grid(row_px, col_cells, config))
    return torch.stack(grids)


def sample_noises(generator: Generator, batch: int, cells: int, rng: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(batch, 1, size, size, generator=rng) for size in generator.geometry.layer_sizes(cells)]


def sample_local(generator: Generator, batch: int, cells: int, rng: torch.Generator) -> torch.Tensor:
    length = generator.geometry.local_cells(cells)
    return torch.randn(batch, generator.config.local_dim, length, length, generator=rng)


def mixed_styles(generator: Generator, z_global: torch.Tensor, rng: torch.Generator, mixing: float) -> torch.Tensor:
    """(B, L, w_dim) G_T styles; with probability `mixing` a sample switches to a second z's w at a uniform layer."""
    batch, num_styles = z_global.shape[0], generator.num_styles
    w = generator.mapping(z_global)
    if generator.training:
        generator.mapping.track_average(w)
    styles = w[:, None, :].expand(batch, num_styles, -1)
    if mixing <= 0:
        return styles
    w_mix = generator.mapping(torch.randn(z_global.shape, generator=rng).to(z_global.device))
    cut = torch.randint(1, num_styles, (batch,), generator=rng)
    cut = torch.where(torch.rand(batch, generator=rng) < mixing, cut, torch.full_like(cut, num_styles))
    use_mix = torch.arange(num_styles)[None, :] >= cut[:, None]
    return torch.where(use_mix[:, :, None].to(w.device), w_mix[:, None, :], styles)


@dataclass
class FakeBatch:
    inputs: WindowInputs
    z_global: torch.Tensor
    styles: torch.Tensor


def sample_fake_inputs(
    generator: Generator,
    top_px: torch.Tensor,
    cells: int,
    rng: torch.Generator,
    device: torch.device,
    *,
    mixing: float,
    paired: bool,
    jitter: bool = True,
) -> FakeBatch:
    """Random inputs for a batch. paired=True: the second half repeats the first half's z_g, styles and coordinates
    (and so must use the first half's position labels) with fresh z_l and noise, for the diversity loss."""
    batch = top_px.shape[0]
    base = batch // 2 if paired else batch
    z_global = torch.randn(base, generator.config.global_dim, generator=rng)
    coords = sample_coords(generator, top_px[:base], cells, rng, jitter=jitter)
    if paired:
        z_global, coords = torch.cat([z_global, z_global]), torch.cat([coords, coords])
    z_global = z_global.to(device)
    styles = mixed_styles(generator, z_global[:base], rng, mixing)
    if paired:
        styles = torch.cat([styles, styles])
    inputs = WindowInputs(
        local_latents=sample_local(generator, batch, cells, rng).to(device),
        coords=coords.to(device),
        noises=[n.to(device) for n in sample_noises(generator, batch, cells, rng)],
    )
    return FakeBatch(inputs, z_global, styles)


def paired_labels(vpos: torch.Tensor) -> torch.Tensor:
    """Position labels for a paired batch: the second half shares the first half's coordinates, so its labels too
    (the reference forgot to copy them, making half the fake labels wrong)."""
    half = vpos.shape[0] // 2
    return torch.cat([vpos[:half], vpos[:half]])


# ---- the run --------------------------------------------------------------------------------------------------------


def lazy_adam(params, config: TrainConfig, interval: int) -> torch.optim.Adam:
    """Adam with StyleGAN2's lazy-regularisation correction: lr * c and beta ** c, c = k / (k + 1)."""
    c = interval / (interval + 1)
    return torch.optim.Adam(params, lr=config.lr * c, betas=(config.betas[0] ** c, config.betas[1] ** c), eps=1e-8)


class Trainer:
    def __init__(self, config: TrainConfig, data_dir: Path | str, out_dir: Path | str) -> None:
        from infinitygan.data import PatchDataset

        self.config = config
        self.device = torch.device(config.device)
        self.out_dir = Path(out_dir)
        self.data_dir = Path(data_dir)
        self.generator = build_generator(config.preset, init_seed=config.init_seed).train().to(self.device)
        self.patch_size = self.generator.geometry.texture_size(config.patch_cells)
        if self.patch_size < 8:
            raise ValueError(f"patch_cells={config.patch_cells} gives a {self.patch_size}px patch; use more cells")
        torch.manual_seed(config.init_seed + 1)
        self.discriminator = Discriminator(
            self.patch_size, base_width=config.d_base_width, max_width=config.d_max_width
        ).to(self.device)
        self.g_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        self.g_opt = lazy_adam(self.generator.parameters(), config, config.pl_interval)
        self.d_opt = lazy_adam(self.discriminator.parameters(), config, config.r1_interval)
        self.dataset = PatchDataset(
            self.data_dir,
            scene_height=config.scene_height,
            patch_size=self.patch_size,
            length=2**62,
            seed=config.data_seed,
        )
        self.rng = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        self.path_length = PathLengthRegularizer()
        self.step = 0
        self.elapsed_s = 0.0
        self.losses: dict[str, float] = {}
        self.sample_inputs = self._fixed_sample_inputs()

    # ---- one iteration -------------------------------------------------------------------------------------------
    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        start = self.step * self.config.batch
        items = [self.dataset[start + i] for i in range(self.config.batch)]
        images = torch.stack([item["image"] for item in items]).to(self.device)
        top_px = torch.tensor([float(item["top_px"]) for item in items], dtype=torch.float64)
        vpos = torch.stack([item["vpos"] for item in items]).to(self.device)
        return images, top_px, vpos

    def fake(self, top_px: torch.Tensor, *, paired: bool, mixing: float | None = None) -> FakeBatch:
        mixing = self.config.style_mixing if mixing is None else mixing
        return sample_fake_inputs(
            self.generator, top_px, self.config.patch_cells, self.rng, self.device, mixing=mixing, paired=paired
        )

    def d_step(self, real: torch.Tensor, top_px: torch.Tensor, vpos: torch.Tensor) -> None:
        config, d = self.config, self.discriminator
        self.generator.requires_grad_(False)
        d.requires_grad_(True)
        with torch.no_grad():
            batch = self.fake(top_px, paired=False)
            fake_images = self.generator(batch.inputs, batch.z_global, batch.styles)
        fake_logits, fake_pos = d(fake_images)
        real_logits, real_pos = d(real)
        adv = d_logistic_loss(real_logits, fake_logits)
        position = position_loss(real_pos, vpos) + position_loss(fake_pos, vpos)
        loss = adv + config.position_weight * position
        self.d_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.d_opt.step()
        self.losses.update(
            d=adv.item(),
            d_pos_real=position_loss(real_pos.detach(), vpos).item(),
            real_score=real_logits.detach().mean().item(),
            fake_score=fake_logits.detach().mean().item(),
        )
        if self.step % config.r1_interval == 0:
            real = real.detach().requires_grad_(True)
            real_logits, real_pos = d(real)
            penalty = r1_penalty(real_logits, real)
            # 0 * real_pos keeps every D parameter in the graph.
            loss = config.r1_gamma / 2 * penalty * config.r1_interval + 0 * real_pos.sum()
            self.d_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.d_opt.step()
            self.losses["r1"] = penalty.item()

    def g_step(self, top_px: torch.Tensor, vpos: torch.Tensor) -> None:
        config, g = self.config, self.generator
        g.requires_grad_(True)
        self.discriminator.requires_grad_(False)
        batch = self.fake(top_px, paired=True)
        z_s = g.structure(batch.inputs.local_latents, batch.inputs.coords, batch.z_global)
        images = g.texture(z_s, list(batch.styles.unbind(1)), batch.inputs.noises)
        logits, pos = self.discriminator(images)
        adv = g_nonsaturating_loss(logits)
        position = position_loss(pos, paired_labels(vpos))
        half = images.shape[0] // 2
        local = batch.inputs.local_latents
        diversity = diversity_loss(local[:half], local[half:], z_s[:half], z_s[half:])
        loss = adv + config.position_weight * position + config.diversity_weight * diversity
        self.g_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.g_opt.step()
        self.losses.update(g=adv.item(), g_pos=position.item(), div=diversity.item())
        if self.step % config.pl_interval == 0:
            self.path_length_step(top_px)

    def path_length_step(self, top_px: torch.Tensor) -> None:
        config, g = self.config, self.generator
        half = max(1, top_px.shape[0] // 2)
        batch = self.fake(top_px[:half], paired=False)
        styles = batch.styles.detach().requires_grad_(True)
        images = g(batch.inputs, batch.z_global, styles)
        penalty = self.path_length(images, styles)
        loss = config.pl_weight * config.pl_interval * penalty
        self.g_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.g_opt.step()
        self.losses.update(pl=penalty.item(), pl_mean=self.path_length.mean)

    @torch.no_grad()
    def update_ema(self) -> None:
        beta = 0.5 ** (self.config.batch / self.ema_half_life())
        for p_ema, p in zip(self.g_ema.parameters(), self.generator.parameters(), strict=True):
            p_ema.lerp_(p, 1.0 - beta)
        for b_ema, b in zip(self.g_ema.buffers(), self.generator.buffers(), strict=True):
            b_ema.copy_(b)

    def ema_half_life(self) -> float:
        half_life = self.config.ema_half_life_images
        if self.config.ema_rampup:
            images_seen = (self.step + 1) * self.config.batch
            half_life = min(half_life, max(self.config.batch, self.config.ema_rampup * images_seen))
        return half_life

    def train_step(self) -> None:
        real, top_px, vpos = self.real_batch()
        self.d_step(real, top_px, vpos)
        self.g_step(top_px, vpos)
        self.update_ema()
        self.step += 1
        bad = [name for name, value in self.losses.items() if not math.isfinite(value)]
        if bad:
            raise FloatingPointError(f"non-finite losses at step {self.step}: {bad}")

    # ---- samples ---------------------------------------------------------------------------------------------------
    def _fixed_sample_inputs(self) -> tuple[FakeBatch, int]:
        """8 fixed latents, each rendered as a tall window reaching from sky to ground (2x a training patch)."""
        rng = torch.Generator().manual_seed(12345)
        cells = 2 * self.config.patch_cells
        size = self.generator.geometry.texture_size(cells)
        top_px = torch.full((8,), -size / 2, dtype=torch.float64)
        return sample_fake_inputs(
            self.g_ema, top_px, cells, rng, self.device, mixing=0.0, paired=False, jitter=False
        ), size

    @torch.no_grad()
    def write_samples(self) -> Path:
        batch, _ = self.sample_inputs
        images = self.g_ema(batch.inputs, batch.z_global, self.g_ema.texture_styles(batch.z_global))
        path = self.out_dir / "samples" / f"{self.step:07d}.png"
        save_image_grid(images, path, columns=8)
        return path

    # ---- state -------------------------------------------------------------------------------------------------------
    def save_state(self) -> None:
        tensors: dict[str, torch.Tensor] = {}
        for prefix, module in (("G", self.generator), ("D", self.discriminator), ("G_ema", self.g_ema)):
            for name, tensor in module.state_dict().items():
                tensors[f"{prefix}/{name}"] = tensor
        optim_json = {}
        for prefix, optimizer in (("G_opt", self.g_opt), ("D_opt", self.d_opt)):
            state = optimizer.state_dict()
            for index, slots in state["state"].items():
                for key, value in slots.items():
                    tensors[f"{prefix}/{index}/{key}"] = torch.as_tensor(value)
            optim_json[prefix] = state["param_groups"]
        tensors["rng/train"] = self.rng.get_state()
        tensors["rng/global"] = torch.get_rng_state()
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        state_dir = self.out_dir / STATE_DIR
        write_atomic(state_dir / STATE_TENSORS, save_safetensors_bytes(tensors))
        meta = {
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "pl_mean": self.path_length.mean,
            "train_config": self.config.to_dict(),
            "optimizers": optim_json,
            "losses": self.losses,
        }
        write_atomic(state_dir / STATE_JSON, json.dumps(meta, indent=2, sort_keys=True).encode())
        save_generator(self.g_ema, self.out_dir / GENERATOR_FILE, self.generator_metadata())

    def load_state(self) -> bool:
        state_dir = self.out_dir / STATE_DIR
        if not (state_dir / STATE_JSON).is_file():
            return False
        meta = json.loads((state_dir / STATE_JSON).read_text())
        tensors = load_safetensors_file(str(state_dir / STATE_TENSORS))
        for prefix, module in (("G", self.generator), ("D", self.discriminator), ("G_ema", self.g_ema)):
            module.load_state_dict({k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + "/")})
        for prefix, optimizer in (("G_opt", self.g_opt), ("D_opt", self.d_opt)):
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in tensors.items():
                parts = key.split("/")
                if parts[0] == prefix:
                    state.setdefault(int(parts[1]), {})[parts[2]] = value
            optimizer.load_state_dict({"state": state, "param_groups": meta["optimizers"][prefix]})
        self.rng.set_state(tensors["rng/train"])
        torch.set_rng_state(tensors["rng/global"])
        self.step = int(meta["step"])
        self.elapsed_s = float(meta["elapsed_s"])
        self.path_length.mean = float(meta["pl_mean"])
        self.losses = dict(meta.get("losses", {}))
        return True

    def generator_metadata(self) -> dict[str, Any]:
        return {
            "trained_iterations": self.step,
            "trained_images": self.step * self.config.batch,
            "wall_time_s": round(self.elapsed_s, 1),
            "hardware": hardware_summary(self.device),
            "data": data_summary(self.data_dir, self.dataset.image_paths),
            "scene_height": self.config.scene_height,
            "patch_px": self.patch_size,
            "train_config": self.config.to_dict(),
            "init_seed": self.config.init_seed,
            "ema": True,
        }


def hardware_summary(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads (torch {torch.__version__}, CPU)"


def data_summary(data_dir: Path, image_paths: list[Path]) -> dict[str, Any]:
    summary: dict[str, Any] = {"images": len(image_paths), "files": [p.name for p in image_paths]}
    manifest = data_dir / "MANIFEST.json"
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text()).get("images", [])
            summary["licenses"] = sorted({e.get("license", "?") for e in entries})
            summary["sources"] = sorted({e.get("package", "?") for e in entries})
        except (ValueError, AttributeError):
            pass
    return summary


def save_image_grid(images: torch.Tensor, path: Path, columns: int = 8) -> None:
    images = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    batch, _, height, width = images.shape
    rows = math.ceil(batch / columns)
    canvas = np.full((rows * (height + 2), columns * (width + 2), 3), 255, dtype=np.uint8)
    for i in range(batch):
        r, c = divmod(i, columns)
        canvas[r * (height + 2) : r * (height + 2) + height, c * (width + 2) : c * (width + 2) + width] = (
            images[i].permute(1, 2, 0).numpy()
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)


# ---- driver ----------------------------------------------------------------------------------------------------------


class _StopFlag:
    def __init__(self) -> None:
        self.stop = False

    def __call__(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        self.stop = True


def train(config: TrainConfig, data_dir: Path | str, out_dir: Path | str, *, progress: bool = True) -> Trainer:
    """Train (or resume) until max_iterations / max_minutes / SIGTERM; state is saved periodically and at exit."""
    from tqdm import tqdm

    if config.threads:
        torch.set_num_threads(config.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(config, data_dir, out_dir)
    resumed = trainer.load_state()
    if resumed:
        print(f"resumed from {out_dir / STATE_DIR} at step {trainer.step}", flush=True)
    (out_dir / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))
    stop = _StopFlag()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    start = time.monotonic()
    base_elapsed = trainer.elapsed_s
    last_save = start
    bar = tqdm(
        total=config.max_iterations,
        initial=trainer.step,
        disable=not progress,
        unit="it",
        mininterval=5.0,
        smoothing=0.05,
    )
    try:
        while not stop.stop:
            if config.max_iterations is not None and trainer.step >= config.max_iterations:
                break
            if config.max_minutes is not None and time.monotonic() - start >= 60 * config.max_minutes:
                break
            trainer.train_step()
            trainer.elapsed_s = base_elapsed + time.monotonic() - start
            bar.update(1)
            if trainer.step % 10 == 0:
                bar.set_postfix({k: f"{v:.3g}" for k, v in trainer.losses.items() if k in _SHOWN}, refresh=False)
            if config.sample_every and trainer.step % config.sample_every == 0:
                trainer.write_samples()
            if time.monotonic() - last_save >= 60 * config.checkpoint_minutes:
                trainer.save_state()
                last_save = time.monotonic()
    finally:
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        trainer.elapsed_s = base_elapsed + time.monotonic() - start
        trainer.save_state()
        trainer.write_samples()
        print(f"saved step {trainer.step} to {out_dir} (pid {os.getpid()})", flush=True)
    return trainer


_SHOWN = ("d", "g", "r1", "pl", "div", "g_pos", "d_pos_real")

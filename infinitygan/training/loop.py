"""The training run: builds the models and data, runs the phases each iteration, writes samples and state.

Each iteration: a D step (logistic loss + L_ar on augmented real and fake), lazily an R1 step, a G step
(non-saturating loss + L_ar + L1 diversity on paired G_S outputs), lazily a path-length step, then the G EMA update.
Training randomness comes from one seeded torch.Generator (and the seeded global RNG for autograd-side noise); both
states are saved with the run, so a resumed run continues the same sequence.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from infinitygan.checkpoint import read_checkpoint_tensors, save_generator
from infinitygan.data import PatchDataset
from infinitygan.discriminator import Discriminator
from infinitygan.evaluate import SCALEINV_DOWNSAMPLE
from infinitygan.generator import build_generator
from infinitygan.losses import PathLengthRegularizer
from infinitygan.sampling import FakeBatch, sample_fake_inputs
from infinitygan.training import phases
from infinitygan.training.config import TrainConfig
from infinitygan.training.phases import Models, lazy_adam
from infinitygan.training.state import (
    RunState,
    is_resume_point,
    load_run_state,
    module_prefixes,
    read_resume_point,
    save_resume_point,
    save_run_state,
)

GENERATOR_FILE = "generator.safetensors"
BEST_FILE = "best.safetensors"
EVALS_FILE = "evals.jsonl"


def copy_matching(module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Copy every tensor whose name and shape match into module's state; returns (copied, total) counts of its state."""
    own = module.state_dict()
    matching = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(matching, strict=False)
    return len(matching), len(own)


def warm_start(generator: torch.nn.Module, checkpoint: Path) -> tuple[int, int]:
    """Copy every tensor of a generator checkpoint whose name and shape match into generator.

    Returns (copied, total) tensor counts of generator's state; a different preset copies what it shares (the
    mapping, G_S, and the stages both have), the rest keeps its fresh initialisation."""
    return copy_matching(generator, read_checkpoint_tensors(checkpoint))


class Trainer:
    def __init__(self, config: TrainConfig, data_dir: Path | str, out_dir: Path | str) -> None:
        self.config = config
        self.device = torch.device(config.device)
        self.out_dir = Path(out_dir)
        self.data_dir = Path(data_dir)
        generator = build_generator(config.generator_config(), init_seed=config.init_seed).train().to(self.device)
        self.patch_size = generator.geometry.texture_size(config.patch_cells)
        if self.patch_size < 8:
            raise ValueError(f"patch_cells={config.patch_cells} gives a {self.patch_size}px patch; use more cells")
        discriminator = self._discriminator(self.patch_size, config.init_seed + 1)
        scene_discriminator = scene_d_opt = None
        if config.scene_weight > 0:
            scene_discriminator = self._discriminator(config.scene_height // SCALEINV_DOWNSAMPLE, config.init_seed + 2)
            scene_d_opt = torch.optim.Adam(scene_discriminator.parameters(), lr=config.lr, betas=config.betas, eps=1e-8)
        self.models = Models(
            generator=generator,
            discriminator=discriminator,
            g_ema=copy.deepcopy(generator).eval().requires_grad_(False),
            g_opt=lazy_adam(generator.parameters(), config, config.pl_interval),
            d_opt=lazy_adam(discriminator.parameters(), config, config.r1_interval),
            path_length=PathLengthRegularizer(),
            scene_discriminator=scene_discriminator,
            scene_d_opt=scene_d_opt,
        )
        self.dataset = PatchDataset(
            self.data_dir,
            scene_height=config.scene_height,
            patch_size=self.patch_size,
            length=2**62,
            seed=config.data_seed,
            split="train",
        )
        # Whole-height squares for D_scene: "patches" as tall as the scene, at uniform columns, horizon on its row.
        self.scene_dataset = (
            PatchDataset(
                self.data_dir,
                scene_height=config.scene_height,
                patch_size=config.scene_height,
                length=2**62,
                seed=config.data_seed + 1,
                split="train",
            )
            if config.scene_weight > 0
            else None
        )
        self.rng = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        self.step = 0
        self.elapsed_s = 0.0
        self.losses: dict[str, float] = {}
        self.sample_inputs = self._fixed_sample_inputs()
        self._reals = None  # real patches for evaluate(), sampled on first use

    def _discriminator(self, image_size: int, init_seed: int) -> Discriminator:
        """A freshly initialised D of the recipe's widths and input for image_size px images."""
        torch.manual_seed(init_seed)
        config = self.config
        return Discriminator(
            image_size,
            base_width=config.d_base_width,
            max_width=config.d_max_width,
            wavelet_input=config.d_input == "wavelet",
        ).to(self.device)

    def warm_start(self, checkpoint: Path) -> tuple[int, int]:
        """Start G and its EMA from a generator checkpoint's matching tensors (see warm_start), or G, G_ema, D and
        D_scene (where both runs have one) from a resume point's (a new architecture or recipe continuing a run: e.g.
        noise_free_stages, scene_weight); the optimiser states and the iteration count start afresh. Returns
        (copied, total) tensor counts over the models started.
        Raises ResumeError for an unreadable resume point."""
        if not is_resume_point(checkpoint):
            counts = warm_start(self.models.generator, checkpoint)
            self.models.g_ema.load_state_dict(self.models.generator.state_dict())
            return counts
        tensors, _ = read_resume_point(checkpoint)
        copied = total = 0
        for prefix, module in module_prefixes(self.models):
            part = {name.removeprefix(f"{prefix}/"): t for name, t in tensors.items() if name.startswith(f"{prefix}/")}
            done, size = copy_matching(module, part)
            copied, total = copied + done, total + size
        return copied, total

    # ---- one iteration -------------------------------------------------------------------------------------------
    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        start = self.step * self.config.batch
        items = [self.dataset[start + i] for i in range(self.config.batch)]
        images = torch.stack([item["image"] for item in items]).to(self.device)
        top_px = torch.tensor([float(item["top_px"]) for item in items], dtype=torch.float64)
        vpos = torch.stack([item["vpos"] for item in items]).to(self.device)
        return images, top_px, vpos

    def real_scenes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(scene_batch whole-height squares (B, 3, H, H), their top rows relative to the horizon) for this step."""
        start = self.step // self.config.scene_interval * self.config.scene_batch
        items = [self.scene_dataset[start + i] for i in range(self.config.scene_batch)]
        images = torch.stack([item["image"] for item in items]).to(self.device)
        return images, torch.tensor([float(item["top_px"]) for item in items], dtype=torch.float64)

    def train_step(self) -> None:
        config, models, rng = self.config, self.models, self.rng
        real, top_px, vpos = self.real_batch()
        phases.set_lr(models, config, self.step)
        self.losses.update(phases.d_step(models, config, real, top_px, vpos, rng))
        if self.step % config.r1_interval == 0:
            self.losses.update(phases.r1_step(models, config, real, rng))
        self.losses.update(phases.g_step(models, config, top_px, vpos, rng))
        if self.step % config.pl_interval == 0:
            self.losses.update(phases.path_length_step(models, config, top_px, rng))
        if self.scene_dataset is not None and self.step % config.scene_interval == 0:
            scenes, scene_top_px = self.real_scenes()
            self.losses.update(phases.scene_d_step(models, config, scenes, scene_top_px, rng))
            self.losses.update(phases.scene_g_step(models, config, scene_top_px, rng))
        phases.update_ema(models, 0.5 ** (config.batch / self.ema_half_life()))
        self.step += 1
        bad = [name for name, value in self.losses.items() if not math.isfinite(value)]
        if bad:
            raise FloatingPointError(f"non-finite losses at step {self.step}: {bad}")

    def ema_half_life(self) -> float:
        half_life = self.config.ema_half_life_images
        if self.config.ema_rampup:
            images_seen = (self.step + 1) * self.config.batch
            half_life = min(half_life, max(self.config.batch, self.config.ema_rampup * images_seen))
        return half_life

    # ---- samples ---------------------------------------------------------------------------------------------------
    def _fixed_sample_inputs(self) -> tuple[FakeBatch, int]:
        """8 fixed latents, each rendered as a tall window reaching from sky to ground (2x a training patch)."""
        rng = torch.Generator().manual_seed(12345)
        cells = 2 * self.config.patch_cells
        size = self.models.g_ema.geometry.texture_size(cells)
        top_px = torch.full((8,), -size / 2, dtype=torch.float64)
        batch = sample_fake_inputs(
            self.models.g_ema, top_px, cells, rng, self.device, mixing=0.0, pairs=None, jitter=False
        )
        return batch, size

    @torch.no_grad()
    def write_samples(self) -> Path:
        batch, _ = self.sample_inputs
        g_ema = self.models.g_ema
        images = g_ema(batch.inputs, batch.z_global, g_ema.texture_styles(batch.z_global))
        path = self.out_dir / "samples" / f"{self.step:07d}.png"
        save_image_grid(images, path, columns=8)
        return path

    # ---- evaluation during training ------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, Any]:
        """SWD of G_ema against the training split (EvalOptions defaults, eval_patches patches); appended to
        evals.jsonl, and G_ema saved as best.safetensors when it is the lowest so far."""
        from infinitygan.evaluate import EvalOptions, RealSet, patch_swd

        if self._reals is None:
            options = EvalOptions(patches=self.config.eval_patches)
            self._reals = RealSet(self.data_dir, self.config.scene_height, options)
        swd, floor = patch_swd(self.models.g_ema, self._reals, self.config.patch_cells)
        previous = read_evals(self.out_dir)
        best = min([entry["swd"] for entry in previous], default=math.inf)
        record = {"step": self.step, "elapsed_s": round(self.elapsed_s, 1), "swd": round(swd, 3)}
        record.update(floor=round(floor, 3), best=swd < best)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with (self.out_dir / EVALS_FILE).open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if record["best"]:
            metadata = {**self.generator_metadata(), "swd": record["swd"], "swd_real_floor": record["floor"]}
            save_generator(self.models.g_ema, self.out_dir / BEST_FILE, metadata)
        return record

    # ---- state -------------------------------------------------------------------------------------------------------
    def run_state(self) -> RunState:
        return RunState(
            step=self.step,
            elapsed_s=self.elapsed_s,
            train_config=self.config.to_dict(),
            losses=self.losses,
            train_rng=self.rng.get_state(),
            global_rng=torch.get_rng_state(),
        )

    def save_state(self, resume_point: Path | None = None) -> None:
        """The run folder's state and EMA generator; and a compact resume point at resume_point when given."""
        save_run_state(self.out_dir, self.models, self.run_state())
        save_generator(self.models.g_ema, self.out_dir / GENERATOR_FILE, self.generator_metadata())
        if resume_point is not None:
            save_resume_point(resume_point, self.models, self.run_state())

    def load_state(self) -> bool:
        run = load_run_state(self.out_dir, self.models)
        if run is None:
            return False
        self.rng.set_state(run.train_rng)
        torch.set_rng_state(run.global_rng)
        self.step, self.elapsed_s, self.losses = run.step, run.elapsed_s, run.losses
        return True

    def generator_metadata(self) -> dict[str, Any]:
        return {
            "trained_iterations": self.step,
            "trained_images": self.step * self.config.batch,
            "wall_time_s": round(self.elapsed_s, 1),
            "hardware": hardware_summary(self.device),
            "data": data_summary(self.dataset),
            "scene_height": self.config.scene_height,
            "patch_px": self.patch_size,
            "train_config": self.config.to_dict(),
            "precision": self.config.resolved_precision(self.device.type),
            "init_seed": self.config.init_seed,
            "ema": True,
        }


def read_evals(run_dir: Path) -> list[dict[str, Any]]:
    """The run's evaluations so far (evals.jsonl), oldest first."""
    path = Path(run_dir) / EVALS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def data_summary(dataset: PatchDataset) -> dict[str, Any]:
    return {
        "images": len(dataset.image_paths),
        "files": [p.name for p in dataset.image_paths],
        "horizon_rows": dataset.horizon_rows,
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


def train(
    config: TrainConfig,
    data_dir: Path | str,
    out_dir: Path | str,
    *,
    progress: bool = True,
    resume_point: Path | None = None,
) -> Trainer:
    """Train (or resume) until max_iterations / max_minutes / SIGTERM; state is saved every checkpoint_minutes and at
    exit, and, when resume_point is given, a compact resume point is written there at the same times."""
    from tqdm import tqdm

    if config.threads:
        torch.set_num_threads(config.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(config, data_dir, out_dir)
    if trainer.load_state():
        print(f"resumed from {out_dir} at step {trainer.step}", flush=True)
    elif config.init_from:
        copied, total = trainer.warm_start(Path(config.init_from))
        print(f"warm start: {copied} of {total} tensors from {config.init_from}", flush=True)
    stop = _StopFlag()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    start = time.monotonic()
    base_elapsed = trainer.elapsed_s
    last_save = last_eval = start
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
            if config.eval_minutes and time.monotonic() - last_eval >= 60 * config.eval_minutes:
                record = trainer.evaluate()
                print(f"eval at step {record['step']}: SWD {record['swd']} (floor {record['floor']})", flush=True)
                last_eval = time.monotonic()
            if time.monotonic() - last_save >= 60 * config.checkpoint_minutes:
                trainer.save_state(resume_point)
                last_save = time.monotonic()
    finally:
        bar.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        trainer.elapsed_s = base_elapsed + time.monotonic() - start
        trainer.save_state(resume_point)
        trainer.write_samples()
        print(f"saved step {trainer.step} to {out_dir} (pid {os.getpid()})", flush=True)
    return trainer


_SHOWN = ("d", "g", "r1", "pl", "div", "g_pos", "d_pos_real", "r_t", "d_scene", "g_scene", "div_scene")

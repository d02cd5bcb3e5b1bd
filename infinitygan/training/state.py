"""Training state on disk, without pickle: tensors in safetensors, everything else in JSON.

Two forms:
- the run folder's state (``RUN/state/tensors.safetensors`` + ``state.json``), written atomically every few minutes;
  everything in full precision, so an interrupted run continues exactly;
- a **compact resume point**: one safetensors file (JSON in its header) that a fresh machine, or a GPU, continues
  from exactly. It leaves out what the next step overwrites anyway: with StyleGAN2's beta1 = 0, Adam's first moment
  is the last gradient, so exp_avg is restored as zeros (exact: 0 * old + 1 * grad). A "small" run's point is about
  18 MB. Loading one into a run folder (``seed_run_from``) makes an ordinary run state of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file as load_safetensors_file
from safetensors.torch import save as save_safetensors_bytes

from infinitygan.checkpoint import write_atomic
from infinitygan.training.phases import Models

STATE_DIR = "state"
STATE_TENSORS = "tensors.safetensors"
STATE_JSON = "state.json"
RESUME_FORMAT = "infinitygan.resume-point"
RESUME_FORMAT_VERSION = "1"


class ResumeError(Exception):
    """A run state or resume point is missing, corrupt, or does not fit the models being resumed."""


@dataclass
class RunState:
    """What besides the models a run needs to continue: counters, running means, RNG states and the last losses."""

    step: int
    elapsed_s: float
    train_config: dict[str, Any]
    losses: dict[str, float]
    train_rng: torch.Tensor  # torch.Generator state (uint8)
    global_rng: torch.Tensor  # torch.get_rng_state() (uint8)


def module_prefixes(models: Models) -> tuple[tuple[str, torch.nn.Module], ...]:
    """Each model of a run with the prefix its tensors carry in a resume point (D_scene only when the run has one)."""
    modules = (("G", models.generator), ("D", models.discriminator), ("G_ema", models.g_ema))
    scene = (("D_scene", models.scene_discriminator),) if models.scene_discriminator is not None else ()
    return modules + scene


def _optimizers(models: Models) -> tuple[tuple[str, torch.optim.Optimizer], ...]:
    scene = (("D_scene_opt", models.scene_d_opt),) if models.scene_d_opt is not None else ()
    return (("G_opt", models.g_opt), ("D_opt", models.d_opt)) + scene


def _first_moment_is_overwritten(optimizer: torch.optim.Optimizer) -> bool:
    """Adam with beta1 == 0 sets exp_avg to the new gradient at every step: its stored value never matters."""
    return all(group["betas"][0] == 0.0 for group in optimizer.param_groups)


def state_tensors(models: Models, run: RunState, *, compact: bool = False) -> dict[str, torch.Tensor]:
    """Every tensor of the state, named PREFIX/NAME; compact leaves out first moments that the next step overwrites."""
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in module_prefixes(models):
        for name, tensor in module.state_dict().items():
            tensors[f"{prefix}/{name}"] = tensor
    for prefix, optimizer in _optimizers(models):
        skip_first = compact and _first_moment_is_overwritten(optimizer)
        for index, slots in optimizer.state_dict()["state"].items():
            for key, value in slots.items():
                if not (skip_first and key == "exp_avg"):
                    tensors[f"{prefix}/{index}/{key}"] = torch.as_tensor(value)
    tensors["rng/train"] = run.train_rng
    tensors["rng/global"] = run.global_rng
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def state_meta(models: Models, run: RunState) -> dict[str, Any]:
    return {
        "step": run.step,
        "elapsed_s": run.elapsed_s,
        "pl_mean": models.path_length.mean,
        "train_config": run.train_config,
        "optimizers": {prefix: opt.state_dict()["param_groups"] for prefix, opt in _optimizers(models)},
        "losses": run.losses,
    }


def apply_state(models: Models, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> RunState:
    """Load tensors + meta into the models (any device: tensors move to each parameter's device); ResumeError when
    they do not fit."""
    try:
        for prefix, module in module_prefixes(models):
            module.load_state_dict({k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + "/")})
        for prefix, optimizer in _optimizers(models):
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in tensors.items():
                parts = key.split("/")
                if parts[0] == prefix:
                    state.setdefault(int(parts[1]), {})[parts[2]] = value
            for slots in state.values():
                if "exp_avg" not in slots:  # a compact point: beta1 == 0, the next step overwrites it
                    slots["exp_avg"] = torch.zeros_like(slots["exp_avg_sq"])
            optimizer.load_state_dict({"state": state, "param_groups": meta["optimizers"][prefix]})
    except (RuntimeError, KeyError, ValueError) as error:
        raise ResumeError(f"the stored state does not fit this run's models: {error}") from None
    models.path_length.mean = float(meta["pl_mean"])
    return RunState(
        step=int(meta["step"]),
        elapsed_s=float(meta["elapsed_s"]),
        train_config=dict(meta["train_config"]),
        losses=dict(meta.get("losses", {})),
        train_rng=tensors["rng/train"],
        global_rng=tensors["rng/global"],
    )


# ---- the run folder's state --------------------------------------------------------------------------------------


def save_run_state(run_dir: Path, models: Models, run: RunState) -> None:
    state_dir = Path(run_dir) / STATE_DIR
    write_atomic(state_dir / STATE_TENSORS, save_safetensors_bytes(state_tensors(models, run)))
    meta = json.dumps(state_meta(models, run), indent=2, sort_keys=True).encode()
    write_atomic(state_dir / STATE_JSON, meta)


def read_run_meta(run_dir: Path) -> dict[str, Any] | None:
    """The run folder's state.json, or None when the folder holds no run yet."""
    path = Path(run_dir) / STATE_DIR / STATE_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise ResumeError(f"{path} is unreadable: {error}") from None


def load_run_state(run_dir: Path, models: Models) -> RunState | None:
    meta = read_run_meta(run_dir)
    if meta is None:
        return None
    return apply_state(models, load_safetensors_file(str(Path(run_dir) / STATE_DIR / STATE_TENSORS)), meta)


# ---- compact resume points ---------------------------------------------------------------------------------------


def save_resume_point(path: Path, models: Models, run: RunState) -> Path:
    """One safetensors file: weights, Adam's second moments (and first, unless beta1 == 0), RNG states; the run's
    JSON state in its header. Written atomically."""
    header = {
        "format": RESUME_FORMAT,
        "format_version": RESUME_FORMAT_VERSION,
        "state": json.dumps(state_meta(models, run), sort_keys=True),
    }
    data = save_safetensors_bytes(state_tensors(models, run, compact=True), metadata=header)
    write_atomic(Path(path), data)
    return Path(path)


def is_resume_point(path: Path) -> bool:
    """Whether path is a safetensors file whose header names it a resume point (False for anything else)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("format") == RESUME_FORMAT
    except Exception:  # not a file, not safetensors: not a resume point
        return False


def read_resume_point(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, state meta) of a resume point; ResumeError with the reason when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ResumeError(f"resume point not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            if header.get("format") != RESUME_FORMAT:
                raise ResumeError(f"{path} is not a training resume point (format={header.get('format')!r})")
            if header.get("format_version") != RESUME_FORMAT_VERSION:
                raise ResumeError(f"{path} has resume-point version {header.get('format_version')!r}")
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safe_open API
        return tensors, json.loads(header["state"])
    except ResumeError:
        raise
    except Exception as error:  # safetensors raises its own error types for a corrupt file
        raise ResumeError(f"{path} is not a readable resume point: {error}") from None


def seed_run_from(path: Path, run_dir: Path) -> dict[str, Any]:
    """Make a resume point run_dir's state, so `train --out run_dir` continues it exactly.

    A run_dir that holds an older run (fewer steps: e.g. the CPU run a GPU session continued) takes the point's
    state; one at the same or a later step is refused, since that would throw training away. Returns the point's
    state meta."""
    run_dir = Path(run_dir)
    tensors, meta = read_resume_point(path)
    current = read_run_meta(run_dir)
    if current is not None and int(current["step"]) >= int(meta["step"]):
        raise ResumeError(
            f"{run_dir} already holds step {current['step']}, not older than {path} (step {meta['step']}): "
            "resume it as it is, or seed a new folder"
        )
    write_atomic(run_dir / STATE_DIR / STATE_TENSORS, save_safetensors_bytes(tensors))
    write_atomic(run_dir / STATE_DIR / STATE_JSON, json.dumps(meta, indent=2, sort_keys=True).encode())
    return meta

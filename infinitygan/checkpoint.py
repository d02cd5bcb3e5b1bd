"""Generator checkpoints: one safetensors file holding the weights, the JSON config that built them and metadata.

Never pickle: a checkpoint is data, loadable without the training code and safe to accept from anyone.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from infinitygan.config import GeneratorConfig
from infinitygan.generator import Generator

FORMAT = "infinitygan.generator"
FORMAT_VERSION = "1"
MODELS = Path(__file__).resolve().parent.parent / "models"
TEACHER_MODEL = MODELS / "landscapes-small.safetensors"  # the trained generator; training resumes and students learn it
SHIPPED_MODEL = MODELS / "students" / "landscapes-small-mobile.safetensors"  # the default: TEACHER_MODEL's student


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, or does not match the architecture it claims."""


@dataclass(frozen=True)
class LoadedGenerator:
    """A generator with what its checkpoint says about it.

    metadata: the checkpoint's metadata (training iterations, scene_height, train_config, ...; {} when unknown).
    model_hash: 16 hex digits; the sha256 of the checkpoint file, or of the config and weights for a generator built
    in memory (see in_memory). Tile caches and world ids are keyed by it.
    """

    generator: Generator
    metadata: dict[str, Any] = field(default_factory=dict)
    model_hash: str = ""

    @classmethod
    def in_memory(cls, generator: Generator, metadata: dict[str, Any] | None = None) -> LoadedGenerator:
        """Wrap a generator that was not loaded from a file, hashing its config and weights."""
        digest = hashlib.sha256(generator.config.to_json().encode())
        for name, tensor in sorted(generator.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return cls(generator, dict(metadata or {}), digest.hexdigest()[:16])

    @property
    def scene_height(self) -> int:
        """Rows of a training photo (the world's scene height); 256 when the checkpoint does not say."""
        return int(self.metadata.get("scene_height", 256))

    @property
    def patch_cells(self) -> int:
        """z_S cells per side of a training window; 9 when the checkpoint does not say."""
        return int(self.metadata.get("train_config", {}).get("patch_cells", 9))


def save_generator(generator: Generator, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Write atomically (temp file + rename), so a crash never leaves a half-written checkpoint behind."""
    path = Path(path)
    tensors = {name: t.detach().cpu().contiguous() for name, t in generator.state_dict().items()}
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": generator.config.to_json(),
        "metadata": json.dumps(metadata or {}, sort_keys=True),
    }
    write_atomic(path, save_safetensors_bytes(tensors, metadata=header))
    return path


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checkpoint_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The weights of a generator checkpoint without building its generator (for warm starts across presets)."""
    path = Path(path)
    try:
        data = path.read_bytes()
        if _read_metadata(data).get("format") != FORMAT:
            raise CheckpointError(f"{path} is not an InfinityGAN generator checkpoint")
        return load_safetensors_bytes(data)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    except (SafetensorError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors checkpoint: {exc}") from None


def load_generator(path: str | os.PathLike | None = None) -> LoadedGenerator:
    """Load a generator (eval mode) with its metadata and hash; `path=None` means the shipped default model (the
    MobileStyleGAN student of TEACHER_MODEL, which the service serves).

    Raises CheckpointError with a clear message for a missing, corrupt or mismatched file."""
    path = Path(path) if path is not None else SHIPPED_MODEL
    if not path.is_file():
        hint = " (no default model is shipped in this checkout; pass --checkpoint)" if path == SHIPPED_MODEL else ""
        raise CheckpointError(f"checkpoint not found: {path}{hint}")
    data = path.read_bytes()
    try:
        tensors = load_safetensors_bytes(data)
        header = _read_metadata(data)
    except (SafetensorError, ValueError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors checkpoint: {exc}") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an InfinityGAN generator checkpoint (format={header.get('format')!r})")
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {header.get('format_version')!r}; expected {FORMAT_VERSION}")
    try:
        config = GeneratorConfig.from_json(header["config"])
        metadata = json.loads(header.get("metadata", "{}"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has an unreadable config: {exc}") from None
    generator = Generator(config)
    _check_tensors(path, generator, tensors)
    generator.load_state_dict(tensors)
    return LoadedGenerator(generator.eval(), metadata, hashlib.sha256(data).hexdigest()[:16])


def _read_metadata(data: bytes) -> dict[str, str]:
    if len(data) < 8:
        raise ValueError("file too short")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > len(data) - 8:
        raise ValueError("header length exceeds the file")
    return json.loads(data[8 : 8 + header_len].decode("utf-8")).get("__metadata__", {})


def _check_tensors(path: Path, generator: Generator, tensors: dict[str, torch.Tensor]) -> None:
    expected = generator.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{path}: tensor {name} has shape {tuple(tensor.shape)}, config expects {tuple(expected[name].shape)}"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: tensor {name} contains NaN or infinity")

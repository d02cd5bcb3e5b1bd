"""Landscape images for training and evaluation: reading a folder of photos and sampling patches with their position.

- A data folder holds photos and, when ``infinitygan.recipe.fetch_recipe`` made it, a MANIFEST.json giving each photo's
  provenance, split and **horizon row** (fraction of the height from the top). A folder made by fetch_recipe has one
  sub-folder per split (``train/``, ``eval/``); ``split_dir`` picks one, so training never reads the evaluation split.
- ``load_scenes`` reads a folder and resizes every photo to exactly one scene tall, keeping where its horizon is.
- ``PatchDataset`` samples deterministic random square crops, each with its top row relative to the photo's horizon
  (world row 0 is the horizon) and the vertical-position label L_ar is trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
MANIFEST_JSON = "MANIFEST.json"
MANIFEST_MD = "MANIFEST.md"
MANIFEST_FORMAT = 2
SPLITS = ("train", "eval")
DEFAULT_HORIZON = 0.5  # photos without a manifest entry: horizon on the centre row


class DataError(Exception):
    """The image data cannot be used: missing folder, no readable image in it, or an unreadable manifest."""


class DataFetchError(DataError):
    """Assembling the landscape set from Debian packages failed; the message names the step and the cause."""


class UnreadableImageWarning(UserWarning):
    """An image file was skipped because it could not be decoded."""


@dataclass(frozen=True)
class ManifestEntry:
    """Provenance of one image in a fetched data folder (one element of MANIFEST.json's "images").

    horizon: row of the horizon as a fraction of the height from the top (negative: above the frame).
    """

    file: str
    package: str
    package_version: str
    path_in_package: str
    width: int
    height: int
    sha256: str
    author: str
    copyright: str
    license: str
    license_source: str
    notes: str = ""
    horizon: float = DEFAULT_HORIZON
    split: str = "train"


def read_manifest(data_dir: Path) -> list[ManifestEntry]:
    """The entries of data_dir/MANIFEST.json; DataError if it is missing or unreadable."""
    manifest_file = Path(data_dir) / MANIFEST_JSON
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        return [ManifestEntry(**entry) for entry in manifest["images"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"cannot read {manifest_file}: {error}") from error


def write_manifest(directory: Path, entries: list[ManifestEntry]) -> None:
    """Write directory/MANIFEST.json (format MANIFEST_FORMAT) listing entries."""
    manifest = {"format": MANIFEST_FORMAT, "images": [dataclasses.asdict(entry) for entry in entries]}
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (Path(directory) / MANIFEST_JSON).write_text(text, encoding="utf-8")


def split_dir(data_dir: Path | str, split: str = "train") -> Path:
    """The folder of one split: data_dir/split when fetch_recipe made data_dir, else data_dir itself.

    Raises DataError when data_dir is itself a split folder of another split (a training run pointed at eval/).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    data_dir = Path(data_dir)
    if (data_dir / split / MANIFEST_JSON).is_file():
        return data_dir / split
    if (data_dir / MANIFEST_JSON).is_file():
        other = {entry.split for entry in read_manifest(data_dir)} - {split}
        if other:
            raise DataError(f"{data_dir} holds the {'/'.join(sorted(other))} split, not {split!r}")
    return data_dir


# --------------------------------------------------------------------------------------------------------------------
# Loading any folder of images.
# --------------------------------------------------------------------------------------------------------------------


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def _holds_another_split(folder: Path, split: str) -> bool:
    if not (folder / MANIFEST_JSON).is_file():
        return False
    try:
        return any(entry.split != split for entry in read_manifest(folder))
    except DataError:
        return True  # an unreadable manifest: do not guess what the folder is


def list_images(data_dir: Path, split: str = "train") -> list[Path]:
    """Image files (png/jpg/jpeg/webp, any case) of data_dir, sorted by relative path.

    With a MANIFEST.json: exactly the files it lists (DataError when one is missing). Without: every image under
    data_dir, recursively, skipping hidden files and folders (editor copies, fetch_recipe's staging folders) and any
    sub-folder whose manifest says it holds another split, so evaluation photos never reach a training set.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"image folder {data_dir} does not exist or is not a directory")
    if (data_dir / MANIFEST_JSON).is_file():
        paths = [data_dir / entry.file for entry in read_manifest(data_dir)]
        missing = [path.name for path in paths if not path.is_file()]
        if missing:
            raise DataError(f"{data_dir / MANIFEST_JSON} lists files that are not there: {missing}")
        return sorted(paths, key=lambda path: path.relative_to(data_dir).as_posix())
    excluded = [folder for folder in data_dir.rglob("*") if folder.is_dir() and _holds_another_split(folder, split)]
    found = []
    for path in data_dir.rglob("*"):
        relative = path.relative_to(data_dir)
        visible = not any(part.startswith(".") for part in relative.parts)
        inside_excluded = any(path.is_relative_to(folder) for folder in excluded)
        if visible and not inside_excluded and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found, key=lambda path: path.relative_to(data_dir).as_posix())


def horizons_of(data_dir: Path, paths: list[Path]) -> list[float]:
    """Each image's horizon (fraction of its height from the top): from the manifest, else DEFAULT_HORIZON."""
    data_dir = Path(data_dir)
    recorded: dict[str, float] = {}
    if (data_dir / MANIFEST_JSON).is_file():
        recorded = {entry.file: float(entry.horizon) for entry in read_manifest(data_dir)}
    return [recorded.get(path.relative_to(data_dir).as_posix(), DEFAULT_HORIZON) for path in paths]


def _open_rgb(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as opened:
            opened.load()  # decode now: a truncated file only fails here, not at open()
            # Camera photos are often stored sideways with an EXIF note saying how to turn them.
            return ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        warnings.warn(f"skipping unreadable image {path}: {error}", UnreadableImageWarning, stacklevel=4)
        return None


def fit_to_scene_height(image: Image.Image, scene_height: int, horizon: float = DEFAULT_HORIZON):
    """(image, horizon_row): resized (LANCZOS) to exactly scene_height rows keeping the aspect ratio, and the horizon's
    row in it (float, may lie outside [0, scene_height)). Portrait images are first centre-cropped to a square so that
    every image is at least one scene wide. May return the input image when it already fits."""
    width, height = image.size
    horizon_px = horizon * height
    if width < height:
        top = (height - width) // 2
        image = image.crop((0, top, width, top + width))
        horizon_px -= top
        height = width
    target = (max(scene_height, round(width * scene_height / height)), scene_height)
    resized = image if image.size == target else image.resize(target, Image.Resampling.LANCZOS)
    return resized, horizon_px * scene_height / height


@dataclass(frozen=True)
class Scene:
    """One photo, scene_height rows tall: uint8 (3, H, W) pixels and the horizon row (float, rows from the top)."""

    path: Path
    pixels: torch.Tensor
    horizon_row: float


def load_scenes(data_dir: Path, scene_height: int, split: str = "train") -> list[Scene]:
    """Every readable image of data_dir's split (see split_dir, list_images), resized to scene_height rows.

    Unreadable files are skipped with an UnreadableImageWarning naming them; DataError if none is usable.
    """
    _check_positive("scene_height", scene_height)
    folder = split_dir(data_dir, split)
    paths = list_images(folder, split)
    scenes = []
    for path, horizon in zip(paths, horizons_of(folder, paths), strict=True):
        image = _open_rgb(path)
        if image is not None:
            resized, horizon_row = fit_to_scene_height(image, scene_height, horizon)
            pixels = torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).contiguous()
            scenes.append(Scene(path, pixels, horizon_row))
    if not scenes:
        reason = (
            f"all {len(paths)} image files are unreadable"
            if paths
            else f"it holds no {'/'.join(sorted(suffix[1:] for suffix in IMAGE_SUFFIXES))} file"
        )
        raise DataError(f"no usable image in {folder}: {reason}")
    return scenes


def prepare_split(
    data_dir: Path, out_dir: Path, scene_height: int, split: str = "train", photos: Sequence[str] | None = None
) -> list[ManifestEntry]:
    """Write one split of data_dir, resized to scene_height rows, as lossless PNGs plus a MANIFEST.json that keeps
    each photo's provenance and horizon (as a fraction of the new height): a small, self-contained data folder to
    carry to a machine that cannot download (a lent GPU). Training on it samples the same pixels as on data_dir.

    photos: only these files of the split (paths relative to it, e.g. "Dune.jpg"), for a domain fine-tune on a
    subset; DataError names any that the split lacks."""
    folder = split_dir(data_dir, split)
    recorded = {entry.file: entry for entry in read_manifest(folder)} if (folder / MANIFEST_JSON).is_file() else {}
    scenes = load_scenes(data_dir, scene_height, split)
    if photos is not None:
        available = {scene.path.relative_to(folder).as_posix() for scene in scenes}
        missing = sorted(set(photos) - available)
        if missing or not photos:
            raise DataError(f"the {split} split has no {missing or 'photos given'}; it has {sorted(available)}")
        scenes = [scene for scene in scenes if scene.path.relative_to(folder).as_posix() in set(photos)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for scene in scenes:
        name = scene.path.relative_to(folder).with_suffix(".png").as_posix().replace("/", "_")
        pixels = scene.pixels.permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(out_dir / name, optimize=True)
        source = recorded.get(scene.path.relative_to(folder).as_posix())
        entry = ManifestEntry(
            file=name,
            package=source.package if source else "",
            package_version=source.package_version if source else "",
            path_in_package=source.path_in_package if source else scene.path.name,
            width=pixels.shape[1],
            height=pixels.shape[0],
            sha256=hashlib.sha256((out_dir / name).read_bytes()).hexdigest(),
            author=source.author if source else "",
            copyright=source.copyright if source else "",
            license=source.license if source else "",
            license_source=source.license_source if source else "",
            notes=f"resized to {scene_height} rows from {scene.path.name}" + (f"; {source.notes}" if source else ""),
            horizon=scene.horizon_row / scene_height,
            split=split,
        )
        entries.append(entry)
    write_manifest(out_dir, entries)
    return entries


# --------------------------------------------------------------------------------------------------------------------
# Patch sampling.
# --------------------------------------------------------------------------------------------------------------------


class PatchSample(TypedDict):
    image: torch.Tensor  # float32 (3, P, P) in [-1, 1]
    top_px: int  # patch top row relative to the photo's horizon (world row); y grows downward
    vpos: torch.Tensor  # float32 scalar in [-1, 1], a function of top_px alone (see patch_vpos)
    left_px: int  # patch left column in the (possibly flipped) image
    image_index: int  # into PatchDataset.image_paths
    flipped: bool


def patch_vpos(top_px: float, patch_size: int, scene_height: int) -> float:
    """L_ar's label for a patch whose top row is top_px rows below the horizon: (top_px + P/2) / (H/2 - P/2), clamped
    to [-1, 1]. 0 = centred on the horizon; -1 / +1 = a patch as far above / below it as a photo whose horizon is on
    its centre row allows. A function of the world row alone, so generated windows at the same rows share it."""
    reach = scene_height / 2 - patch_size / 2
    if reach <= 0:
        return 0.0
    return min(1.0, max(-1.0, (top_px + patch_size / 2) / reach))


def _item_seed(seed: int, index: int) -> int:
    # Hashing rather than e.g. seed * K + index keeps (seed, index) pairs from colliding across seeds.
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class PatchDataset(Dataset[PatchSample]):
    """Random patch_size x patch_size crops of one split of data_dir, each photo resized to scene_height rows.

    Item i is a pure function of (seed, i): it draws from its own torch.Generator, never from global RNG, so
    results do not depend on DataLoader workers or on other code seeding torch. Each item picks an image uniformly,
    flips it horizontally with probability 1/2, then crops at a uniform column and a uniform row of the rows that
    exist. top_px puts world row 0 on the photo's horizon (rounded to a whole row).
    """

    def __init__(
        self,
        data_dir: Path | str,
        scene_height: int = 256,
        patch_size: int = 69,
        length: int = 10_000,
        seed: int = 0,
        split: str = "train",
    ) -> None:
        _check_positive("scene_height", scene_height)
        _check_positive("patch_size", patch_size)
        _check_positive("length", length)
        if patch_size > scene_height:
            raise ValueError(f"patch_size ({patch_size}) must not exceed scene_height ({scene_height})")
        scenes = load_scenes(Path(data_dir), scene_height, split)
        self.scene_height = scene_height
        self.patch_size = patch_size
        self.length = length
        self.seed = seed
        self.image_paths: list[Path] = [scene.path for scene in scenes]
        self.images: list[torch.Tensor] = [scene.pixels for scene in scenes]  # uint8 (3, H, W)
        self.horizon_rows: list[int] = [math.floor(scene.horizon_row + 0.5) for scene in scenes]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> PatchSample:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a PatchDataset of length {self.length}")
        generator = torch.Generator().manual_seed(_item_seed(self.seed, index))
        image_index = int(torch.randint(len(self.images), (), generator=generator))
        image = self.images[image_index]
        height, width = image.shape[1:]
        size = self.patch_size
        flipped = bool(torch.rand((), generator=generator) < 0.5)
        left = int(torch.randint(width - size + 1, (), generator=generator))
        top = int(torch.randint(height - size + 1, (), generator=generator))
        # Flipping only the patch is cheaper than flipping the image; left is in the flipped image's frame.
        source_left = width - size - left if flipped else left
        patch = image[:, top : top + size, source_left : source_left + size]
        if flipped:
            patch = patch.flip(-1)
        top_px = top - self.horizon_rows[image_index]
        return PatchSample(
            image=patch.float().div_(127.5).sub_(1.0),
            top_px=top_px,
            vpos=torch.tensor(patch_vpos(top_px, size, height), dtype=torch.float32),
            left_px=left,
            image_index=image_index,
            flipped=flipped,
        )

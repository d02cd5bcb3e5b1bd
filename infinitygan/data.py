"""Landscape training data.

Three layers, each usable on its own:

- ``fetch_recipe`` assembles a small, redistributable set of landscape photographs from Debian wallpaper packages and
  records each image's provenance (package, version, author, licence) in ``MANIFEST.json``.
- ``list_images`` / ``load_images`` read any folder of photos and resize them so every image is exactly one scene tall.
- ``PatchDataset`` samples deterministic random square crops together with their vertical position relative to the
  horizon, which this project places at each image's vertical centre.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path, PurePosixPath
from typing import TypedDict

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
MANIFEST_JSON = "MANIFEST.json"
MANIFEST_MD = "MANIFEST.md"
MANIFEST_FORMAT = 1


class DataError(Exception):
    """The image data cannot be used: missing folder, or no readable image in it."""


class DataFetchError(DataError):
    """Assembling the landscape set from Debian packages failed; the message names the step and the cause."""


class UnreadableImageWarning(UserWarning):
    """An image file was skipped because it could not be decoded."""


# --------------------------------------------------------------------------------------------------------------------
# The recipe: which photographs to take from which Debian package.
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecipeImage:
    """One photograph of the recipe.

    candidates are globs relative to the extracted package root; every file they match is a rendition of the same
    photograph and the one with the most pixels wins (file names are not trusted: several are symlinks to one file).
    The copy is named output_stem plus the chosen file's suffix.
    """

    package: str
    output_stem: str
    candidates: tuple[str, ...]


def _plasma_wallpaper(name: str) -> RecipeImage:
    return RecipeImage("plasma-workspace-wallpapers", name, (f"usr/share/wallpapers/{name}/contents/images/*",))


def _packaged_file(package: str, path: str) -> RecipeImage:
    # Some packages ship larger renditions beside the default file as NAME_WxH.ext (mate-backgrounds does for one
    # wallpaper), so those count as candidates too.
    file = PurePosixPath(path)
    larger_renditions = str(file.with_name(f"{file.stem}_*x*{file.suffix}"))
    return RecipeImage(package, file.stem, (path, larger_renditions))


LANDSCAPE_RECIPE: tuple[RecipeImage, ...] = (
    _plasma_wallpaper("EveningGlow"),
    _plasma_wallpaper("DarkestHour"),
    _plasma_wallpaper("ColdRipple"),
    _plasma_wallpaper("Path"),
    _packaged_file("mate-backgrounds", "usr/share/backgrounds/mate/nature/Dune.jpg"),
    _packaged_file("mate-backgrounds", "usr/share/backgrounds/mate/nature/Storm.jpg"),
    _packaged_file("lomiri-wallpapers-16.04", "usr/share/backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg"),
    _packaged_file("lomiri-wallpapers-16.04", "usr/share/backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg"),
    _packaged_file("lomiri-wallpapers-16.04", "usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg"),
)


@dataclass(frozen=True)
class ManifestEntry:
    """Provenance of one image in a fetched data folder (one element of MANIFEST.json's "images")."""

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


# --------------------------------------------------------------------------------------------------------------------
# debian/copyright parsing (DEP-5 machine-readable format, with a package-level fallback).
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CopyrightStanza:
    """One "Files:" paragraph of a DEP-5 copyright file."""

    patterns: tuple[str, ...]
    copyright: str
    license: str


@dataclass(frozen=True)
class Licensing:
    """What a copyright file says about one file, and how that was decided."""

    copyright: str
    license: str
    license_source: str


class _MatchKind(IntEnum):
    CATCH_ALL = 1  # "Files: *": says nothing about this file in particular
    SAME_NAME = 2  # the pattern's file name matches but its source-tree directory is not in the installed path
    SAME_PATH = 3  # the pattern matches a trailing part of the installed path


def _deb822_paragraphs(text: str) -> list[dict[str, str]]:
    """Split deb822 text into paragraphs of {lower-cased field name: value}; continuation lines join with newlines."""
    paragraphs: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                paragraphs.append(fields)
            fields, current = {}, None
        elif line[0] in " \t":
            if current is not None:
                fields[current] = f"{fields[current]}\n{line.strip()}"
        elif not line.startswith("#"):
            name, separator, value = line.partition(":")
            # Tolerate stray lines rather than reject a whole file over one typo.
            if separator:
                current = name.strip().lower()
                fields[current] = value.strip()
    if fields:
        paragraphs.append(fields)
    return paragraphs


def parse_dep5(text: str) -> list[CopyrightStanza] | None:
    """The "Files:" stanzas of a DEP-5 copyright file, or None when the text is not machine-readable."""
    paragraphs = _deb822_paragraphs(text)
    if not paragraphs or "format" not in paragraphs[0]:
        return None
    return [
        CopyrightStanza(
            patterns=tuple(paragraph["files"].split()),
            copyright=paragraph.get("copyright", "").strip(),
            # The first line of License is the short name; the rest, if any, is the licence text.
            license=paragraph.get("license", "").strip().split("\n", 1)[0].strip(),
        )
        for paragraph in paragraphs
        if "files" in paragraph
    ]


def _dep5_pattern_regex(pattern: str) -> re.Pattern[str]:
    # DEP-5 globs: "*" matches anything including "/", "?" one character, backslash escapes; nothing else is special.
    parts: list[str] = []
    characters = iter(pattern)
    for character in characters:
        if character == "\\":
            parts.append(re.escape(next(characters, "\\")))
        elif character == "*":
            parts.append(".*")
        elif character == "?":
            parts.append(".")
        else:
            parts.append(re.escape(character))
    return re.compile("".join(parts), re.DOTALL)


def _match_kind(pattern: str, installed_path: str) -> _MatchKind | None:
    if set(pattern) <= {"*"}:
        return _MatchKind.CATCH_ALL
    # Patterns name paths in the upstream source tree while we hold installed paths (mate's nature/Dune.jpg is
    # installed as usr/share/backgrounds/mate/nature/Dune.jpg), so compare against every trailing part of the path.
    parts = installed_path.split("/")
    regex = _dep5_pattern_regex(pattern)
    if any(regex.fullmatch("/".join(parts[start:])) for start in range(len(parts))):
        return _MatchKind.SAME_PATH
    # Some packages also flatten directories on install (lomiri's 16.04/x.jpg becomes usr/share/backgrounds/x.jpg).
    pattern_dir, _, pattern_name = pattern.rpartition("/")
    if pattern_dir and set(pattern_name) - {"*", "?"} and _dep5_pattern_regex(pattern_name).fullmatch(parts[-1]):
        return _MatchKind.SAME_NAME
    return None


def _best_stanza(
    stanzas: Sequence[CopyrightStanza], installed_path: str
) -> tuple[CopyrightStanza, str, _MatchKind] | None:
    best: tuple[_MatchKind, int, CopyrightStanza, str] | None = None
    for index, stanza in enumerate(stanzas):
        for pattern in stanza.patterns:
            kind = _match_kind(pattern, installed_path)
            # DEP-5 says the last matching stanza wins; a closer kind of match wins before that.
            if kind is not None and (best is None or (kind, index) >= best[:2]):
                best = (kind, index, stanza, pattern)
    return None if best is None else (best[2], best[3], best[0])


def _package_level_license(text: str) -> str:
    field = re.search(r"^License:[ \t]*(\S.*)$", text, re.MULTILINE | re.IGNORECASE)
    if field:
        return field.group(1).strip()
    gpl = re.search(r"GNU (Lesser |Library )?General Public License", text)
    # The version is stated in the sentence that names the licence, e.g. "... as published by the FSF; either
    # version 2 of the License, or (at your option) any later version".
    gpl_version = gpl and re.search(r"version (\d)", text[gpl.end() : gpl.end() + 300])
    if gpl and gpl_version:
        later = "+" if "any later version" in text[gpl.end() : gpl.end() + 400] else ""
        return f"{'LGPL' if gpl.group(1) else 'GPL'}-{gpl_version.group(1)}{later}"
    creative_commons = re.search(r"\bCC[- ]BY(?:[- ](?:SA|NC|ND))*[- ]\d\.\d", text)
    if creative_commons:
        return re.sub(r"\s", "-", creative_commons.group(0))
    return "unknown (read the copyright file)"


def licensing_for(copyright_text: str, installed_path: str) -> Licensing:
    """Licence and copyright of one installed file, from its package's copyright file."""
    stanzas = parse_dep5(copyright_text)
    if stanzas is None:
        return Licensing(
            copyright="see the package's copyright file",
            license=_package_level_license(copyright_text),
            license_source="copyright file is not machine-readable (DEP-5): package-level licence",
        )
    found = _best_stanza(stanzas, installed_path)
    if found is None:
        return Licensing(
            copyright="see the package's copyright file",
            license=_package_level_license(copyright_text),
            license_source="DEP-5 copyright file has no stanza for this file and no 'Files: *': package-level guess",
        )
    stanza, pattern, kind = found
    source = {
        _MatchKind.SAME_PATH: f"DEP-5 stanza 'Files: {pattern}'",
        _MatchKind.SAME_NAME: f"DEP-5 stanza 'Files: {pattern}' (matched by file name; installed in another directory)",
        _MatchKind.CATCH_ALL: f"DEP-5 catch-all stanza 'Files: {pattern}': package-level licence, no stanza names it",
    }[kind]
    return Licensing(copyright=stanza.copyright, license=stanza.license, license_source=source)


_EMAIL_OR_URL = re.compile(r"<[^>]*>|\bhttps?://\S+")
_YEARS = re.compile(r"\b\d{4}(?:\s*[-–]\s*\d{4})?\b")
_COPYRIGHT_WORDS = re.compile(r"\(c\)|©|^\s*copyright\b", re.IGNORECASE)


def copyright_holders(copyright_field: str) -> str:
    """Holder names from a Copyright field ("2007, Jo Doe <jo@x.org>" -> "Jo Doe"), joined with "; "."""
    names: list[str] = []
    for line in copyright_field.splitlines():
        name = _COPYRIGHT_WORDS.sub("", _YEARS.sub("", _EMAIL_OR_URL.sub("", line))).strip(" \t,.;:´`'")
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1]
        if name and name not in names:
            names.append(name)
    return "; ".join(names) or copyright_field.strip()


def _kde_wallpaper_metadata(package_root: Path, path_in_package: str) -> tuple[list[str], str] | None:
    """(authors, declared licence) from a KDE wallpaper's metadata.json, which names the photographer."""
    parts = PurePosixPath(path_in_package).parts
    if len(parts) < 5 or parts[:3] != ("usr", "share", "wallpapers"):
        return None
    metadata_file = package_root.joinpath(*parts[:4], "metadata.json")
    try:
        plugin = json.loads(metadata_file.read_text(encoding="utf-8")).get("KPlugin", {})
    except (OSError, ValueError, AttributeError):
        return None
    authors = [entry["Name"] for entry in plugin.get("Authors", []) if isinstance(entry, dict) and entry.get("Name")]
    return authors, str(plugin.get("License", ""))


# --------------------------------------------------------------------------------------------------------------------
# Fetching: apt-get download, dpkg-deb -x, pick renditions, write the manifest, swap the folder in.
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Package:
    name: str
    version: str
    root: Path  # the extracted file tree


def _require_tools() -> None:
    missing = [tool for tool in ("apt-get", "dpkg-deb") if shutil.which(tool) is None]
    if missing:
        raise DataFetchError(
            f"{' and '.join(missing)} not found on PATH: fetch_recipe downloads Debian packages, so it needs a "
            "Debian-based system with apt and dpkg (or copy a data folder made elsewhere)"
        )


def _run(command: list[str], *, cwd: Path, step: str) -> str:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as error:
        raise DataFetchError(f"{step}: could not run {command[0]}: {error}") from error
    if result.returncode != 0:
        detail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise DataFetchError(f"{step} failed (exit status {result.returncode}): {detail or 'no output'}")
    return result.stdout


def _apt_download_command(package: str) -> list[str]:
    command = ["apt-get", "download"]
    if os.geteuid() == 0:
        # As root, apt hands downloads to the unprivileged _apt user, who cannot write into our private temp folder;
        # apt then falls back to root with a warning anyway, so ask for that directly.
        command += ["-o", "APT::Sandbox::User=root"]
    return [*command, package]


def _download_and_extract(package: str, scratch: Path) -> _Package:
    download_dir = scratch / "debs" / package
    download_dir.mkdir(parents=True)
    logger.info("downloading %s", package)
    try:
        _run(_apt_download_command(package), cwd=download_dir, step=f"apt-get download {package}")
    except DataFetchError as error:
        raise DataFetchError(f"{error}. Is {package} in the configured apt sources (try `apt-get update`)?") from None
    debs = sorted(download_dir.glob("*.deb"))
    if len(debs) != 1:
        raise DataFetchError(f"apt-get download {package} produced {len(debs)} .deb files, expected exactly one")
    deb = debs[0]
    version = _run(["dpkg-deb", "--field", str(deb), "Version"], cwd=download_dir, step=f"reading {deb.name}").strip()
    root = scratch / "extracted" / package
    root.mkdir(parents=True)
    _run(["dpkg-deb", "-x", str(deb), str(root)], cwd=download_dir, step=f"extracting {deb.name}")
    return _Package(name=package, version=version, root=root)


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError) as error:
        raise DataFetchError(f"cannot read image {path}: {error}") from error


def _largest_rendition(package: _Package, item: RecipeImage) -> tuple[Path, tuple[int, int]]:
    root = package.root.resolve()
    sizes: dict[Path, tuple[int, int]] = {}
    for pattern in item.candidates:
        for candidate in root.glob(pattern):
            real = candidate.resolve()
            # Symlinks may alias one file under many names, or point outside the package (then it is not ours).
            if real.is_file() and real.is_relative_to(root) and real.suffix.lower() in IMAGE_SUFFIXES:
                sizes.setdefault(real, _image_size(real))
    if not sizes:
        raise DataFetchError(
            f"{package.name} {package.version} has no file matching {' or '.join(item.candidates)}: "
            "the package layout may have changed; update LANDSCAPE_RECIPE"
        )
    # Sorting first makes ties resolve the same way on every run.
    return max(sorted(sizes.items()), key=lambda path_and_size: path_and_size[1][0] * path_and_size[1][1])


def _read_copyright_file(package: _Package) -> str:
    copyright_file = package.root / "usr" / "share" / "doc" / package.name / "copyright"
    try:
        return copyright_file.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise DataFetchError(
            f"{package.name} {package.version} ships no readable usr/share/doc/{package.name}/copyright, "
            f"so the images' licence cannot be recorded: {error}"
        ) from error


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_recipe_image(item: RecipeImage, package: _Package, destination_dir: Path) -> ManifestEntry:
    source, (width, height) = _largest_rendition(package, item)
    path_in_package = source.relative_to(package.root.resolve()).as_posix()
    destination = destination_dir / f"{item.output_stem}{source.suffix.lower()}"
    shutil.copyfile(source, destination)

    licensing = licensing_for(_read_copyright_file(package), path_in_package)
    author = copyright_holders(licensing.copyright)
    notes: list[str] = []
    kde_metadata = _kde_wallpaper_metadata(package.root, path_in_package)
    if kde_metadata is not None:
        kde_authors, kde_license = kde_metadata
        if kde_authors:
            # debian/copyright credits the KDE design group as a whole; metadata.json names the photographer.
            author = "; ".join(kde_authors)
            notes.append("author from the wallpaper's metadata.json")
        if kde_license and kde_license != licensing.license:
            notes.append(f"metadata.json declares License: {kde_license}, debian/copyright says {licensing.license}")
    return ManifestEntry(
        file=destination.name,
        package=package.name,
        package_version=package.version,
        path_in_package=path_in_package,
        width=width,
        height=height,
        sha256=_sha256(destination),
        author=author,
        copyright=licensing.copyright.replace("\n", "; "),
        license=licensing.license,
        license_source=licensing.license_source,
        notes="; ".join(notes),
    )


def _manifest_markdown(entries: Sequence[ManifestEntry]) -> str:
    lines = [
        "# Landscape photographs",
        "",
        "Copied unmodified from Debian packages by `infinitygan.data.fetch_recipe`; licences from each package's",
        "`usr/share/doc/PACKAGE/copyright`. MANIFEST.json holds the same facts plus checksums.",
        "",
        "| file | size | author | licence | package | path in package |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {e.file} | {e.width}x{e.height} | {e.author} | {e.license} | {e.package} {e.package_version} "
        f"| {e.path_in_package} |"
        for e in entries
    ]
    lines += ["", "## How each licence was determined", ""]
    lines += [f"- {e.file}: {e.license_source}" + (f" ({e.notes})" if e.notes else "") for e in entries]
    return "\n".join(lines) + "\n"


def _write_manifest(directory: Path, entries: Sequence[ManifestEntry]) -> None:
    manifest = {"format": MANIFEST_FORMAT, "images": [dataclasses.asdict(entry) for entry in entries]}
    (directory / MANIFEST_JSON).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (directory / MANIFEST_MD).write_text(_manifest_markdown(entries), encoding="utf-8")


def read_manifest(data_dir: Path) -> list[ManifestEntry]:
    """The entries of a MANIFEST.json written by fetch_recipe."""
    manifest_file = Path(data_dir) / MANIFEST_JSON
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        return [ManifestEntry(**entry) for entry in manifest["images"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"cannot read {manifest_file}: {error}") from error


def _check_replaceable(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DataFetchError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_JSON).is_file():
        raise DataFetchError(
            f"refusing to replace {out_dir}: it is not empty and has no {MANIFEST_JSON} (fetch_recipe did not make it)"
        )


def _replace_directory(new_dir: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        new_dir.rename(out_dir)
        return
    # Two renames on one filesystem: the old folder stays intact until the new one is complete.
    retired = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
    out_dir.rename(retired)
    try:
        new_dir.rename(out_dir)
    except OSError:
        retired.rename(out_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def fetch_recipe(
    out_dir: Path, *, workdir: Path | None = None, recipe: Sequence[RecipeImage] = LANDSCAPE_RECIPE
) -> list[ManifestEntry]:
    """Download the recipe's Debian packages and copy its photographs, largest rendition each, into out_dir.

    Packages are fetched with ``apt-get download`` (nothing is installed) and unpacked with ``dpkg-deb -x`` inside a
    temporary folder under workdir (default: the system temp folder), which is removed afterwards. out_dir receives
    the images plus MANIFEST.json and MANIFEST.md; it is assembled beside out_dir and swapped in only when complete,
    so re-running replaces a previous result cleanly. Raises DataFetchError naming the failed step.
    """
    out_dir = Path(out_dir).absolute()
    output_names = [item.output_stem for item in recipe]
    if len(set(output_names)) != len(output_names):
        raise ValueError(f"recipe output names must be unique, got {output_names}")
    _check_replaceable(out_dir)
    _require_tools()
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="infinitygan-fetch-", dir=workdir) as scratch_name:
        scratch = Path(scratch_name)
        package_names = dict.fromkeys(item.package for item in recipe)
        packages = {name: _download_and_extract(name, scratch) for name in package_names}
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
        try:
            staging.chmod(0o755)  # mkdtemp makes it private; the data folder should be as readable as any other
            entries = [_copy_recipe_image(item, packages[item.package], staging) for item in recipe]
            _write_manifest(staging, entries)
            _replace_directory(staging, out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    logger.info("wrote %d images to %s", len(entries), out_dir)
    return entries


# --------------------------------------------------------------------------------------------------------------------
# Loading any folder of images.
# --------------------------------------------------------------------------------------------------------------------


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def list_images(data_dir: Path) -> list[Path]:
    """Image files (png/jpg/jpeg/webp, any case) under data_dir, recursively, sorted by relative path.

    Hidden files and folders are skipped: they hold editor/checkpoint copies or fetch_recipe's staging folders,
    which would otherwise duplicate images.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"image folder {data_dir} does not exist or is not a directory")
    found = []
    for path in data_dir.rglob("*"):
        relative = path.relative_to(data_dir)
        visible = not any(part.startswith(".") for part in relative.parts)
        if visible and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found, key=lambda path: path.relative_to(data_dir).as_posix())


def _open_rgb(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as opened:
            opened.load()  # decode now: a truncated file only fails here, not at open()
            # Camera photos are often stored sideways with an EXIF note saying how to turn them.
            return ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        warnings.warn(f"skipping unreadable image {path}: {error}", UnreadableImageWarning, stacklevel=4)
        return None


def fit_to_scene_height(image: Image.Image, scene_height: int) -> Image.Image:
    """Resize (LANCZOS) to exactly scene_height rows keeping the aspect ratio; portrait images are first centre-cropped
    to a square so that every image is at least one scene wide. May return the input when it already fits."""
    width, height = image.size
    if width < height:
        top = (height - width) // 2
        image = image.crop((0, top, width, top + width))
        height = width
    target = (max(scene_height, round(width * scene_height / height)), scene_height)
    return image if image.size == target else image.resize(target, Image.Resampling.LANCZOS)


def _load_usable_images(data_dir: Path, scene_height: int) -> list[tuple[Path, Image.Image]]:
    _check_positive("scene_height", scene_height)
    paths = list_images(data_dir)
    loaded = []
    for path in paths:
        image = _open_rgb(path)
        if image is not None:
            loaded.append((path, fit_to_scene_height(image, scene_height)))
    if not loaded:
        reason = (
            f"all {len(paths)} image files are unreadable"
            if paths
            else f"it holds no {'/'.join(sorted(suffix[1:] for suffix in IMAGE_SUFFIXES))} file"
        )
        raise DataError(f"no usable image in {data_dir}: {reason}")
    return loaded


def load_images(data_dir: Path, scene_height: int) -> list[Image.Image]:
    """Every readable image under data_dir as RGB, scene_height pixels tall (see fit_to_scene_height).

    Unreadable files are skipped with an UnreadableImageWarning naming them; DataError if none is usable.
    """
    return [image for _, image in _load_usable_images(Path(data_dir), scene_height)]


# --------------------------------------------------------------------------------------------------------------------
# Patch sampling.
# --------------------------------------------------------------------------------------------------------------------


class PatchSample(TypedDict):
    image: torch.Tensor  # float32 (3, P, P) in [-1, 1]
    top_px: int  # patch top row relative to the horizon (image centre row); y grows downward
    vpos: torch.Tensor  # float32 scalar in [-1, 1]: -1 = topmost possible crop, +1 = bottommost
    left_px: int  # patch left column in the (possibly flipped) image
    image_index: int  # into PatchDataset.image_paths
    flipped: bool


def patch_vpos(crop_top: int, patch_size: int, scene_height: int) -> float:
    """Vertical position of a patch centre: -1 for the top-most crop, +1 for the bottom-most, 0 centred on the
    horizon. Defined as (crop_top + P/2 - H/2) / (H/2 - P/2), clamped; 0 when the patch is a whole scene tall."""
    reach = scene_height / 2 - patch_size / 2
    if reach <= 0:
        return 0.0
    return min(1.0, max(-1.0, (crop_top + patch_size / 2 - scene_height / 2) / reach))


def _item_seed(seed: int, index: int) -> int:
    # Hashing rather than e.g. seed * K + index keeps (seed, index) pairs from colliding across seeds.
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def _image_to_uint8_chw(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


class PatchDataset(Dataset[PatchSample]):
    """Random patch_size x patch_size crops of the images in data_dir, each resized to scene_height rows.

    Item i is a pure function of (seed, i): it draws from its own torch.Generator, never from global RNG, so
    results do not depend on DataLoader workers or on other code seeding torch. Each item picks an image uniformly,
    flips it horizontally with probability 1/2, then crops at a uniform column and a uniform valid row.
    """

    def __init__(
        self,
        data_dir: Path | str,
        scene_height: int = 256,
        patch_size: int = 69,
        length: int = 10_000,
        seed: int = 0,
    ) -> None:
        _check_positive("scene_height", scene_height)
        _check_positive("patch_size", patch_size)
        _check_positive("length", length)
        if patch_size > scene_height:
            raise ValueError(f"patch_size ({patch_size}) must not exceed scene_height ({scene_height})")
        loaded = _load_usable_images(Path(data_dir), scene_height)
        self.scene_height = scene_height
        self.patch_size = patch_size
        self.length = length
        self.seed = seed
        self.image_paths: list[Path] = [path for path, _ in loaded]
        self.images: list[torch.Tensor] = [_image_to_uint8_chw(image) for _, image in loaded]  # uint8 (3, H, W)

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
        return PatchSample(
            image=patch.float().div_(127.5).sub_(1.0),
            top_px=math.floor(top - height / 2),
            vpos=torch.tensor(patch_vpos(top, size, height), dtype=torch.float32),
            left_px=left,
            image_index=image_index,
            flipped=flipped,
        )

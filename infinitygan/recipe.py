"""The landscape training recipe: which photographs to take from which Debian package, where each one's horizon is,
and which split (training or evaluation) it belongs to.

``fetch_recipe`` downloads the packages (``infinitygan.debian``), copies the largest rendition of each photograph into
``OUT/train`` or ``OUT/eval`` and writes a MANIFEST.json there with its provenance, licence and horizon row. The two
splits live in separate folders with separate manifests, so a training run pointed at ``OUT`` (or ``OUT/train``)
cannot read an evaluation photo. ``horizon_sheet`` draws every photo with its recorded horizon: the evidence that the
rows were checked by eye.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, ImageDraw

from infinitygan.data import (
    IMAGE_SUFFIXES,
    MANIFEST_JSON,
    MANIFEST_MD,
    SPLITS,
    DataError,
    DataFetchError,
    ManifestEntry,
    read_manifest,
    write_manifest,
)
from infinitygan.debian import (
    DebianPackage,
    copyright_holders,
    download_and_extract,
    kde_wallpaper_metadata,
    licensing_for,
    read_copyright_file,
    require_tools,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecipeImage:
    """One photograph of the recipe.

    candidates are globs relative to the extracted package root; every file they match is a rendition of the same
    photograph and the one with the most pixels wins (file names are not trusted: several are symlinks to one file).
    The copy is named output_stem plus the chosen file's suffix.
    horizon: the horizon's row as a fraction of the image height from the top, checked by eye on the largest
    rendition (see docs/data-horizons.png); negative when the horizon lies above the frame.
    split: "train" or "eval" (the evaluation split, which training never reads).
    upstream_license_file: a licence file inside the package that says more than debian/copyright (recorded too).
    """

    package: str
    output_stem: str
    candidates: tuple[str, ...]
    horizon: float
    split: str = "train"
    upstream_license_file: str | None = None
    horizon_note: str = ""

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if not -1.0 <= self.horizon <= 2.0:
            raise ValueError(f"horizon is a fraction of the height (about 0..1), got {self.horizon}")


def _plasma_wallpaper(name: str, horizon: float, **extra) -> RecipeImage:
    return RecipeImage(
        "plasma-workspace-wallpapers", name, (f"usr/share/wallpapers/{name}/contents/images/*",), horizon, **extra
    )


def _packaged_file(package: str, path: str, horizon: float, **extra) -> RecipeImage:
    # Some packages ship larger renditions beside the default file as NAME_WxH.ext (mate-backgrounds does for one
    # wallpaper), so those count as candidates too.
    file = PurePosixPath(path)
    larger_renditions = str(file.with_name(f"{file.stem}_*x*{file.suffix}"))
    return RecipeImage(package, file.stem, (path, larger_renditions), horizon, **extra)


def _lxqt_wallpaper(file: str, horizon: float) -> RecipeImage:
    return _packaged_file(
        "lxqt-themes",
        f"usr/share/lxqt/wallpapers/{file}",
        horizon,
        upstream_license_file="usr/share/lxqt/wallpapers/License",
    )


_LOMIRI = "usr/share/backgrounds/{}_by_Aitzol_Berasategi.jpg"

LANDSCAPE_RECIPE: tuple[RecipeImage, ...] = (
    # Training split: 14 photographs.
    _plasma_wallpaper("EveningGlow", 0.40),
    _plasma_wallpaper("DarkestHour", 0.60),
    _plasma_wallpaper("ColdRipple", 0.50),
    _plasma_wallpaper(
        "Path",
        0.47,
        horizon_note="no sky: a level camera in a forest, horizon at the path's vanishing point behind the trunks",
    ),
    _packaged_file("mate-backgrounds", "usr/share/backgrounds/mate/nature/Dune.jpg", 0.33),
    _packaged_file("mate-backgrounds", "usr/share/backgrounds/mate/nature/Storm.jpg", 0.62),
    _packaged_file("lomiri-wallpapers-16.04", _LOMIRI.format("aitzgorri"), 0.45),
    _packaged_file("lomiri-wallpapers-16.04", _LOMIRI.format("picosdeeuropa"), 0.55),
    _packaged_file(
        "lomiri-wallpapers-16.04",
        _LOMIRI.format("life"),
        -0.10,
        horizon_note="no sky: the camera looks down into a gorge, so the horizon lies above the frame",
    ),
    _lxqt_wallpaper("Valendas.png", 0.70),
    _lxqt_wallpaper("after-the-rain.jpg", 0.78),
    _lxqt_wallpaper("beam.png", 0.58),
    _lxqt_wallpaper("this-is-not-windows.jpg", 0.62),
    _packaged_file("tuxpaint-data", "usr/share/tuxpaint/templates/sheep.jpg", 0.43),
    # Evaluation split: never read by training.
    _plasma_wallpaper("summer_1am", 0.66, split="eval"),
    _packaged_file("lomiri-wallpapers-16.04", _LOMIRI.format("sunset"), 0.44, split="eval"),
)


def _largest_rendition(package: DebianPackage, item: RecipeImage) -> tuple[Path, tuple[int, int]]:
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


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError) as error:
        raise DataFetchError(f"cannot read image {path}: {error}") from error


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _upstream_license_note(package: DebianPackage, item: RecipeImage) -> str:
    """What an upstream licence file inside the package says (lxqt-themes ships one that debian/copyright ignores)."""
    if item.upstream_license_file is None:
        return ""
    path = package.root / item.upstream_license_file
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise DataFetchError(
            f"{package.name} {package.version}: cannot read {item.upstream_license_file}: {error}"
        ) from error
    found = re.search(r"creativecommons\.org/licenses/([a-z-]+)/(\d\.\d)", text) or re.search(
        r"\bCC[- ]BY(?:[- ](?:SA|NC|ND))*[- ]\d\.\d", text
    )
    if found is None:
        return f"upstream {item.upstream_license_file} names no licence we recognise"
    name = f"CC-{found.group(1).upper()}-{found.group(2)}" if found.lastindex else found.group(0).replace(" ", "-")
    # Credits list short names ("not-windows" for this-is-not-windows.jpg), comma-separated.
    tokens = {token.strip(" ;.").lower() for line in text.splitlines() for token in line.split(",")}
    credited = any(len(token) > 2 and token in item.output_stem.lower() for token in tokens)
    return f"upstream {item.upstream_license_file} says {name}" + ("" if credited else " (this file is not credited)")


def _copy_recipe_image(item: RecipeImage, package: DebianPackage, destination_dir: Path) -> ManifestEntry:
    source, (width, height) = _largest_rendition(package, item)
    path_in_package = source.relative_to(package.root.resolve()).as_posix()
    destination = destination_dir / f"{item.output_stem}{source.suffix.lower()}"
    shutil.copyfile(source, destination)

    licensing = licensing_for(read_copyright_file(package), path_in_package)
    author = copyright_holders(licensing.copyright)
    notes: list[str] = []
    kde_metadata = kde_wallpaper_metadata(package.root, path_in_package)
    if kde_metadata is not None:
        kde_authors, kde_license = kde_metadata
        if kde_authors:
            # debian/copyright credits the KDE design group as a whole; metadata.json names the photographer.
            author = "; ".join(kde_authors)
            notes.append("author from the wallpaper's metadata.json")
        if kde_license and kde_license != licensing.license:
            notes.append(f"metadata.json declares License: {kde_license}, debian/copyright says {licensing.license}")
    upstream = _upstream_license_note(package, item)
    if upstream:
        notes.append(f"{upstream}, debian/copyright says {licensing.license}")
    if item.horizon_note:
        notes.append(f"horizon: {item.horizon_note}")
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
        horizon=item.horizon,
        split=item.split,
    )


def _manifest_markdown(entries: Sequence[ManifestEntry]) -> str:
    lines = [
        "# Landscape photographs",
        "",
        "Copied unmodified from Debian packages by `infinitygan data fetch`; licences from each package's",
        "`usr/share/doc/PACKAGE/copyright` (and upstream files where noted). Each split folder's MANIFEST.json",
        "holds the same facts plus checksums. Horizon: the horizon's row as a fraction of the height from the top,",
        "checked by eye (horizons.png draws it); training never reads the eval split.",
        "",
        "| split | file | size | horizon | author | licence | package | path in package |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {e.split} | {e.file} | {e.width}x{e.height} | {e.horizon:.2f} | {e.author} | {e.license} "
        f"| {e.package} {e.package_version} | {e.path_in_package} |"
        for e in entries
    ]
    lines += ["", "## How each licence was determined", ""]
    lines += [f"- {e.file}: {e.license_source}" + (f" ({e.notes})" if e.notes else "") for e in entries]
    return "\n".join(lines) + "\n"


def _check_replaceable(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DataFetchError(f"{out_dir} exists and is not a directory")
    made_by_us = (out_dir / MANIFEST_MD).is_file() or (out_dir / MANIFEST_JSON).is_file()
    if out_dir.is_dir() and any(out_dir.iterdir()) and not made_by_us:
        raise DataFetchError(
            f"refusing to replace {out_dir}: it is not empty and has no {MANIFEST_MD} (fetch_recipe did not make it)"
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
    """Download the recipe's Debian packages and copy its photographs, largest rendition each, into out_dir/SPLIT.

    Packages are fetched with ``apt-get download`` (nothing is installed) and unpacked with ``dpkg-deb -x`` inside a
    temporary folder under workdir (default: the system temp folder), which is removed afterwards. Each split folder
    receives its images plus a MANIFEST.json; out_dir gets MANIFEST.md (both splits) and horizons.png (every photo
    with its horizon drawn). The folder is assembled beside out_dir and swapped in only when complete, so re-running
    replaces a previous result cleanly. Raises DataFetchError naming the failed step.
    """
    out_dir = Path(out_dir).absolute()
    output_names = [item.output_stem for item in recipe]
    if len(set(output_names)) != len(output_names):
        raise ValueError(f"recipe output names must be unique, got {output_names}")
    _check_replaceable(out_dir)
    require_tools()
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="infinitygan-fetch-", dir=workdir) as scratch_name:
        scratch = Path(scratch_name)
        package_names = dict.fromkeys(item.package for item in recipe)
        packages = {name: download_and_extract(name, scratch) for name in package_names}
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
        try:
            staging.chmod(0o755)  # mkdtemp makes it private; the data folder should be as readable as any other
            entries = []
            for split in SPLITS:
                items = [item for item in recipe if item.split == split]
                if not items:
                    continue
                (staging / split).mkdir()
                split_entries = [_copy_recipe_image(item, packages[item.package], staging / split) for item in items]
                write_manifest(staging / split, split_entries)
                entries += split_entries
            (staging / MANIFEST_MD).write_text(_manifest_markdown(entries), encoding="utf-8")
            horizon_sheet(staging).save(staging / HORIZON_SHEET)
            _replace_directory(staging, out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    logger.info("wrote %d images to %s", len(entries), out_dir)
    return entries


HORIZON_SHEET = "horizons.png"


def horizon_sheet(data_dir: Path, row_height: int = 200, row_width: int = 1400) -> Image.Image:
    """Every photo of every split of data_dir, row_height px tall, its recorded horizon drawn as a red line (a dashed
    line at the top edge when the horizon lies above the frame), tick marks every 10% of the height, name, split and
    horizon written on it; photos are packed left to right into rows about row_width px wide."""
    thumbnails = []
    for split in SPLITS:
        folder = Path(data_dir) / split
        if not (folder / MANIFEST_JSON).is_file():
            continue
        for entry in read_manifest(folder):
            with Image.open(folder / entry.file) as opened:
                image = opened.convert("RGB")
            image = image.resize(
                (round(image.width * row_height / image.height), row_height), Image.Resampling.BILINEAR
            )
            draw = ImageDraw.Draw(image)
            for tenth in range(11):
                y = min(row_height - 1, round(tenth * row_height / 10))
                draw.line([(0, y), (12 if tenth % 5 else 24, y)], fill=(255, 230, 0), width=1)
            y = round(entry.horizon * row_height)
            if 0 <= y < row_height:
                draw.line([(0, y), (image.width, y)], fill=(255, 0, 0), width=2)
            else:
                for x in range(0, image.width, 16):
                    draw.line([(x, 1), (x + 8, 1)], fill=(255, 0, 0), width=3)
            label = f"{Path(entry.file).stem} ({split}) horizon {entry.horizon:.2f}"
            draw.rectangle((28, 2, 32 + 6 * len(label), 14), fill=(0, 0, 0))
            draw.text((30, 2), label, fill=(255, 255, 255))
            thumbnails.append(image)
    if not thumbnails:
        raise DataError(f"no split folder with a {MANIFEST_JSON} in {data_dir}")
    rows: list[list[Image.Image]] = [[]]
    for image in thumbnails:
        if rows[-1] and sum(t.width + 4 for t in rows[-1]) + image.width > row_width:
            rows.append([])
        rows[-1].append(image)
    width = max(sum(t.width + 4 for t in row) - 4 for row in rows)
    sheet = Image.new("RGB", (width, len(rows) * (row_height + 4) - 4), (255, 255, 255))
    for r, row in enumerate(rows):
        x = 0
        for image in row:
            sheet.paste(image, (x, r * (row_height + 4)))
            x += image.width + 4
    return sheet

"""Tests for infinitygan.data on real image files written with PIL (no mocks)."""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader

from infinitygan import data
from infinitygan.data import (
    LANDSCAPE_RECIPE,
    DataError,
    DataFetchError,
    PatchDataset,
    RecipeImage,
    UnreadableImageWarning,
    copyright_holders,
    fetch_recipe,
    licensing_for,
    list_images,
    load_images,
    parse_dep5,
    patch_vpos,
    read_manifest,
)

# --------------------------------------------------------------------------------------------------------------------
# Image folders made for the tests.
# --------------------------------------------------------------------------------------------------------------------


def _gradient(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1).astype(np.uint8))


def _shapes(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height), (40, 90, 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, height // 2, width, height), fill=(30, 140, 40))
    draw.ellipse((width // 4, height // 8, width // 2, height // 3), fill=(250, 220, 60))
    return image


def _portrait_bands(width: int = 60, height: int = 120) -> Image.Image:
    """Red top quarter, green middle half, blue bottom quarter: the centre square is all green."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[: height // 4, :, 0] = 255
    pixels[height // 4 : 3 * height // 4, :, 1] = 255
    pixels[3 * height // 4 :, :, 2] = 255
    return Image.fromarray(pixels)


def _truncated_jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    _gradient(120, 80).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


@pytest.fixture()
def mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    _gradient(200, 100).save(folder / "gradient.png")
    _shapes(300, 150).save(folder / "shapes.jpg", quality=95)
    _portrait_bands().save(folder / "portrait.png")
    _shapes(160, 120).save(folder / "nested" / "UPPER.JPEG", quality=95)
    _gradient(90, 90).save(folder / "nested" / "square.webp")
    _gradient(90, 90).save(folder / ".hidden" / "copy.png")
    (folder / "corrupt.jpg").write_bytes(random.Random(0).randbytes(4096))
    (folder / "empty.png").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(_truncated_jpeg_bytes())
    (folder / "notes.txt").write_text("not an image")
    return folder


BAD_FILES = ("corrupt.jpg", "empty.png", "truncated.jpg")
GOOD_FILES = ("gradient.png", "nested/UPPER.JPEG", "nested/square.webp", "portrait.png", "shapes.jpg")


def _save_coordinate_image(path: Path, width: int, height: int) -> None:
    """Red = column, green = row, so a patch tells exactly where it was cut from (lossless PNG)."""
    columns, rows = np.meshgrid(np.arange(width), np.arange(height))
    pixels = np.stack([columns, rows, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def _to_uint8(patch: torch.Tensor) -> torch.Tensor:
    return ((patch + 1.0) * 127.5).round().to(torch.int64)


# --------------------------------------------------------------------------------------------------------------------
# list_images / load_images
# --------------------------------------------------------------------------------------------------------------------


def test_list_images_is_recursive_sorted_and_skips_other_and_hidden_files(mixed_folder: Path) -> None:
    listed = [path.relative_to(mixed_folder).as_posix() for path in list_images(mixed_folder)]
    assert listed == sorted([*GOOD_FILES, *BAD_FILES])


def test_list_images_of_missing_folder_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "nowhere")


def test_load_images_skips_unreadable_files_with_a_warning_naming_them(mixed_folder: Path) -> None:
    with pytest.warns(UnreadableImageWarning) as caught:
        images = load_images(mixed_folder, scene_height=64)
    messages = " ".join(str(warning.message) for warning in caught)
    for name in BAD_FILES:
        assert name in messages
    assert len(caught) == len(BAD_FILES)
    assert len(images) == len(GOOD_FILES)
    assert all(image.mode == "RGB" and image.height == 64 for image in images)
    # Sorted order: gradient 200x100, UPPER 160x120, square 90x90, portrait 60x120, shapes 300x150.
    assert [image.width for image in images] == [128, 85, 64, 64, 128]


def test_portrait_image_is_centre_cropped_to_a_square(tmp_path: Path) -> None:
    _portrait_bands().save(tmp_path / "portrait.png")
    [image] = load_images(tmp_path, scene_height=48)
    assert image.size == (48, 48)
    mean = np.asarray(image, dtype=np.float32).mean(axis=(0, 1))
    assert mean[1] > 240 and mean[0] < 10 and mean[2] < 10


def test_image_already_at_scene_height_is_not_resampled(tmp_path: Path) -> None:
    _save_coordinate_image(tmp_path / "exact.png", 100, 40)
    [image] = load_images(tmp_path, scene_height=40)
    assert np.array_equal(np.asarray(image), np.asarray(Image.open(tmp_path / "exact.png").convert("RGB")))


def test_folder_with_only_unreadable_images_raises_data_error(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(random.Random(1).randbytes(1000))
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.warns(UnreadableImageWarning), pytest.raises(DataError, match="all 2 image files are unreadable"):
        load_images(tmp_path, scene_height=32)


def test_folder_without_images_raises_data_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DataError, match="no usable image"):
        load_images(tmp_path, scene_height=32)


def test_load_images_rejects_non_positive_scene_height(mixed_folder: Path) -> None:
    with pytest.raises(ValueError, match="scene_height"):
        load_images(mixed_folder, scene_height=0)


# --------------------------------------------------------------------------------------------------------------------
# PatchDataset
# --------------------------------------------------------------------------------------------------------------------


def test_patch_dataset_shapes_dtypes_and_ranges(mixed_folder: Path) -> None:
    with pytest.warns(UnreadableImageWarning):
        dataset = PatchDataset(mixed_folder, scene_height=64, patch_size=33, length=40, seed=3)
    assert len(dataset) == 40
    assert len(dataset.images) == len(GOOD_FILES)
    assert all(image.dtype == torch.uint8 and image.shape[:2] == (3, 64) for image in dataset.images)
    for index in range(len(dataset)):
        sample = dataset[index]
        image = sample["image"]
        assert image.shape == (3, 33, 33) and image.dtype == torch.float32
        assert image.min() >= -1.0 and image.max() <= 1.0
        assert sample["vpos"].shape == () and sample["vpos"].dtype == torch.float32
        assert -1.0 <= float(sample["vpos"]) <= 1.0
        assert isinstance(sample["top_px"], int) and isinstance(sample["left_px"], int)
        assert -32 <= sample["top_px"] <= 64 - 33 - 32
        width = dataset.images[sample["image_index"]].shape[2]
        assert 0 <= sample["left_px"] <= width - 33


def test_patch_content_matches_the_reported_position(tmp_path: Path) -> None:
    width, height, size = 200, 64, 16
    _save_coordinate_image(tmp_path / "coordinates.png", width, height)
    dataset = PatchDataset(tmp_path, scene_height=height, patch_size=size, length=60, seed=11)
    seen_flips = set()
    for index in range(len(dataset)):
        sample = dataset[index]
        patch = _to_uint8(sample["image"])
        top = sample["top_px"] + height // 2
        left = sample["left_px"]
        assert torch.equal(patch[1, :, 0], torch.arange(top, top + size))
        columns = torch.arange(left, left + size)
        expected_red = width - 1 - columns if sample["flipped"] else columns
        assert torch.equal(patch[0, 0, :], expected_red)
        expected_vpos = (top + size / 2 - height / 2) / (height / 2 - size / 2)
        assert float(sample["vpos"]) == pytest.approx(expected_vpos, abs=1e-6)
        seen_flips.add(sample["flipped"])
    assert seen_flips == {True, False}


def test_top_px_floors_for_odd_scene_height(tmp_path: Path) -> None:
    _save_coordinate_image(tmp_path / "odd.png", 80, 31)
    dataset = PatchDataset(tmp_path, scene_height=31, patch_size=8, length=30, seed=0)
    for index in range(len(dataset)):
        sample = dataset[index]
        crop_top = int(_to_uint8(sample["image"])[1, 0, 0])
        assert sample["top_px"] == crop_top - 16  # floor(crop_top - 15.5)


def test_vpos_is_negative_for_crops_above_the_horizon(tmp_path: Path) -> None:
    pixels = np.zeros((64, 128, 3), dtype=np.uint8)
    pixels[:32] = 255  # white sky over black ground
    Image.fromarray(pixels).save(tmp_path / "sky.png")
    dataset = PatchDataset(tmp_path, scene_height=64, patch_size=16, length=300, seed=5)
    samples = [dataset[index] for index in range(len(dataset))]
    upper = [float(s["image"].mean()) for s in samples if float(s["vpos"]) < -0.34]
    lower = [float(s["image"].mean()) for s in samples if float(s["vpos"]) > 0.34]
    assert upper and lower
    # |vpos| > 1/3 means the 16-pixel patch lies wholly on one side of row 32.
    assert all(mean == 1.0 for mean in upper)
    assert all(mean == -1.0 for mean in lower)


def test_patch_vpos_end_points() -> None:
    assert patch_vpos(0, 69, 256) == -1.0
    assert patch_vpos(256 - 69, 69, 256) == 1.0
    assert patch_vpos(64, 128, 256) == 0.0
    assert patch_vpos(0, 256, 256) == 0.0  # a patch as tall as the scene can only be centred


def test_items_are_deterministic_and_independent_of_global_rng(mixed_folder: Path) -> None:
    with pytest.warns(UnreadableImageWarning):
        first = PatchDataset(mixed_folder, scene_height=64, patch_size=24, length=100, seed=7)
    with pytest.warns(UnreadableImageWarning):
        second = PatchDataset(mixed_folder, scene_height=64, patch_size=24, length=100, seed=7)
    with pytest.warns(UnreadableImageWarning):
        other_seed = PatchDataset(mixed_folder, scene_height=64, patch_size=24, length=100, seed=8)
    torch.manual_seed(0)
    a = first[5]
    torch.manual_seed(12345)
    b = second[5]
    assert torch.equal(a["image"], b["image"])
    assert (a["top_px"], a["left_px"], a["image_index"], a["flipped"]) == (
        b["top_px"],
        b["left_px"],
        b["image_index"],
        b["flipped"],
    )
    assert torch.equal(a["vpos"], b["vpos"])
    assert torch.equal(first[5]["image"], a["image"])
    assert not torch.equal(first[6]["image"], a["image"])
    assert not torch.equal(other_seed[5]["image"], a["image"])


def test_dataloader_collates_batches(mixed_folder: Path) -> None:
    with pytest.warns(UnreadableImageWarning):
        dataset = PatchDataset(mixed_folder, scene_height=64, patch_size=32, length=10, seed=1)
    batch = next(iter(DataLoader(dataset, batch_size=4, shuffle=False)))
    assert batch["image"].shape == (4, 3, 32, 32)
    assert batch["vpos"].shape == (4,) and batch["vpos"].dtype == torch.float32
    assert batch["top_px"].shape == (4,) and batch["top_px"].dtype == torch.int64


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"scene_height": 64, "patch_size": 65}, "must not exceed scene_height"),
        ({"scene_height": 64, "patch_size": 0}, "patch_size"),
        ({"scene_height": 0, "patch_size": 1}, "scene_height"),
        ({"scene_height": 64, "patch_size": 32, "length": 0}, "length"),
    ],
)
def test_patch_dataset_validates_arguments(tmp_path: Path, arguments: dict[str, int], message: str) -> None:
    _gradient(100, 64).save(tmp_path / "g.png")
    with pytest.raises(ValueError, match=message):
        PatchDataset(tmp_path, **arguments)


def test_patch_dataset_rejects_out_of_range_indices(tmp_path: Path) -> None:
    _gradient(100, 64).save(tmp_path / "g.png")
    dataset = PatchDataset(tmp_path, scene_height=64, patch_size=32, length=3)
    for index in (-1, 3):
        with pytest.raises(IndexError):
            dataset[index]


def test_patch_dataset_on_unusable_folder_raises_data_error(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.warns(UnreadableImageWarning), pytest.raises(DataError):
        PatchDataset(tmp_path, scene_height=64, patch_size=32)


# --------------------------------------------------------------------------------------------------------------------
# Copyright parsing
# --------------------------------------------------------------------------------------------------------------------

DEP5_TEXT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: example-wallpapers

Files: *
Copyright: 2020 Example Art Team
License: GPL-2+

Files: photos/lake.jpg
       photos/hill.jpg
Copyright: 2019, Ann Painter <ann@example.org>
           2021 Bob Editor
License: CC-BY-4.0

Files: 22.04/meadow_by_Cy.jpg
Copyright: "Cy", 2022
License: CC0-1.0

Files: debian/*
Copyright: 2023 A Maintainer
License: GPL-2+
 The full licence text would follow here.
"""


def test_dep5_parsing_reads_every_files_stanza() -> None:
    stanzas = parse_dep5(DEP5_TEXT)
    assert stanzas is not None
    assert [stanza.patterns for stanza in stanzas] == [
        ("*",),
        ("photos/lake.jpg", "photos/hill.jpg"),
        ("22.04/meadow_by_Cy.jpg",),
        ("debian/*",),
    ]
    assert stanzas[1].copyright == "2019, Ann Painter <ann@example.org>\n2021 Bob Editor"
    assert stanzas[3].license == "GPL-2+"


def test_licensing_prefers_the_stanza_naming_the_installed_file() -> None:
    named = licensing_for(DEP5_TEXT, "usr/share/backgrounds/example/photos/hill.jpg")
    assert named.license == "CC-BY-4.0"
    assert "photos/hill.jpg" in named.license_source
    assert copyright_holders(named.copyright) == "Ann Painter; Bob Editor"

    flattened = licensing_for(DEP5_TEXT, "usr/share/backgrounds/meadow_by_Cy.jpg")
    assert flattened.license == "CC0-1.0"
    assert "matched by file name" in flattened.license_source
    assert copyright_holders(flattened.copyright) == "Cy"

    other = licensing_for(DEP5_TEXT, "usr/share/backgrounds/example/photos/river.jpg")
    assert other.license == "GPL-2+"
    assert "catch-all" in other.license_source


def test_licensing_falls_back_to_package_level_for_free_text_copyright() -> None:
    text = (
        "This package was debianized by someone.\n\n"
        "Copyright (C) 2005 Some Photographer\n\n"
        "This program is free software; you can redistribute it under the terms of the GNU General Public License\n"
        "as published by the Free Software Foundation; either version 2 of the License, or any later version.\n"
    )
    licensing = licensing_for(text, "usr/share/backgrounds/x.jpg")
    assert licensing.license == "GPL-2+"
    assert "not machine-readable" in licensing.license_source


def test_largest_rendition_is_chosen_by_pixels_not_by_file_name(tmp_path: Path) -> None:
    images = tmp_path / "usr/share/wallpapers/Test/contents/images"
    images.mkdir(parents=True)
    _gradient(40, 25).save(images / "9999x9999.png")  # the name lies: this one is small
    _gradient(80, 50).save(images / "80x50.jpg")
    (images / "1920x1080.jpg").symlink_to("80x50.jpg")
    package = data._Package(name="test-wallpapers", version="1.0-1", root=tmp_path)
    item = RecipeImage("test-wallpapers", "Test", ("usr/share/wallpapers/Test/contents/images/*",))
    chosen, size = data._largest_rendition(package, item)
    assert chosen.name == "80x50.jpg" and size == (80, 50)


def test_missing_recipe_file_raises_data_fetch_error(tmp_path: Path) -> None:
    package = data._Package(name="test-wallpapers", version="1.0-1", root=tmp_path)
    item = RecipeImage("test-wallpapers", "Gone", ("usr/share/backgrounds/Gone.jpg",))
    with pytest.raises(DataFetchError, match="no file matching usr/share/backgrounds/Gone.jpg"):
        data._largest_rendition(package, item)


# --------------------------------------------------------------------------------------------------------------------
# fetch_recipe failures that need no download
# --------------------------------------------------------------------------------------------------------------------


def test_fetch_recipe_without_apt_get_raises_data_fetch_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    with pytest.raises(DataFetchError, match="apt-get"):
        fetch_recipe(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_fetch_recipe_refuses_to_replace_an_unrelated_folder(tmp_path: Path) -> None:
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(DataFetchError, match="refusing to replace"):
        fetch_recipe(precious)
    assert (precious / "holiday.jpg").read_bytes() == b"mine"


def test_fetch_recipe_reports_a_package_that_cannot_be_downloaded(tmp_path: Path) -> None:
    recipe = (RecipeImage("infinitygan-no-such-package", "x", ("x.jpg",)),)
    with pytest.raises(DataFetchError):
        fetch_recipe(tmp_path / "out", workdir=tmp_path / "work", recipe=recipe)
    assert not (tmp_path / "out").exists()
    assert list((tmp_path / "work").iterdir()) == []


# --------------------------------------------------------------------------------------------------------------------
# The real download (about 160 MB from the Debian archive).
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("RUN_NETWORK_TESTS") != "1", reason="set RUN_NETWORK_TESTS=1 to download packages")
def test_fetch_recipe_downloads_the_landscape_set(tmp_path: Path) -> None:
    out_dir = tmp_path / "landscapes"
    entries = fetch_recipe(out_dir, workdir=tmp_path / "work")

    assert [entry.file.rsplit(".", 1)[0] for entry in entries] == [item.output_stem for item in LANDSCAPE_RECIPE]
    assert read_manifest(out_dir) == entries
    assert json.loads((out_dir / "MANIFEST.json").read_text())["format"] == 1
    assert (out_dir / "MANIFEST.md").is_file()
    for entry in entries:
        assert entry.license and entry.author and entry.package_version
        with Image.open(out_dir / entry.file) as image:
            assert image.size == (entry.width, entry.height)
            assert entry.width >= 1600  # the largest rendition, not a thumbnail
    assert len(load_images(out_dir, scene_height=128)) == len(LANDSCAPE_RECIPE)

    # Re-running replaces the folder whole: nothing from the first run survives.
    lomiri_only = tuple(item for item in LANDSCAPE_RECIPE if item.package == "lomiri-wallpapers-16.04")[:1]
    fetch_recipe(out_dir, workdir=tmp_path / "work", recipe=lomiri_only)
    assert sorted(path.name for path in out_dir.iterdir()) == sorted(
        ["MANIFEST.json", "MANIFEST.md", "aitzgorri_by_Aitzol_Berasategi.jpg"]
    )

    # A failing run leaves the previous result untouched and no staging folders behind.
    broken = (RecipeImage("lomiri-wallpapers-16.04", "Gone", ("usr/share/backgrounds/Gone.jpg",)),)
    with pytest.raises(DataFetchError, match="Gone.jpg"):
        fetch_recipe(out_dir, workdir=tmp_path / "work", recipe=broken)
    assert len(read_manifest(out_dir)) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["landscapes", "work"]
    assert list((tmp_path / "work").iterdir()) == []

"""Tests for infinitygan.data on real image files written with PIL (no mocks)."""

from __future__ import annotations

import io
import json
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader

from infinitygan import recipe
from infinitygan.data import (
    DataError,
    DataFetchError,
    ManifestEntry,
    PatchDataset,
    UnreadableImageWarning,
    list_images,
    load_scenes,
    patch_vpos,
    prepare_split,
    read_manifest,
    write_manifest,
)
from infinitygan.debian import DebianPackage, copyright_holders, licensing_for, parse_dep5
from infinitygan.recipe import LANDSCAPE_RECIPE, RecipeImage, fetch_recipe

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
# list_images / load_scenes
# --------------------------------------------------------------------------------------------------------------------


def test_list_images_is_recursive_sorted_and_skips_other_and_hidden_files(mixed_folder: Path) -> None:
    listed = [path.relative_to(mixed_folder).as_posix() for path in list_images(mixed_folder)]
    assert listed == sorted([*GOOD_FILES, *BAD_FILES])


def test_list_images_of_missing_folder_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "nowhere")


def test_load_scenes_skips_unreadable_files_with_a_warning_naming_them(mixed_folder: Path) -> None:
    with pytest.warns(UnreadableImageWarning) as caught:
        scenes = load_scenes(mixed_folder, scene_height=64)
    messages = " ".join(str(warning.message) for warning in caught)
    for name in BAD_FILES:
        assert name in messages
    assert len(caught) == len(BAD_FILES)
    assert len(scenes) == len(GOOD_FILES)
    assert all(scene.pixels.dtype == torch.uint8 and scene.pixels.shape[:2] == (3, 64) for scene in scenes)
    # Sorted order: gradient 200x100, UPPER 160x120, square 90x90, portrait 60x120, shapes 300x150.
    assert [scene.pixels.shape[2] for scene in scenes] == [128, 85, 64, 64, 128]
    assert all(scene.horizon_row == 32 for scene in scenes)  # no manifest: the centre row


def test_portrait_image_is_centre_cropped_to_a_square(tmp_path: Path) -> None:
    _portrait_bands().save(tmp_path / "portrait.png")
    [scene] = load_scenes(tmp_path, scene_height=48)
    assert scene.pixels.shape == (3, 48, 48)
    mean = scene.pixels.float().mean(dim=(1, 2))
    assert mean[1] > 240 and mean[0] < 10 and mean[2] < 10


def test_image_already_at_scene_height_is_not_resampled(tmp_path: Path) -> None:
    _save_coordinate_image(tmp_path / "exact.png", 100, 40)
    [scene] = load_scenes(tmp_path, scene_height=40)
    expected = np.asarray(Image.open(tmp_path / "exact.png").convert("RGB"))
    assert np.array_equal(scene.pixels.permute(1, 2, 0).numpy(), expected)


def test_folder_with_only_unreadable_images_raises_data_error(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(random.Random(1).randbytes(1000))
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.warns(UnreadableImageWarning), pytest.raises(DataError, match="all 2 image files are unreadable"):
        load_scenes(tmp_path, scene_height=32)


def test_folder_without_images_raises_data_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DataError, match="no usable image"):
        load_scenes(tmp_path, scene_height=32)


def test_load_scenes_rejects_non_positive_scene_height(mixed_folder: Path) -> None:
    with pytest.raises(ValueError, match="scene_height"):
        load_scenes(mixed_folder, scene_height=0)


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
    # Arguments: top row relative to the horizon, patch size, scene height.
    assert patch_vpos(-128, 69, 256) == -1.0
    assert patch_vpos(128 - 69, 69, 256) == 1.0
    assert patch_vpos(-64, 128, 256) == 0.0
    assert patch_vpos(-128, 256, 256) == 0.0  # a patch as tall as the scene can only be centred
    assert patch_vpos(-500, 69, 256) == -1.0 and patch_vpos(500, 69, 256) == 1.0  # clamped


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
    package = DebianPackage(name="test-wallpapers", version="1.0-1", root=tmp_path)
    item = RecipeImage("test-wallpapers", "Test", ("usr/share/wallpapers/Test/contents/images/*",), horizon=0.5)
    chosen, size = recipe._largest_rendition(package, item)
    assert chosen.name == "80x50.jpg" and size == (80, 50)


def test_missing_recipe_file_raises_data_fetch_error(tmp_path: Path) -> None:
    package = DebianPackage(name="test-wallpapers", version="1.0-1", root=tmp_path)
    item = RecipeImage("test-wallpapers", "Gone", ("usr/share/backgrounds/Gone.jpg",), horizon=0.5)
    with pytest.raises(DataFetchError, match="no file matching usr/share/backgrounds/Gone.jpg"):
        recipe._largest_rendition(package, item)


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
    recipe = (RecipeImage("infinitygan-no-such-package", "x", ("x.jpg",), horizon=0.5),)
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
    train, evaluation = read_manifest(out_dir / "train"), read_manifest(out_dir / "eval")
    assert len(train) == 14 and len(evaluation) == 2
    assert train + evaluation == entries
    assert {e.file for e in evaluation} == {"summer_1am.jpg", "sunset_by_Aitzol_Berasategi.jpg"}
    assert json.loads((out_dir / "train" / "MANIFEST.json").read_text())["format"] == 2
    assert (out_dir / "MANIFEST.md").is_file() and (out_dir / "horizons.png").is_file()
    horizons = {item.output_stem: item.horizon for item in LANDSCAPE_RECIPE}
    for entry in entries:
        assert entry.license and entry.author and entry.package_version
        assert entry.horizon == horizons[entry.file.rsplit(".", 1)[0]]
        with Image.open(out_dir / entry.split / entry.file) as image:
            assert image.size == (entry.width, entry.height)
            assert entry.width >= 1138  # the largest rendition, not a thumbnail (sheep.jpg is 1138 wide)
    lxqt = [e for e in entries if e.package == "lxqt-themes"]
    assert lxqt and all("CC-BY-SA-3.0" in e.notes and e.license == "LGPL-2.1+" for e in lxqt)  # both recorded
    assert len(load_scenes(out_dir, scene_height=128)) == 14
    assert len(load_scenes(out_dir, scene_height=128, split="eval")) == 2

    # Re-running replaces the folder whole: nothing from the first run survives.
    lomiri_only = tuple(item for item in LANDSCAPE_RECIPE if item.package == "lomiri-wallpapers-16.04")[:1]
    fetch_recipe(out_dir, workdir=tmp_path / "work", recipe=lomiri_only)
    assert sorted(path.name for path in out_dir.iterdir()) == ["MANIFEST.md", "horizons.png", "train"]
    assert [path.name for path in (out_dir / "train").iterdir() if path.suffix == ".jpg"] == [
        "aitzgorri_by_Aitzol_Berasategi.jpg"
    ]

    # A failing run leaves the previous result untouched and no staging folders behind.
    broken = (RecipeImage("lomiri-wallpapers-16.04", "Gone", ("usr/share/backgrounds/Gone.jpg",), horizon=0.5),)
    with pytest.raises(DataFetchError, match="Gone.jpg"):
        fetch_recipe(out_dir, workdir=tmp_path / "work", recipe=broken)
    assert len(read_manifest(out_dir / "train")) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["landscapes", "work"]
    assert list((tmp_path / "work").iterdir()) == []


# --------------------------------------------------------------------------------------------------------------------
# The recipe, horizons and splits
# --------------------------------------------------------------------------------------------------------------------


def test_the_recipe_has_fourteen_training_photos_and_a_two_photo_evaluation_split() -> None:
    train = [item.output_stem for item in LANDSCAPE_RECIPE if item.split == "train"]
    evaluation = [item.output_stem for item in LANDSCAPE_RECIPE if item.split == "eval"]
    assert len(train) == 14 and len(set(train)) == 14
    assert evaluation == ["summer_1am", "sunset_by_Aitzol_Berasategi"]
    assert not set(train) & set(evaluation)
    assert {item.package for item in LANDSCAPE_RECIPE} == {
        "plasma-workspace-wallpapers",
        "mate-backgrounds",
        "lomiri-wallpapers-16.04",
        "lxqt-themes",
        "tuxpaint-data",
    }
    # Every photo carries a horizon; the two without sky say how theirs was decided.
    assert all(-1 <= item.horizon <= 1 for item in LANDSCAPE_RECIPE)
    no_sky = {item.output_stem: item for item in LANDSCAPE_RECIPE if item.horizon_note}
    assert set(no_sky) == {"Path", "life_by_Aitzol_Berasategi"}
    assert no_sky["life_by_Aitzol_Berasategi"].horizon < 0  # above the frame


def _manifest_folder(folder: Path, horizons: dict[str, float], split: str = "train", width: int = 160) -> Path:
    """A data folder as fetch_recipe writes it: coordinate images (green = row) and a MANIFEST.json."""
    folder.mkdir(parents=True)
    entries = []
    for name, horizon in horizons.items():
        _save_coordinate_image(folder / f"{name}.png", width, 64)
        entries.append(
            ManifestEntry(
                file=f"{name}.png",
                package="test",
                package_version="1",
                path_in_package=name,
                width=width,
                height=64,
                sha256="",
                author="",
                copyright="",
                license="",
                license_source="",
                horizon=horizon,
                split=split,
            )
        )
    write_manifest(folder, entries)
    return folder


def test_position_labels_follow_each_photos_recorded_horizon(tmp_path: Path) -> None:
    horizons = {"high": 0.25, "middle": 0.5, "low": 0.78, "above": -0.1}
    folder = _manifest_folder(tmp_path / "data", horizons)
    height, size = 64, 16
    dataset = PatchDataset(folder, scene_height=height, patch_size=size, length=400, seed=2)
    assert dataset.horizon_rows == [math.floor(h * height + 0.5) for h in (-0.1, 0.25, 0.78, 0.5)]  # sorted names
    seen = set()
    for index in range(len(dataset)):
        sample = dataset[index]
        name = dataset.image_paths[sample["image_index"]].stem
        crop_top = int(_to_uint8(sample["image"])[1, 0, 0])  # green channel = the row it was cut from
        assert 0 <= crop_top <= height - size  # only rows that exist
        assert sample["top_px"] == crop_top - math.floor(horizons[name] * height + 0.5)
        assert float(sample["vpos"]) == pytest.approx(patch_vpos(sample["top_px"], size, height))
        seen.add(name)
    assert seen == set(horizons)


def test_the_evaluation_split_never_reaches_the_training_dataset(tmp_path: Path) -> None:
    data_dir = tmp_path / "landscapes"
    _manifest_folder(data_dir / "train", {"a": 0.5, "b": 0.4})
    _manifest_folder(data_dir / "eval", {"held_out": 0.6}, split="eval")

    # The fetched folder resolves to its train split; an explicit train folder is the same.
    for folder in (data_dir, data_dir / "train"):
        dataset = PatchDataset(folder, scene_height=64, patch_size=16, length=50)
        assert [path.name for path in dataset.image_paths] == ["a.png", "b.png"]
        assert all(dataset.image_paths[dataset[i]["image_index"]].parent.name == "train" for i in range(50))
    # Pointing training at the eval folder is refused, not silently trained on.
    with pytest.raises(DataError, match="eval split"):
        PatchDataset(data_dir / "eval", scene_height=64, patch_size=16)
    # A folder above the data folder (no manifest of its own) is listed recursively, but without the eval split.
    listed = [path.name for path in list_images(tmp_path)]
    assert listed == ["a.png", "b.png"]
    # Evaluation reads its split explicitly.
    assert [scene.path.name for scene in load_scenes(data_dir, 64, split="eval")] == ["held_out.png"]


def test_a_prepared_subset_keeps_only_the_photos_named(tmp_path: Path, capsys) -> None:
    from infinitygan.cli import main

    data_dir = tmp_path / "landscapes"
    _manifest_folder(data_dir / "train", {"a": 0.3, "b": 0.7, "c": 0.5}, width=300)
    entries = prepare_split(data_dir, tmp_path / "dusk", scene_height=48, photos=["c.png", "a.png"])
    assert sorted(entry.file for entry in entries) == ["a.png", "c.png"]
    assert sorted(p.name for p in (tmp_path / "dusk").glob("*.png")) == ["a.png", "c.png"]
    with pytest.raises(DataError, match=r"no \['nope.png'\]; it has \['a.png', 'b.png', 'c.png'\]"):
        prepare_split(data_dir, tmp_path / "x", scene_height=48, photos=["a.png", "nope.png"])
    argv = ["data", "prepare", "--data", str(data_dir), "--out", str(tmp_path / "cli"), "--scene-height", "48"]
    assert main([*argv, "--photos", "b.png"]) == 0
    assert [entry.file for entry in read_manifest(tmp_path / "cli")] == ["b.png"]
    assert main([*argv, "--photos", "nope.png"]) != 0
    assert "nope.png" in capsys.readouterr().err


def test_prepared_data_samples_the_same_patches_as_the_original(tmp_path: Path) -> None:
    data_dir = tmp_path / "landscapes"
    _manifest_folder(data_dir / "train", {"a": 0.3, "b": 0.7}, width=300)
    _manifest_folder(data_dir / "eval", {"held_out": 0.6}, split="eval")
    entries = prepare_split(data_dir, tmp_path / "prepared", scene_height=48)
    assert [entry.file for entry in entries] == ["a.png", "b.png"]  # the training split only
    assert [entry.horizon for entry in entries] == pytest.approx([0.3, 0.7])
    original = PatchDataset(data_dir, scene_height=48, patch_size=16, length=30, seed=4)
    prepared = PatchDataset(tmp_path / "prepared", scene_height=48, patch_size=16, length=30, seed=4)
    for index in range(30):
        a, b = original[index], prepared[index]
        assert torch.equal(a["image"], b["image"]) and a["top_px"] == b["top_px"]

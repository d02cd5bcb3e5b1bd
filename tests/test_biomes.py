"""Biomes: regions along x with their own global styles, blended by spatial style fusion; a function of world
coordinates only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infinitygan import World, WorldSpec, render_region
from infinitygan.biomes import Biomes, BiomeStyle
from infinitygan.distill import build_student
from infinitygan.evaluate import seam_ratio
from tests.model_fixtures import lively_tiny_generator

BIOMES = Biomes(region_px=512, transition_px=128)
SEED = 4


@pytest.fixture(scope="module")
def generator():
    return lively_tiny_generator()


def test_regions_tile_the_line_and_are_found_anywhere_in_constant_time():
    ks = np.arange(-50, 50)
    bounds = BIOMES.boundary(SEED, ks)
    assert (np.diff(bounds) >= BIOMES.region_px / 2).all() and (np.diff(bounds) <= 1.5 * BIOMES.region_px).all()
    probes = np.concatenate([bounds - 0.5, bounds, bounds + 0.5])
    expected = np.concatenate([ks - 1, ks, ks])
    assert np.array_equal(BIOMES.region_of(SEED, probes), expected)
    far = np.array([2.0**39, -(2.0**39)])
    regions = BIOMES.region_of(SEED, far)  # no walk from the origin: constant time and memory
    assert (np.abs(regions - far / 512) <= 1).all()
    assert (BIOMES.boundary(SEED, regions) <= far).all() and (far < BIOMES.boundary(SEED, regions + 1)).all()
    left, right, weight = BIOMES.mixing(SEED, np.array([bounds[60] - 64, bounds[60], bounds[60] + 63.9]))
    assert (left == 9).all() and (right == 10).all()
    assert weight[0] == 0.0 and abs(weight[1] - 0.5) < 1e-12 and weight[2] > 0.999


def test_bad_biomes_are_refused():
    for kwargs in ({"region_px": 100}, {"region_px": 512, "transition_px": 300}, {"transition_px": 0}):
        with pytest.raises(ValueError):
            Biomes(**kwargs)
    with pytest.raises(ValueError, match="at most"):
        Biomes(styles=tuple(BiomeStyle(i, 0.8) for i in range(65)))


def render_across_a_boundary(generator) -> tuple[np.ndarray, int]:
    """A 512 render whose middle column of chunks straddles region boundary 1, asserted equal to its four quarters."""
    spec = WorldSpec(seed=SEED, biomes=BIOMES)
    boundary = int(BIOMES.boundary(SEED, np.array([1]))[0])
    x0 = boundary // 256 * 256 - 256 if boundary % 256 < 128 else boundary // 256 * 256
    whole = render_region(World(generator, spec), x0, -256, 512, 512)
    for dy in (0, 256):
        for dx in (0, 256):
            quarter = render_region(World(generator, spec), x0 + dx, -256 + dy, 256, 256)
            assert np.array_equal(whole[dy : dy + 256, dx : dx + 256], quarter)
    return whole, x0


def test_tiles_across_a_region_boundary_stitch_exactly(generator):
    render_across_a_boundary(generator)


def test_twenty_regions_differ_and_transitions_are_smooth(generator):
    spec = WorldSpec(seed=SEED, biomes=BIOMES)
    bounds = BIOMES.boundary(SEED, np.arange(0, 21))
    x0, x1 = int(bounds[0]), int(bounds[-1])
    strip = render_region(World(generator, spec), x0, -64, x1 - x0, 128).astype(np.float64)
    means = []
    for k in range(20):
        lo, hi = int(bounds[k]) - x0 + 64, int(bounds[k + 1]) - x0 - 64  # region k, its transition bands left out
        means.append(strip[:, lo:hi].reshape(-1, 3).mean(axis=0))
    means = np.array(means)
    distances = np.abs(means[:, None] - means[None]).max(axis=2)
    assert (distances[~np.eye(20, dtype=bool)] > 0.5).all()  # every pair of regions looks different
    # Smooth: the column-mean colour never steps more across a transition than the model's own largest step between
    # neighbouring columns within a single-look world.
    columns = strip.mean(axis=0)
    steps = np.abs(np.diff(columns, axis=0)).max(axis=1)
    plain = render_region(World(generator, WorldSpec(seed=SEED)), x0, -64, x1 - x0, 128).astype(np.float64)
    own = np.abs(np.diff(plain.mean(axis=0), axis=0)).max()
    assert steps.max() <= own * 1.5, (steps.max(), own)


def test_the_seam_score_across_transition_bands_is_the_models_own(generator):
    """Chunk seams inside the transition bands of 20 boundaries score like any other neighbouring pixels."""
    spec = WorldSpec(seed=SEED, biomes=BIOMES)
    cell = generator.geometry.cell_px
    ratios = []
    for boundary in BIOMES.boundary(SEED, np.arange(0, 20)):
        x0 = int(boundary) // 256 * 256 - 256  # a 768 px window whose chunk seams lie in or near the band
        pixels = render_region(World(generator, spec), x0, -256, 768, 512)
        ratios.append(seam_ratio(pixels, x0, -256, period=cell, skip_rows=(0,)))
    assert abs(float(np.mean(ratios)) - 1.0) <= 0.05, ratios


def test_explicit_styles_cycle_over_the_regions(generator):
    looks = (BiomeStyle(100, 0.7), BiomeStyle(200, 0.9))
    biomes = Biomes(region_px=512, transition_px=64, styles=looks)
    world = World(generator, WorldSpec(seed=SEED, biomes=biomes))
    for region in range(4):
        structure, texture = world.region_styles(region)
        reference = World(generator, WorldSpec(seed=looks[region % 2].seed, psi=looks[region % 2].psi))
        assert np.allclose(structure.numpy(), reference.structure_style[0].numpy())
        assert np.allclose(texture.numpy(), reference.texture_styles[0].numpy())


def test_a_student_renders_biomes_seamlessly(generator):
    """A MobileStyleGAN student takes the biomes' per-location style maps as its teacher does: across a region
    boundary a 512 render equals its quarters."""
    student = build_student(generator, "tiny-mobile")
    with torch.no_grad():
        for module in student.modules():
            if hasattr(module, "strength"):
                module.strength.fill_(0.3)
        student.texture.output_noise.weights.conv.weight.normal_()  # the output noise reads the style maps too
    whole, x0 = render_across_a_boundary(student)
    plain = render_region(World(student, WorldSpec(seed=SEED)), x0, -256, 512, 512)
    assert not np.array_equal(whole, plain)

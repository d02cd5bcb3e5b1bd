import dataclasses
import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from infinitygan import COORD_LIMIT, RegionError, World, WorldSpec, build_generator, render_region, save_generator
from infinitygan.latents import STREAM_LOCAL, normal_grid, normal_vector
from infinitygan.world import noise_images, to_uint8
from tests.model_fixtures import ARCHITECTURES, lively_tiny_generator

# (x, y) of the 512x512 test areas: the origin, and far out in the world.
AREAS = [(0, 0), (10**9, -(10**6))]


def render_as_one_window(world: World, x: int, y: int, size: int) -> np.ndarray:
    """The whole area from ONE generator call over one latent window (no chunking at all)."""
    geometry = world.geometry
    wy, wx = geometry.window_for_span(y, size), geometry.window_for_span(x, size)
    image = world.render_window(wy.start, wx.start, wy.cells, wx.cells)[0]
    top, left = y - wy.first_pixel, x - wx.first_pixel
    return to_uint8(image[:, top : top + size, left : left + size])


def assert_seamless(a: np.ndarray, b: np.ndarray) -> None:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert diff.max() <= 1, f"max difference {diff.max()} levels"
    assert (diff == 0).mean() >= 0.9999, f"only {(diff == 0).mean():.6f} of values identical"


@pytest.mark.parametrize("upsampler", ARCHITECTURES)
@pytest.mark.parametrize(("x", "y"), AREAS)
def test_512_render_equals_four_256_renders_and_one_big_window(upsampler, x, y):
    world = World(lively_tiny_generator(upsampler), WorldSpec(seed=7))
    whole = render_region(world, x, y, 512, 512)
    top = np.concatenate([render_region(world, x, y, 256, 256), render_region(world, x + 256, y, 256, 256)], axis=1)
    bottom = np.concatenate(
        [render_region(world, x, y + 256, 256, 256), render_region(world, x + 256, y + 256, 256, 256)], axis=1
    )
    quarters = np.concatenate([top, bottom], axis=0)
    # Through render_region both run the same chunk arithmetic: bit-identical.
    assert np.array_equal(whole, quarters)
    # The real seamlessness claim: one padding-free pass over the whole latent window agrees with the tiles.
    assert_seamless(render_as_one_window(world, x, y, 512), whole)


def test_unaligned_region_is_a_crop_of_a_larger_one():
    world = World(lively_tiny_generator(), WorldSpec(seed=3))
    big = render_region(world, -300, -200, 700, 500)
    part = render_region(world, -123, -57, 301, 199)
    assert np.array_equal(part, big[-57 + 200 : -57 + 200 + 199, -123 + 300 : -123 + 300 + 301])


def test_same_world_same_pixels_different_seed_different_pixels():
    generator = lively_tiny_generator()
    a = render_region(World(generator, WorldSpec(seed=11)), 0, -128, 256, 256)
    b = render_region(World(generator, WorldSpec(seed=11)), 0, -128, 256, 256)
    c = render_region(World(generator, WorldSpec(seed=12)), 0, -128, 256, 256)
    d = render_region(World(generator, WorldSpec(seed=11, mix_seed=5)), 0, -128, 256, 256)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, d)


def test_latent_values_are_pinned_golden():
    """The world's randomness is part of its identity: these values must never change."""
    grid = normal_grid(seed=1234, stream=STREAM_LOCAL, row0=-5, col0=2**36, height=2, width=3, channels=2)
    expected = torch.tensor(GOLDEN_GRID)
    assert torch.equal(grid, expected), grid.tolist()
    assert normal_vector(99, 1, 4).tolist() == GOLDEN_VECTOR


def test_latent_values_do_not_depend_on_the_window():
    big = normal_grid(42, STREAM_LOCAL, -10, 2**40 - 20, 30, 40, 4)
    small = normal_grid(42, STREAM_LOCAL, -3, 2**40 - 11, 5, 7, 4)
    assert torch.equal(small, big[:, 7:12, 9:16])


def test_latent_values_look_standard_normal():
    values = normal_grid(0, STREAM_LOCAL, 0, 0, 200, 200, 8).flatten()
    assert abs(float(values.mean())) < 0.01
    assert abs(float(values.std()) - 1.0) < 0.01
    # neighbouring cells, channels and streams are uncorrelated
    grid = normal_grid(0, STREAM_LOCAL, 0, 0, 200, 200, 2)
    assert abs(float(torch.corrcoef(torch.stack([grid[0, :, :-1].flatten(), grid[0, :, 1:].flatten()]))[0, 1])) < 0.02
    assert abs(float(torch.corrcoef(grid.flatten(1))[0, 1])) < 0.02


@pytest.mark.parametrize(
    ("x", "y", "width", "height"),
    [(0, 0, 0, 10), (0, 0, 10, -1), (COORD_LIMIT - 5, 0, 10, 10), (0, -COORD_LIMIT - 1, 1, 1), (0.5, 0, 1, 1)],
)
def test_bad_regions_are_rejected(x, y, width, height):
    world = World(lively_tiny_generator(), WorldSpec(seed=0))
    with pytest.raises(RegionError):
        render_region(world, x, y, width, height)


def test_extreme_but_valid_coordinates_render():
    world = World(lively_tiny_generator(), WorldSpec(seed=0))
    far = render_region(world, COORD_LIMIT - 16, -COORD_LIMIT, 16, 16)
    assert far.shape == (16, 16, 3)


@pytest.mark.parametrize(
    "spec",
    [
        {"seed": -1},
        {"seed": 2**63},
        {"seed": 1, "psi": float("nan")},
        {"seed": "1"},
        {"seed": 1, "psi_local": -0.01},
        {"seed": 1, "psi_local": 2.5},
        {"seed": 1, "psi_local": float("inf")},
        {"seed": 1, "psi_local": True},
        {"seed": 1, "psi_local": "0.5"},
    ],
)
def test_bad_world_specs_are_rejected(spec):
    with pytest.raises(RegionError):
        WorldSpec(**spec)


def render_in_subprocess(checkpoint, out, threads: int) -> bytes:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "infinitygan",
            "render",
            "--checkpoint",
            str(checkpoint),
            "--seed",
            "5",
            "--x",
            "-300",
            "--y",
            "-100",
            "--width",
            "400",
            "--height",
            "300",
            "--out",
            str(out),
            "--quiet",
        ],
        check=True,
        env={"OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin"},
    )
    return out.read_bytes()


def test_two_processes_render_the_same_sha256(tmp_path):
    checkpoint = save_generator(lively_tiny_generator("haar"), tmp_path / "tiny.safetensors")
    first = render_in_subprocess(checkpoint, tmp_path / "a.png", threads=2)
    second = render_in_subprocess(checkpoint, tmp_path / "b.png", threads=2)
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()


@pytest.mark.parametrize("preset", ["haar", "transposed", "tiny-mobile"])
def test_one_and_two_threads_render_the_same_png_bytes(tmp_path, preset):
    """1x1 convolutions are per-sample matrix products (layers.conv1x1): no thread-dependent summation order is left,
    for the teacher's architectures or the MobileStyleGAN student."""
    generator = build_generator(preset) if preset.endswith("mobile") else lively_tiny_generator(preset)
    with torch.no_grad():
        for module in generator.modules():
            if hasattr(module, "strength"):
                module.strength.fill_(0.3)  # noise that shows
        if generator.texture.output_noise is not None:
            generator.texture.output_noise.weights.conv.weight.normal_()
    checkpoint = save_generator(generator, tmp_path / "model.safetensors")
    one = render_in_subprocess(checkpoint, tmp_path / "one.png", threads=1)
    two = render_in_subprocess(checkpoint, tmp_path / "two.png", threads=2)
    assert one == two


GOLDEN_GRID = [
    [
        [0.21719349920749664, -0.10180450230836868, -1.1607087850570679],
        [0.7697445750236511, -1.0632386207580566, -0.17718000710010529],
    ],
    [
        [-1.431420922279358, 0.18175221979618073, 0.2148677557706833],
        [0.39143988490104675, 0.545098066329956, -0.2301437109708786],
    ],
]
GOLDEN_VECTOR = [0.5395479798316956, -1.3843244314193726, 0.41073304414749146, 1.5443520545959473]


def test_psi_local_scales_z_l_and_nothing_else():
    """psi_local truncates the local latents; 1 is bit-for-bit what the generator draws untruncated."""
    generator = lively_tiny_generator("transposed")
    base = World(generator, WorldSpec(seed=9, psi_local=1.0))
    window = base.chunk_window(0, -1)
    full = base.window_inputs(*window, every_noise=True)
    m, (rows, cols) = generator.geometry.structure_margin, full.local_latents.shape[-2:]
    drawn = normal_grid(9, STREAM_LOCAL, window[0] - m, window[1] - m, rows, cols, generator.config.local_dim)
    assert torch.equal(full.local_latents[0], drawn)  # untruncated: the hashed z_l as it is
    for psi_local in (0.0, 0.4, 1.7):
        truncated = World(generator, WorldSpec(seed=9, psi_local=psi_local))
        inputs = truncated.window_inputs(*window, every_noise=True)
        assert torch.equal(inputs.local_latents, full.local_latents * psi_local)
        assert torch.equal(inputs.coords, full.coords)
        for noise, untruncated in zip(inputs.noises, full.noises, strict=True):
            assert torch.equal(noise, untruncated)  # the noise is not truncated
        assert torch.equal(truncated.texture_styles, base.texture_styles)  # psi's job, not psi_local's
    calm = render_region(World(generator, WorldSpec(seed=9, psi_local=0.4)), 0, 0, 128, 128)
    assert np.abs(calm.astype(int) - render_region(base, 0, 0, 128, 128)).mean() > 1


def test_noise_a_generator_does_not_read_is_not_hashed_and_changes_nothing():
    """A render hashes only the noise images its generator reads (noise-free stages read none)."""
    from infinitygan.config import preset_config

    generator = build_generator(dataclasses.replace(preset_config("tiny-mobile"), noise_free_stages=2))
    with torch.no_grad():
        generator.texture.output_noise.weights.conv.weight.normal_()
        for module in generator.modules():
            if hasattr(module, "strength"):
                module.strength.fill_(0.3)
    reads = generator.texture.noise_reads
    assert len(reads) == generator.texture.num_noises and reads[-1] and not reads[0] and reads[-2]
    world = World(generator, WorldSpec(seed=4))
    window = world.chunk_window(0, 1)
    lean, full = world.window_inputs(*window), world.window_inputs(*window, every_noise=True)
    for read, noise, every in zip(reads, lean.noises, full.noises, strict=True):
        assert noise.numel() == (every.numel() if read else 0)
    with torch.no_grad():
        styles = (world.structure_style, world.texture_styles)
        assert torch.equal(generator(lean, *styles), generator(full, *styles))
    with pytest.raises(ValueError, match="one flag per noise image"):
        noise_images(generator.geometry, 4, 0, 0, 9, 9, read=(True,))

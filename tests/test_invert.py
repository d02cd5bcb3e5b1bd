from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infinitygan import RegionError, World, WorldSpec, render_region
from infinitygan.anchor import Anchor
from infinitygan.invert import InversionConfig, invert_photo, place_photo, psnr
from tests.model_fixtures import lively_tiny_generator

PHOTO = Path(__file__).parent / "fixtures" / "picosdeeuropa_341x256.jpg"


@pytest.fixture(scope="module")
def inverted():
    """A photo pinned into a world with a finite reach (its look fades out within 192 px)."""
    generator = lively_tiny_generator()
    photo, footprint = place_photo(np.asarray(Image.open(PHOTO).convert("RGB")), scene_height=128)
    spec = WorldSpec(seed=21)
    anchor, report = invert_photo(generator, spec, photo, footprint, InversionConfig(steps=25, reach_px=192))
    return generator, spec, anchor, report


@pytest.fixture(scope="module")
def unbounded():
    """The default: the photo's look governs the whole world."""
    generator = lively_tiny_generator()
    photo, footprint = place_photo(np.asarray(Image.open(PHOTO).convert("RGB")), scene_height=128)
    spec = WorldSpec(seed=21)
    anchor, report = invert_photo(generator, spec, photo, footprint, InversionConfig(steps=25))
    return generator, spec, anchor, report


def test_place_photo_scales_to_the_native_scene_height_and_centres_on_the_horizon():
    photo = np.zeros((683, 1024, 3), dtype=np.uint8)
    resized, footprint = place_photo(photo, scene_height=256)
    assert resized.shape == (256, 384, 3)
    assert (footprint.x, footprint.y, footprint.width, footprint.height) == (-192, -128, 384, 256)


def test_inversion_improves_the_generators_own_reconstruction(inverted):
    generator, spec, anchor, report = inverted
    fp = anchor.footprint
    target = torch.from_numpy(anchor.photo.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    before = render_region(World(generator, spec), fp.x, fp.y, fp.width, fp.height)
    before_psnr = psnr(torch.from_numpy(before).permute(2, 0, 1)[None].float() / 127.5 - 1, target)
    assert report.reconstruction_psnr > before_psnr + 1.0, (before_psnr, report.reconstruction_psnr)


def test_place_photo_puts_the_given_horizon_row_on_the_worlds_horizon():
    photo = np.zeros((683, 1024, 3), dtype=np.uint8)
    for horizon, top in ((0.0, 0), (0.3, -77), (0.5, -128), (1.0, -256)):
        _, footprint = place_photo(photo, scene_height=256, horizon=horizon)
        assert footprint.y == top
    with pytest.raises(ValueError, match="horizon"):
        place_photo(photo, scene_height=256, horizon=1.5)


def test_served_pixels_show_the_photo_where_its_weight_is_full(inverted):
    generator, spec, anchor, _ = inverted
    fp = anchor.footprint
    served = render_region(World(generator, spec, anchor), fp.x, fp.y, fp.width, fp.height)
    full = anchor.weight == 1.0
    assert full.mean() > 0.3, full.mean()  # the middle of the photo is shown as it is, even for a poor fit ...
    assert np.array_equal(served[full], anchor.photo[full])
    edges = np.concatenate([anchor.weight[0], anchor.weight[-1], anchor.weight[:, 0], anchor.weight[:, -1]])
    assert edges.max() < 0.2  # ... and it fades into the world at its frame


def test_the_photo_fades_in_over_a_band_that_follows_the_reconstruction_error():
    from infinitygan.invert import confidence_weight

    config = InversionConfig(min_band_px=8, max_band_px=64)
    photo = np.full((256, 512, 3), 120, dtype=np.uint8)
    exact = confidence_weight(photo, photo.copy(), None, config)
    poor = confidence_weight(photo, np.zeros_like(photo), None, config)
    assert exact[128, 16] == 1.0 and poor[128, 16] < 0.5  # 16 px in: a good fit is fully shown, a poor one fading
    assert exact[128, 0] < 0.1 and poor[128, 0] < 0.1 and poor[128, 256] == 1.0
    assert (poor <= exact + 1e-12).all()
    transparent = np.ones((256, 512))
    transparent[:80] = 0.0  # a transparent sky
    masked = confidence_weight(photo, photo.copy(), transparent, config)
    assert (masked[:80] == 0).all() and masked[120, 256] == 1.0 and masked[81, 256] < 0.5


def test_an_unbounded_reach_carries_the_photos_look_everywhere_and_stays_seamless(unbounded):
    generator, spec, anchor, _ = unbounded
    assert anchor.reach(generator.geometry) is None
    base, anchored = World(generator, spec), World(generator, spec, anchor)
    far_x = anchor.footprint.x + 5000
    far_base, far_anchored = render_region(base, far_x, -128, 256, 256), render_region(anchored, far_x, -128, 256, 256)
    assert not np.array_equal(far_base, far_anchored)
    # Any tile renders alone and stitches exactly: a 512 render equals its four quarters, across the photo's edge.
    x0, y0 = anchor.footprint.x + anchor.footprint.width - 256, -256
    whole = render_region(anchored, x0, y0, 512, 512)
    for dy in (0, 256):
        for dx in (0, 256):
            assert np.array_equal(
                whole[dy : dy + 256, dx : dx + 256], render_region(anchored, x0 + dx, y0 + dy, 256, 256)
            )


def test_transparent_pixels_are_filled_by_the_world_not_fitted():
    """An upload with a transparent sky: the fit ignores those pixels (whatever colour they carry), and the served
    sky is the world's own: no black or white slab."""
    generator = lively_tiny_generator()
    rgb = np.asarray(Image.open(PHOTO).convert("RGB")).copy()
    alpha = np.full(rgb.shape[:2], 255, dtype=np.uint8)
    alpha[: rgb.shape[0] // 3] = 0
    spec, config = WorldSpec(seed=21), InversionConfig(steps=6)
    fits = []
    for fill in (0, 255):  # the colour under the transparent pixels must not matter
        rgb[: rgb.shape[0] // 3] = fill
        photo, footprint, opacity = place_photo(rgb, 128, alpha=alpha)
        fits.append(invert_photo(generator, spec, photo, footprint, config, opacity=opacity)[0])
    assert fits[0].weight is not None and np.array_equal(fits[0].weight, fits[1].weight)
    for name in ("structure_style", "texture_styles"):
        assert torch.allclose(getattr(fits[0], name), getattr(fits[1], name), atol=1e-4), name
    fp = fits[0].footprint
    served = render_region(World(generator, spec, fits[0]), fp.x, fp.y, fp.width, fp.height)
    sky = served[: fp.height // 3 - 4]
    assert (fits[0].weight[: fp.height // 3 - 4] == 0).all()
    assert 15 < sky.mean() < 240 and sky.std() > 2  # not a black, white or flat slab


def test_the_same_photo_inverts_to_the_same_anchor():
    generator = lively_tiny_generator()
    photo, footprint = place_photo(np.asarray(Image.open(PHOTO).convert("RGB")), scene_height=128)
    runs = [invert_photo(generator, WorldSpec(seed=3), photo, footprint, InversionConfig(steps=4))[0] for _ in "ab"]
    area = (footprint.x - 64, footprint.y - 64, footprint.width + 128, footprint.height + 128)
    tiles = [render_region(World(generator, WorldSpec(seed=3), Anchor.from_bytes(a.to_bytes())), *area) for a in runs]
    assert np.array_equal(tiles[0], tiles[1])
    assert torch.equal(runs[0].texture_styles, runs[1].texture_styles)
    assert np.array_equal(runs[0].weight, runs[1].weight)


def test_the_horizon_is_estimated_from_the_photo_or_taken_as_given_and_the_best_start_is_fitted():
    from infinitygan.invert import estimate_horizon, outpaint_photo, start_styles

    # A bright sky over darker ground: the split is found; a photo without one is centred.
    photo = np.full((300, 400, 3), 60, dtype=np.uint8)
    photo[:90] = 200
    photo += np.random.default_rng(0).integers(0, 20, photo.shape, dtype=np.uint8)
    assert abs(estimate_horizon(photo)[0] - 0.3) < 0.01
    assert estimate_horizon(np.full((300, 400, 3), 90, dtype=np.uint8))[0] == 0.5
    # Transparent rows do not count: a transparent sky leaves no split to find.
    opacity = np.ones((300, 400))
    opacity[:90] = 0.0
    assert estimate_horizon(photo, opacity)[0] == 0.5

    generator = lively_tiny_generator()
    rgb = np.asarray(Image.open(PHOTO).convert("RGB"))
    config = InversionConfig(steps=2, starts=3)
    anchor, report = outpaint_photo(generator, WorldSpec(seed=3), rgb, 128, config)
    assert report.horizon == estimate_horizon(rgb)[0] and anchor.footprint.y == -round(report.horizon * 128)
    assert len(report.start_scores) == 3 and anchor.metadata["start"] == int(np.argmin(report.start_scores))
    given, given_report = outpaint_photo(generator, WorldSpec(seed=3), rgb, 128, config, horizon=0.3)
    assert given_report.horizon == 0.3 and given.footprint.y == -38
    with pytest.raises(ValueError, match="horizon"):
        outpaint_photo(generator, WorldSpec(seed=3), rgb, 128, config, horizon=1.2)
    # Without a sky/ground split the horizon is found by trial fits: centred, above the frame, or below it.
    from infinitygan.invert import HORIZONS_WITHOUT_SPLIT

    texture = np.random.default_rng(1).integers(60, 120, (200, 200, 3), dtype=np.uint8)
    flat_anchor, flat = outpaint_photo(generator, WorldSpec(seed=3), texture, 128, config)
    assert flat.horizon in HORIZONS_WITHOUT_SPLIT and flat_anchor.footprint.y == -round(flat.horizon * 128)
    for candidate in HORIZONS_WITHOUT_SPLIT:  # the chosen one fits at least as well as each other at its best
        other = outpaint_photo(generator, WorldSpec(seed=3), texture, 128, config, horizon=candidate)[1]
        assert min(flat.start_scores) <= min(other.start_scores) + 1e-9
    # Starts are reproducible functions of the world: 0 is the world's own styles, others hashed from its seed.
    own, other = start_styles(generator, WorldSpec(seed=3), 0), start_styles(generator, WorldSpec(seed=3), 1)
    assert torch.equal(own[0], World(generator, WorldSpec(seed=3)).structure_style[0])
    assert not torch.equal(own[1], other[1])
    assert torch.equal(other[1], start_styles(generator, WorldSpec(seed=3), 1)[1])


def test_anchors_of_the_first_format_still_load_and_render():
    """Worlds outpainted before the per-pixel weight (format /1) keep their reach and feather."""
    import json

    from safetensors.torch import load, save

    generator = lively_tiny_generator()
    photo, footprint = place_photo(np.asarray(Image.open(PHOTO).convert("RGB")), scene_height=128)
    anchor, _ = invert_photo(generator, WorldSpec(seed=3), photo, footprint, InversionConfig(steps=2, reach_px=150))
    data = anchor.to_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])["__metadata__"]
    tensors = load(data)
    del tensors["weight"], header["reach_px"]
    header.update({"format": "infinitygan.anchor/1", "blend_px": "192", "feather_px": "12"})
    old = Anchor.from_bytes(save(tensors, metadata=header))
    assert old.reach_px == 192 and old.weight[12, 12] == 1.0 and 0 < old.weight[0, 40] < 0.1


def test_far_tiles_equal_the_base_world_and_near_tiles_change(inverted):
    generator, spec, anchor, _ = inverted
    base, anchored = World(generator, spec), World(generator, spec, anchor)
    reach = anchor.reach(generator.geometry)
    far_x = reach.x + reach.width + 300
    assert np.array_equal(render_region(base, far_x, -128, 256, 256), render_region(anchored, far_x, -128, 256, 256))
    near_x = anchor.footprint.x + anchor.footprint.width + 8
    assert not np.array_equal(render_region(base, near_x, -64, 64, 64), render_region(anchored, near_x, -64, 64, 64))


def test_anchor_survives_serialisation(inverted):
    generator, spec, anchor, _ = inverted
    restored = Anchor.from_bytes(anchor.to_bytes())
    fp = anchor.footprint
    area = (fp.x - 100, fp.y - 100, fp.width + 200, fp.height + 200)
    assert np.array_equal(
        render_region(World(generator, spec, anchor), *area), render_region(World(generator, spec, restored), *area)
    )
    with pytest.raises(ValueError):
        Anchor.from_bytes(lively_tiny_checkpoint_bytes())


def lively_tiny_checkpoint_bytes() -> bytes:
    from safetensors.torch import save

    return save({"x": torch.zeros(1)}, metadata={"format": "something else"})


def test_a_finite_reach_blends_back_to_the_base_world_seamlessly(inverted):
    """Across the border of the anchor's reach, anchored rendering meets the base world without a seam."""
    generator, spec, anchor, _ = inverted
    reach = anchor.reach(generator.geometry)
    anchored = render_region(World(generator, spec, anchor), reach.x + reach.width - 300, -128, 600, 256)
    base = render_region(World(generator, spec), reach.x + reach.width - 300, -128, 600, 256)
    assert np.array_equal(anchored[:, 400:], base[:, 400:])


def test_the_continuation_term_pulls_the_worlds_colours_beside_the_photo_toward_the_photos():
    """On the shipped model (a tiny random one fits the photo's colours with its noise and styles alike, so it
    cannot tell): issue 13's continuation score, with the term against without it. (The low-gain model: 0.70 ->
    0.60 in these 15 steps; bench_outpaint measures full inversions.)"""
    from infinitygan import load_generator
    from infinitygan.evaluate import continuation_score

    model = load_generator(None)
    photo, footprint = place_photo(np.asarray(Image.open(PHOTO).convert("RGB")), scene_height=model.scene_height)
    spec = WorldSpec(seed=8)
    scores = []
    for weight in (0.0, 3.0):
        config = InversionConfig(steps=15, continuation_weight=weight)
        anchor, _ = invert_photo(model.generator, spec, photo, footprint, config)
        scores.append(continuation_score(model.generator, spec, anchor)["score"])
    assert scores[1] < 0.9 * scores[0], scores


def test_a_photo_with_a_reach_sits_in_a_biome_world(inverted, unbounded):
    """Biomes beyond the photo's reach: far tiles are the biome world's; across the photo's region boundaries the
    world still stitches bit for bit (a 512 render equals its quarters); an unbounded anchor refuses biomes."""
    from infinitygan.biomes import Biomes

    generator, spec, anchor, _ = inverted
    biome_spec = WorldSpec(seed=spec.seed, psi=spec.psi, biomes=Biomes(region_px=512, transition_px=128))
    world, biomes_only = World(generator, biome_spec, anchor), World(generator, biome_spec)
    reach = anchor.reach(generator.geometry)
    far_x = reach.x + reach.width + 700
    far = (far_x, -128, 512, 256)
    assert np.array_equal(render_region(world, *far), render_region(biomes_only, *far))
    fp = anchor.footprint
    near = (fp.x + fp.width + 8, -64, 64, 64)
    assert not np.array_equal(render_region(world, *near), render_region(biomes_only, *near))
    assert not np.array_equal(render_region(world, *near), render_region(World(generator, spec, anchor), *near))
    x0, y0 = fp.x // 256 * 256, -256
    whole = render_region(world, x0, y0, 512, 512)
    for dy in (0, 256):
        for dx in (0, 256):
            assert np.array_equal(whole[dy : dy + 256, dx : dx + 256], render_region(world, x0 + dx, y0 + dy, 256, 256))
    with pytest.raises(RegionError, match="reach"):
        World(generator, biome_spec, unbounded[2])


def test_the_sliced_colour_distance_is_zero_for_the_same_colours_and_pulls_toward_them():
    from infinitygan.invert import colour_projections, sliced_colour_distance

    rng = torch.Generator().manual_seed(0)
    projections = colour_projections(rng)
    reference = torch.rand(3, 500, generator=rng)
    shuffled = reference[:, torch.randperm(500, generator=rng)]
    assert float(sliced_colour_distance(shuffled, reference, projections)) == pytest.approx(0.0, abs=1e-6)
    subsample = reference[:, ::5]  # fewer pixels than the reference: compared at matching quantiles
    assert float(sliced_colour_distance(subsample, reference, projections)) < 0.05
    pixels = (reference[:, :200] + 0.3).requires_grad_(True)
    distance = sliced_colour_distance(pixels, reference, projections)
    assert float(distance.detach()) > 0.1
    distance.backward()
    stepped = pixels.detach() - 50.0 * pixels.grad
    assert float(sliced_colour_distance(stepped, reference, projections)) < float(distance.detach())


def test_the_fitted_noise_stays_over_the_photo(unbounded):
    """Noise elements outside the photo's footprint keep the world's hashed values (free noise there drew a bright
    seam along the photo's edge); inside they are fitted."""
    from infinitygan.invert import inversion_windows

    generator, spec, anchor, _ = unbounded
    fp = anchor.footprint
    base = World(generator, spec)
    wy, wx = inversion_windows(generator.geometry, fp, InversionConfig(steps=25))
    base_noises = base.window_inputs(wy.start, wx.start, wy.cells, wx.cells, every_noise=True).noises
    changed_inside = 0
    for layer, (override, noise) in enumerate(zip(anchor.noises, base_noises, strict=True)):
        fitted, original = override.values, noise[0, 0]
        assert fitted.shape == original.shape
        rows = base.layer_positions(layer, wy.start, fitted.shape[0])
        cols = base.layer_positions(layer, wx.start, fitted.shape[1])
        outside = ~np.outer(
            (rows >= fp.y - 0.5) & (rows < fp.y + fp.height - 0.5),
            (cols >= fp.x - 0.5) & (cols < fp.x + fp.width - 0.5),
        )
        assert outside.any()
        assert torch.equal(fitted[torch.from_numpy(outside)], original[torch.from_numpy(outside)]), layer
        changed_inside += int((fitted != original)[torch.from_numpy(~outside)].sum())
    assert changed_inside > 0

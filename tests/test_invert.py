from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infinitygan import World, WorldSpec, render_region
from infinitygan.anchor import Anchor
from infinitygan.invert import InversionConfig, invert_photo, place_photo, psnr
from tests.model_fixtures import lively_tiny_generator

PHOTO = Path(__file__).parent / "fixtures" / "picosdeeuropa_341x256.jpg"


@pytest.fixture(scope="module")
def inverted():
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


def test_served_pixels_show_the_photo_inside_the_footprint(inverted):
    generator, spec, anchor, _ = inverted
    fp, band = anchor.footprint, anchor.feather_px + 1
    served = render_region(World(generator, spec, anchor), fp.x, fp.y, fp.width, fp.height)
    inner = (slice(band, -band), slice(band, -band))
    assert np.array_equal(served[inner], anchor.photo[inner])


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


def test_unfitted_anchor_blends_back_to_the_base_world_seamlessly(inverted):
    """Across the border of the anchor's reach, anchored rendering meets the base world without a seam."""
    generator, spec, anchor, _ = inverted
    reach = anchor.reach(generator.geometry)
    anchored = render_region(World(generator, spec, anchor), reach.x + reach.width - 300, -128, 600, 256)
    base = render_region(World(generator, spec), reach.x + reach.width - 300, -128, 600, 256)
    assert np.array_equal(anchored[:, 400:], base[:, 400:])

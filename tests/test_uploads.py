"""Decoding uploaded photos (tiles/uploads.py) on real encoded images: every mode reaches the model with the right
tones, and any failure in the image's metadata is the client's error (BadImage -> 400), never a 500."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from tiles.errors import BadImage
from tiles.uploads import decode_photo


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    return decode_photo(data, max_bytes=10**7, max_pixels=10**7)


def test_sixteen_bit_greyscale_png_keeps_its_tones():
    """Was white: Pillow's I;16 -> RGB conversion clips every value above 255."""
    ramp = np.arange(0, 65536, 4096, dtype=np.uint16)[None, :].repeat(8, 0)
    pixels = decode(encode(Image.fromarray(ramp)))
    assert pixels.shape == (8, 16, 3) and pixels.dtype == np.uint8
    expected = np.round(ramp[0].astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(pixels[0, :, 0], expected)
    assert pixels[0, 8, 0] == 128  # mid-grey stays mid-grey


@pytest.mark.parametrize(
    ("image", "fmt", "expected"),
    [
        (Image.new("L", (4, 4), 77), "PNG", (77, 77, 77)),
        (Image.new("LA", (4, 4), (77, 255)), "PNG", (77, 77, 77)),
        (Image.new("1", (4, 4), 1), "PNG", (255, 255, 255)),
        (Image.new("RGB", (4, 4), (12, 200, 30)).quantize(8), "PNG", (12, 200, 30)),
        (Image.new("RGBA", (8, 8), (200, 100, 50, 255)), "WEBP", (200, 100, 50)),
        (Image.new("RGB", (8, 8), (200, 100, 50)).convert("CMYK"), "JPEG", (200, 100, 50)),
    ],
    ids=["L", "LA", "1", "P", "RGBA-webp", "CMYK-jpeg"],
)
def test_every_mode_reaches_the_model_as_rgb_with_its_tones(image, fmt, expected):
    options = {"lossless": True} if fmt == "WEBP" else {"quality": 100} if fmt == "JPEG" else {}
    pixels = decode(encode(image, fmt, **options))
    assert pixels.dtype == np.uint8 and pixels.shape[2] == 3
    assert np.abs(pixels.astype(int) - np.array(expected)).max() <= 2


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (20, 10), (100, 50, 25))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    assert decode(encode(image, "JPEG", exif=exif.tobytes())).shape == (20, 10, 3)


def test_metadata_that_cannot_be_applied_is_a_bad_image(monkeypatch):
    """Pillow 13 survives every malformed EXIF block we built (ASCII/float/rational orientations, offsets past the
    end, self-referencing IFDs); older Pillows raised TypeError, KeyError or struct.error from exif_transpose. Any
    exception from metadata handling must become BadImage (a 400), whatever its type."""
    data = encode(Image.new("RGB", (8, 8)), "JPEG")

    def broken(image):
        raise TypeError("'<' not supported between instances of 'tuple' and 'int'")

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    with pytest.raises(BadImage, match="EXIF metadata cannot be applied"):
        decode(data)

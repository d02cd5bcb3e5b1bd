"""Checking an uploaded photo before anything is stored: format, size in bytes and pixels, and a full decode.

The pixel count comes from the header, before any decoding, so a small file that would decode to gigabytes (a
decompression bomb) is refused without allocating them. No warnings filters are touched (they are process-global and
this runs in worker threads): the configured pixel limit is below Pillow's warning threshold by default.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tiles.errors import BadImage, UnprocessableImage, UnsupportedImage, UploadTooLarge

ACCEPTED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
MAX_ASPECT = 4.0


def check_aspect(width: int, height: int, max_aspect: float) -> None:
    """UnprocessableImage unless 1/max_aspect <= width/height <= max_aspect.

    The job scales the photo to one scene tall, so its footprint (and inversion time and memory) grows with
    width/height: a 421-byte 10000x10 PNG became a 256,000 px wide footprint. Tall photos shrink to a sliver."""
    if width * max_aspect < height or height * max_aspect < width:
        raise UnprocessableImage(
            f"the image is {width}x{height}: aspect ratios from 1:{max_aspect:g} to {max_aspect:g}:1 are accepted; "
            "crop it first"
        )


def decode_photo(data: bytes, *, max_bytes: int, max_pixels: int, max_aspect: float = MAX_ASPECT) -> np.ndarray:
    """The upload as uint8 (H, W, 3) RGB, upright per its EXIF orientation; raises UploadTooLarge,
    UnsupportedImage, UnprocessableImage (aspect ratio, from the header, before decoding) or BadImage."""
    return decode_photo_alpha(data, max_bytes=max_bytes, max_pixels=max_pixels, max_aspect=max_aspect)[0]


def decode_photo_alpha(
    data: bytes, *, max_bytes: int, max_pixels: int, max_aspect: float = MAX_ASPECT
) -> tuple[np.ndarray, np.ndarray | None]:
    """(RGB uint8 (H, W, 3), opacity uint8 (H, W) or None when every pixel is opaque), upright per the EXIF
    orientation. Any mode that carries transparency counts: RGBA, LA, PA, palette images with a transparent index,
    RGB/L with a transparent colour. Raises as decode_photo does, and BadImage when no pixel is opaque."""
    if not data:
        raise BadImage("the upload is empty")
    if len(data) > max_bytes:
        raise UploadTooLarge(f"the upload is {len(data)} bytes; the limit is {max_bytes}")
    with _opened(data) as image:
        width, height = image.size
        if width * height > max_pixels:
            raise UploadTooLarge(f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels")
        check_aspect(width, height, max_aspect)
        image.load()
        rgb, alpha = _upright_rgb_alpha(image)
    if min(rgb.size) < 1:
        raise BadImage("the image has no pixels")
    if alpha is not None and not alpha.any():
        raise BadImage("the image is entirely transparent: there is nothing to continue")
    return np.asarray(rgb), alpha


SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


def _upright_rgb_alpha(image: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    """8-bit RGB and its opacity (None when fully opaque), turned upright per the EXIF orientation; BadImage when
    the metadata cannot be applied.

    16-bit greyscale PNGs decode to Pillow's integer modes, whose plain convert("RGB") clips everything above 255 to
    white: they are scaled from 0..65535 to 0..255 instead. Every other mode (1, L, LA, P, PA, RGBA, CMYK, ...) has
    an exact 8-bit conversion."""
    try:
        image = ImageOps.exif_transpose(image)
    except Exception as exc:  # noqa: BLE001 - any failure in third-party metadata parsing is the upload's fault
        raise BadImage(f"the image's EXIF metadata cannot be applied ({type(exc).__name__}: {exc})") from None
    alpha = None
    if image.has_transparency_data:
        alpha = np.asarray(image.convert("RGBA").getchannel("A"))
        if alpha.min() == 255:
            alpha = None
    if image.mode in SIXTEEN_BIT_MODES:
        levels = np.asarray(image, dtype=np.float64) * (255.0 / 65535.0)
        image = Image.fromarray(np.clip(np.round(levels), 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB"), alpha


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding its pixels; UnsupportedImage or BadImage."""
    with _opened(data) as image:
        return image.size


@contextlib.contextmanager
def _opened(data: bytes) -> Iterator[Image.Image]:
    """The upload opened by Pillow (accepted formats only), with every decoder failure inside the block turned into
    UploadTooLarge, UnsupportedImage or BadImage."""
    try:
        with Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS)) as image:
            yield image
    except Image.DecompressionBombError as exc:
        # Pillow's own guard (Image.MAX_IMAGE_PIXELS, left at its default) fires in open() on headers claiming more
        # than twice that limit, before our check can read the size; it is the same refusal.
        raise UploadTooLarge(f"the image has too many pixels: {exc}") from None
    except UnidentifiedImageError:
        raise UnsupportedImage("not a PNG, JPEG or WebP image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncated or corrupt data with any of these, depending on the codec.
        raise BadImage(f"the image cannot be decoded: {exc}") from None

"""Domain errors of the tile layer; app/errors.py maps each one to an HTTP status in a single table."""

from __future__ import annotations


class TileError(Exception):
    """Base class: a tile request that cannot be served as asked."""


class ZoomOutOfRange(TileError):
    """The zoom level is not one this server renders (above native zoom Leaflet scales client-side)."""


class TileOutOfBounds(TileError):
    """The tile reaches past the world's coordinate limit."""


class UnknownWorld(TileError):
    """No world with this id exists (or it belongs to another model)."""


class WorldStoreUnavailable(TileError):
    """The world store (Redis) cannot be reached, so a world can be neither created nor looked up."""


class RenderQueueFull(TileError):
    """Too many tiles are waiting to be rendered; the client should retry later."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UploadTooLarge(TileError):
    """An uploaded photo has more bytes, or more pixels, than the service accepts."""


class UnsupportedImage(TileError):
    """An upload that is not an image in one of the accepted formats (PNG, JPEG, WebP)."""


class UnprocessableImage(TileError):
    """A decodable image whose shape the service will not work on: its aspect ratio would make the job's footprint
    (the photo scaled to one scene tall) and so its time and memory unbounded."""


class BadImage(TileError):
    """An upload in an accepted format that cannot be used: empty, truncated or corrupt."""


class UnknownJob(TileError):
    """No outpainting job with this id exists."""


class NotAnchored(TileError):
    """The world has no photo anchor, so it has nothing to preview."""


class UnknownPartnerModel(TileError):
    """A world names a layer-swapping partner model this server does not have."""

"""Domain exception -> HTTP status, in one table; every error body is JSON {"detail": ...}."""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from infinitygan.world import RegionError
from tiles.errors import (
    BadImage,
    NotAnchored,
    RenderQueueFull,
    TileOutOfBounds,
    UnknownJob,
    UnknownPartnerModel,
    UnknownWorld,
    UnprocessableImage,
    UnsupportedImage,
    UploadTooLarge,
    WorldStoreUnavailable,
    ZoomOutOfRange,
)

log = logging.getLogger(__name__)

ERROR_STATUS: dict[type[Exception], int] = {
    ZoomOutOfRange: 404,
    UnknownWorld: 404,
    UnknownJob: 404,
    NotAnchored: 404,
    UploadTooLarge: 413,  # too many bytes, or too many pixels (a decompression bomb)
    UnsupportedImage: 415,
    BadImage: 400,  # empty, truncated or corrupt
    UnprocessableImage: 422,  # an aspect ratio past the limit: the job's cost would be unbounded
    TileOutOfBounds: 400,
    RegionError: 422,  # world parameters (seed, psi) the model cannot use
    UnknownPartnerModel: 422,  # a blend naming a partner model this server does not have
    RenderQueueFull: 503,
    WorldStoreUnavailable: 503,
}
RETRY_AFTER_S = 2


def _handler(status: int):
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        headers = {}
        if status == 503:
            headers["Retry-After"] = str(getattr(exc, "retry_after_s", None) or RETRY_AFTER_S)
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    return handle


def _json_safe(value: object) -> object:
    """Validation errors echo the input; NaN or Infinity in it must not turn a 422 into a 500 at JSON encoding."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))}, status_code=422)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=500, headers={"Cache-Control": "no-store"})


def add_exception_handlers(app: FastAPI) -> None:
    for exc_type, status in ERROR_STATUS.items():
        app.add_exception_handler(exc_type, _handler(status))
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _unexpected)

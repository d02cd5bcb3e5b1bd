"""Reading the POST /outpaint form with a hard cap on the body, counted while it streams in.

FastAPI's own form parameters would spool the whole body before any check runs; here an oversize upload is refused
from its Content-Length, or as soon as the streamed bytes pass the cap, before it is parsed further.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.schemas import OutpaintParams
from tiles.errors import BadImage, UnsupportedImage, UploadTooLarge

MULTIPART_OVERHEAD = 64 * 1024  # part headers, boundaries and the small text fields around the image
IMAGE_FIELD = "image"


async def read_outpaint_form(request: Request, max_image_bytes: int) -> tuple[bytes, OutpaintParams]:
    """(image bytes, parameters); raises UploadTooLarge, UnsupportedImage, BadImage or RequestValidationError."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UnsupportedImage(f"send the photo as the multipart/form-data field {IMAGE_FIELD!r}")
    limit = max_image_bytes + MULTIPART_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge(f"the request is {declared} bytes; images up to {max_image_bytes} bytes are accepted")

    async def capped() -> AsyncIterator[bytes]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise UploadTooLarge(f"the request passed {limit} bytes; images up to {max_image_bytes} are accepted")
            yield chunk

    try:
        form = await MultiPartParser(request.headers, capped(), max_files=1, max_fields=8).parse()
    except MultiPartException as exc:
        raise BadImage(f"malformed multipart body: {exc.message}") from None
    try:
        upload = form.get(IMAGE_FIELD)
        if not isinstance(upload, UploadFile):
            raise RequestValidationError(
                [{"type": "missing", "loc": ("body", IMAGE_FIELD), "msg": "a file field is required", "input": None}]
            )
        image = await upload.read()
        fields = {key: value for key, value in form.multi_items() if key != IMAGE_FIELD}
        try:
            params = OutpaintParams.model_validate(fields)
        except ValidationError as exc:
            errors = [
                {**error, "loc": ("body", *error["loc"])}
                for error in exc.errors(include_url=False, include_context=False)
            ]
            raise RequestValidationError(errors) from None
    finally:
        await form.close()
    return image, params

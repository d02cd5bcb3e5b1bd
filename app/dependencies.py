"""Request parameters and app resources, parsed and validated once for every route that needs them."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Path, Request
from pydantic import BeforeValidator

from app.resources import Resources
from tiles.worlds import WorldRecord


# Every dependency is async: FastAPI runs plain functions in a worker thread (a thread hop per request each).
async def get_resources(request: Request) -> Resources:
    return request.app.state.resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]*)")


def _canonical_int(value: object) -> object:
    # One URL per tile: "05", "+5", "5.0" or " 5" would otherwise parse to 5 and duplicate cache entries downstream.
    if isinstance(value, str) and not _CANONICAL_INT.fullmatch(value):
        raise ValueError("must be an integer written in decimal without sign, leading zeros or spaces")
    return value


TileIndex = Annotated[int, BeforeValidator(_canonical_int)]


async def world_record(world: Annotated[str, Path(description="world id")], resources: ResourcesDep) -> WorldRecord:
    return await resources.worlds.get(world)


async def default_world(resources: ResourcesDep) -> WorldRecord:
    return resources.worlds.default


WorldDep = Annotated[WorldRecord, Depends(world_record)]
DefaultWorldDep = Annotated[WorldRecord, Depends(default_world)]

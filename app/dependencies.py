"""Request parameters and app resources, parsed and validated once for every route that needs them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from app.resources import Resources
from tiles.geometry import TileAddress
from tiles.worlds import WorldRecord


def get_resources(request: Request) -> Resources:
    return request.app.state.resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def tile_address(
    z: Annotated[int, Path(description="zoom")],
    x: Annotated[int, Path(description="column; grows right, may be negative")],
    y: Annotated[int, Path(description="row; grows down, may be negative")],
) -> TileAddress:
    return TileAddress(z, x, y)


async def world_record(world: Annotated[str, Path(description="world id")], resources: ResourcesDep) -> WorldRecord:
    return await resources.worlds.get(world)


def default_world(resources: ResourcesDep) -> WorldRecord:
    return resources.worlds.default


TileDep = Annotated[TileAddress, Depends(tile_address)]
WorldDep = Annotated[WorldRecord, Depends(world_record)]
DefaultWorldDep = Annotated[WorldRecord, Depends(default_world)]

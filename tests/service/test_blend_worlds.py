"""Layer-swapped worlds by URL: a partner model (a fine-tune of the served one) supplies the finer layers."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from app.resources import load_partners
from infinitygan import World, WorldSpec, load_generator, render_region, save_generator
from infinitygan.blend import blend_generators
from infinitygan.checkpoint import MODELS, SHIPPED_MODEL, TEACHER_MODEL, CheckpointError
from tests.service.conftest import LiveServer, service_settings


def test_a_blended_world_renders_the_blend_and_unknown_partners_are_refused(
    redis_url: str, tiny_model: Path, tmp_path: Path
) -> None:
    base = load_generator(tiny_model).generator
    partner = load_generator(tiny_model).generator
    with torch.no_grad():
        noise = torch.Generator().manual_seed(7)
        for parameter in partner.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=noise) * parameter.abs().mean().clamp_min(0.1))
    save_generator(partner, tmp_path / "domains" / "tiny" / "dusk.safetensors")  # sub-folders are searched
    save_generator(load_generator(None).generator, tmp_path / "domains" / "other-architecture.safetensors")

    settings = service_settings(redis_url, tiny_model, partner_models=tmp_path / "domains", outpaint_worker=False)
    with LiveServer(settings) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        body = {"seed": 12, "psi": 0.7, "biomes": None, "blend": {"partner": "dusk", "swap_level": 1.5, "smooth": 0.5}}
        created = client.post("/worlds", json=body)
        assert created.status_code == 201, created.text
        world = created.json()
        assert world["blend"]["partner"] == "dusk" and world["blend"]["swap_level"] == 1.5
        assert client.post("/worlds", json=body).json()["id"] == world["id"]
        assert client.post("/worlds", json={"seed": 12, "psi": 0.7, "biomes": None}).json()["id"] != world["id"]
        assert client.get(f"/worlds/{world['id']}").json() == world

        tile = client.get(f"/worlds/{world['id']}/tiles/5/0/-1.png")
        assert tile.status_code == 200
        served = np.asarray(Image.open(io.BytesIO(tile.content)).convert("RGB"))
        blended = blend_generators(base, partner, 1.5, 0.5)
        expected = render_region(World(blended, WorldSpec(seed=12, psi=0.7)), 0, -256, 256, 256)
        np.testing.assert_array_equal(served, expected)
        plain = render_region(World(base, WorldSpec(seed=12, psi=0.7)), 0, -256, 256, 256)
        assert not np.array_equal(served, plain)

        models = client.get("/models").json()  # what the demo page's blend picker offers
        assert models["hash"] == server.resources.tiles.model_hash
        assert models["levels"] == 1 + len(base.texture.stages)
        assert [p["name"] for p in models["partners"]] == ["dusk"]  # the other architecture is not a partner
        assert models["partners"][0]["hash"] == world["blend"]["partner_hash"]

        unknown = client.post("/worlds", json={"seed": 1, "blend": {"partner": "alpine", "swap_level": 2}})
        assert unknown.status_code == 422 and "dusk" in unknown.json()["detail"]  # lists what is available
        skipped = client.post("/worlds", json={"seed": 1, "blend": {"partner": "other-architecture", "swap_level": 2}})
        assert skipped.status_code == 422  # another architecture cannot be a partner
        for bad in ({"partner": "dusk", "swap_level": 99}, {"partner": "dusk"}, {"partner": "", "swap_level": 1}):
            assert client.post("/worlds", json={"seed": 1, "blend": bad}).status_code == 422


def test_two_partners_of_the_served_architecture_may_not_share_a_name(tiny_model: Path, tmp_path: Path) -> None:
    model = load_generator(tiny_model)
    save_generator(model.generator, tmp_path / "dusk.safetensors")
    save_generator(model.generator, tmp_path / "more" / "dusk.safetensors")
    with pytest.raises(CheckpointError, match="both named 'dusk'"):
        load_partners(tmp_path, model)


@pytest.mark.parametrize("served", [SHIPPED_MODEL, TEACHER_MODEL], ids=["student", "teacher"])
def test_the_shipped_models_each_find_their_own_partners(served: Path) -> None:
    """The service serves the student by default and the teacher when asked; the blend partners in models/domains
    exist for both architectures under the same names."""
    model = load_generator(served)
    partners = load_partners(MODELS / "domains", model)
    assert sorted(partners) == ["alpine", "dusk"]
    blended = blend_generators(model.generator, partners["dusk"].generator, 2.5, 0.5)
    tile = render_region(World(blended, WorldSpec(seed=1)), 0, -128, 256, 256)
    assert not np.array_equal(tile, render_region(World(model.generator, WorldSpec(seed=1)), 0, -128, 256, 256))

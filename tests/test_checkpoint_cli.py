import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from infinitygan import CheckpointError, World, WorldSpec, load_generator, render_region, save_generator
from tests.model_fixtures import lively_tiny_generator, served_world


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infinitygan", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    return save_generator(lively_tiny_generator(), tmp_path / "tiny.safetensors", {"note": "test"})


def test_checkpoint_round_trip_renders_identically(tiny_checkpoint):
    original = lively_tiny_generator()
    model = load_generator(tiny_checkpoint)
    loaded = model.generator
    assert loaded.config == original.config
    assert model.metadata == {"note": "test"}
    assert len(model.model_hash) == 16
    assert not hasattr(loaded, "metadata") and not hasattr(loaded, "model_hash")  # nothing bolted on
    for name, tensor in original.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    a = render_region(World(original, WorldSpec(seed=1)), 0, 0, 64, 64)
    b = render_region(World(loaded, WorldSpec(seed=1)), 0, 0, 64, 64)
    assert np.array_equal(a, b)


def test_tiny_preset_is_under_100k_parameters():
    assert sum(p.numel() for p in lively_tiny_generator().parameters()) < 100_000


def test_checkpoint_is_not_a_pickle(tiny_checkpoint):
    header_len = int.from_bytes(tiny_checkpoint.read_bytes()[:8], "little")
    header = json.loads(tiny_checkpoint.read_bytes()[8 : 8 + header_len])
    config = json.loads(header["__metadata__"]["config"])
    assert config["preset"] == "tiny"


def test_missing_and_corrupt_checkpoints_raise_clear_errors(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="not found"):
        load_generator(tmp_path / "absent.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(tiny_checkpoint.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a valid"):
        load_generator(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 7)
    with pytest.raises(CheckpointError):
        load_generator(garbage)


def test_checkpoint_whose_tensors_do_not_match_its_config(tmp_path, tiny_checkpoint):
    tensors = load_file(tiny_checkpoint)
    header_len = int.from_bytes(tiny_checkpoint.read_bytes()[:8], "little")
    metadata = json.loads(tiny_checkpoint.read_bytes()[8 : 8 + header_len])["__metadata__"]
    name = next(iter(tensors))
    tensors[name] = torch.zeros(3, 3)
    save_file(tensors, tmp_path / "mismatch.safetensors", metadata=metadata)
    with pytest.raises(CheckpointError, match="shape"):
        load_generator(tmp_path / "mismatch.safetensors")
    del tensors[name]
    save_file(tensors, tmp_path / "missing.safetensors", metadata=metadata)
    with pytest.raises(CheckpointError, match="missing"):
        load_generator(tmp_path / "missing.safetensors")
    save_file(load_file(tiny_checkpoint), tmp_path / "nometa.safetensors")
    with pytest.raises(CheckpointError, match="not an InfinityGAN"):
        load_generator(tmp_path / "nometa.safetensors")


def test_cli_render_writes_the_same_pixels_as_the_library(tmp_path, tiny_checkpoint):
    out = tmp_path / "region.png"
    result = run_cli(
        "render",
        "--checkpoint",
        str(tiny_checkpoint),
        "--seed",
        "9",
        "--x",
        "-40",
        "--y",
        "-300",
        "--width",
        "300",
        "--height",
        "200",
        "--out",
        str(out),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    expected = render_region(
        served_world(load_generator(tiny_checkpoint).generator, WorldSpec(seed=9)), -40, -300, 300, 200
    )
    assert np.array_equal(np.asarray(Image.open(out)), expected)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--width", "0", "--height", "10"], "positive"),
        (["--width", "-5", "--height", "10"], "positive"),
        (["--x", str(2**40), "--width", "10", "--height", "10"], "limit"),
        (["--width", "ten", "--height", "10"], "not an integer"),
        (["--seed", "-3", "--width", "10", "--height", "10"], "seed"),
    ],
)
def test_cli_bad_input_gives_a_clear_message_without_traceback(tmp_path, tiny_checkpoint, args, message):
    base = {"--seed": "1", "--x": "0", "--y": "0"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["render", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "x.png")]
    for flag, value in base.items():
        argv += [flag, value]
    result = run_cli(*argv)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("kind", ["missing", "corrupt"])
def test_cli_bad_checkpoint_gives_a_clear_message(tmp_path, kind):
    path = tmp_path / "model.safetensors"
    if kind == "corrupt":
        path.write_bytes(b"this is not a checkpoint at all")
    result = run_cli(
        "render",
        "--checkpoint",
        str(path),
        "--seed",
        "1",
        "--x",
        "0",
        "--y",
        "0",
        "--width",
        "10",
        "--height",
        "10",
        "--out",
        str(tmp_path / "x.png"),
    )
    assert result.returncode == 1
    assert str(path) in result.stderr and "Traceback" not in result.stderr


def test_render_streams_a_tiled_tiff_equal_to_render_region(tiny_checkpoint, tmp_path):
    """A panorama of any size: --out X.tif writes 256-row bands as they are rendered (memory ~2 bands)."""
    import tifffile

    from infinitygan.cli import main
    from infinitygan.world import iter_row_bands

    out = tmp_path / "pano.tif"
    args = ["render", "--checkpoint", str(tiny_checkpoint), "--seed", "9", "--x", "-40", "--y", "-300"]
    assert main([*args, "--width", "700", "--height", "530", "--out", str(out), "--quiet"]) == 0
    expected = render_region(
        served_world(load_generator(tiny_checkpoint).generator, WorldSpec(seed=9)), -40, -300, 700, 530
    )
    assert np.array_equal(tifffile.imread(out), expected)
    assert not list(tmp_path.glob(".*partial"))
    # The bands: 256 rows each but the last, each chunk row rendered once, together the same region.
    world = served_world(load_generator(tiny_checkpoint).generator, WorldSpec(seed=9))
    bands = list(iter_row_bands(world, -40, -300, 700, 530))
    assert [band.shape[0] for band in bands] == [256, 256, 18]
    assert np.array_equal(np.concatenate(bands), expected)

"""Training loop, discriminator, losses and evaluation, on the tiny preset and synthetic landscape images."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from infinitygan import World, WorldSpec, build_generator, load_generator
from infinitygan.coords import coordinate_grid
from infinitygan.discriminator import STDDEV_GROUP, Discriminator, minibatch_stddev
from infinitygan.losses import diversity_loss, r1_penalty
from infinitygan.sampling import paired_labels, sample_fake_inputs, window_row_px
from infinitygan.training import TrainConfig, train
from infinitygan.training.loop import Trainer
from infinitygan.training.phases import lazy_adam, scene_g_step
from tests.training_helpers import tiny_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

# ---- the loop -------------------------------------------------------------------------------------------------------


def test_training_steps_are_finite_and_checkpoint_round_trips(landscape_dir, tmp_path):
    trainer = train(tiny_recipe(max_iterations=3), landscape_dir, tmp_path / "run", progress=False)
    assert trainer.step == 3
    for name in ("d", "g", "r1", "pl", "div", "g_pos", "d_pos_real", "r_t"):
        assert math.isfinite(trainer.losses[name]), name
    assert -1 <= trainer.losses["r_t"] <= 1
    model = load_generator(tmp_path / "run" / "generator.safetensors")
    assert model.metadata["trained_iterations"] == 3
    assert model.metadata["scene_height"] == 128
    assert model.metadata["train_config"]["preset"] == "tiny"
    assert model.metadata["precision"] in ("bf16", "fp32")
    for name, tensor in trainer.models.g_ema.state_dict().items():
        assert torch.equal(model.generator.state_dict()[name], tensor), name
    assert list((tmp_path / "run" / "samples").glob("*.png"))


def test_resume_continues_the_same_run(landscape_dir, tmp_path):
    straight = train(tiny_recipe(max_iterations=4), landscape_dir, tmp_path / "straight", progress=False)
    train(tiny_recipe(max_iterations=2), landscape_dir, tmp_path / "resumed", progress=False)
    state = json.loads((tmp_path / "resumed" / "state" / "state.json").read_text())
    assert state["step"] == 2
    resumed = train(tiny_recipe(max_iterations=4), landscape_dir, tmp_path / "resumed", progress=False)
    assert resumed.step == 4
    for name, tensor in straight.models.generator.state_dict().items():
        torch.testing.assert_close(resumed.models.generator.state_dict()[name], tensor, msg=name)
    for name, tensor in straight.models.discriminator.state_dict().items():
        torch.testing.assert_close(resumed.models.discriminator.state_dict()[name], tensor, msg=name)


def test_whole_scene_critic_trains_and_resumes_exactly(landscape_dir, tmp_path):
    """scene_weight > 0: D_scene judges whole-height squares every scene_interval iterations, G learns from it, and
    an interrupted run (D_scene and its optimiser in the state) continues exactly as one that was not."""
    recipe = dict(scene_weight=0.5, scene_interval=2)
    straight = train(tiny_recipe(max_iterations=4, **recipe), landscape_dir, tmp_path / "straight", progress=False)
    for name in ("d_scene", "g_scene", "r1_scene"):
        assert math.isfinite(straight.losses[name]), name
    assert straight.models.scene_discriminator.image_size == 128 // 4
    fresh = tiny_recipe(**recipe)
    untrained = train(dataclasses.replace(fresh, max_iterations=0), landscape_dir, tmp_path / "zero", progress=False)
    moved = [
        name
        for name, tensor in straight.models.scene_discriminator.state_dict().items()
        if not torch.equal(untrained.models.scene_discriminator.state_dict()[name], tensor)
    ]
    assert moved, "D_scene must train"
    plain = train(tiny_recipe(max_iterations=4), landscape_dir, tmp_path / "plain", progress=False)
    assert not torch.equal(
        plain.models.generator.texture.stages[0].conv.conv.weight,
        straight.models.generator.texture.stages[0].conv.conv.weight,
    ), "the scene term must reach G"
    train(tiny_recipe(max_iterations=3, **recipe), landscape_dir, tmp_path / "resumed", progress=False)
    resumed = train(tiny_recipe(max_iterations=4, **recipe), landscape_dir, tmp_path / "resumed", progress=False)
    for models in ("generator", "discriminator", "scene_discriminator"):
        for name, tensor in getattr(straight.models, models).state_dict().items():
            torch.testing.assert_close(getattr(resumed.models, models).state_dict()[name], tensor, msg=name)


@pytest.mark.parametrize(
    "bad",
    [
        dict(scene_weight=-1.0),
        dict(scene_batch=3),
        dict(scene_interval=0),
        dict(scene_weight=1.0, scene_height=130),
        dict(scene_d_lr=0.0),
        dict(scene_d_lr=float("nan")),
        dict(scene_diversity_weight=-1.0),
    ],
)
def test_bad_scene_settings_are_refused(bad):
    with pytest.raises(ValueError, match="scene"):
        TrainConfig(**bad)


def test_the_scene_discriminator_keeps_its_own_learning_rate(landscape_dir, tmp_path):
    """scene_d_lr: D_scene's lr stays fixed while G's and D's follow lr_steps; unset, it follows them too."""
    recipe = dict(scene_weight=0.5, scene_interval=1, lr_steps=((0, 0.1),))
    own = train(
        tiny_recipe(max_iterations=1, scene_d_lr=0.003, **recipe), landscape_dir, tmp_path / "own", progress=False
    )
    assert [g["lr"] for g in own.models.scene_d_opt.param_groups] == [0.003]
    interval = own.config.r1_interval  # D's lazy-regularisation factor
    assert own.models.d_opt.param_groups[0]["lr"] == pytest.approx(0.0002 * interval / (interval + 1))
    same = train(tiny_recipe(max_iterations=1, **recipe), landscape_dir, tmp_path / "same", progress=False)
    assert [g["lr"] for g in same.models.scene_d_opt.param_groups] == [pytest.approx(0.0002)]


def test_scene_diversity_pushes_z_g_pairs_apart(landscape_dir, tmp_path):
    """scene_diversity_weight > 0: the scene G step logs the z_g mode-seeking term, and the term moves G: one step
    from the same state and draws at weight 1 against a negligible weight updates the mapping network (which only
    z_g feeds) differently."""
    updated = []
    for weight in (1e-9, 1.0):
        trainer = Trainer(
            tiny_recipe(scene_weight=0.5, scene_diversity_weight=weight), landscape_dir, tmp_path / str(weight)
        )
        _, top_px = trainer.real_scenes()
        logged = scene_g_step(trainer.models, trainer.config, top_px, torch.Generator().manual_seed(0))
        assert math.isfinite(logged["div_scene"]) and logged["div_scene"] > 0
        updated.append([p.detach().clone() for p in trainer.models.generator.mapping.parameters()])
    assert any(not torch.equal(a, b) for a, b in zip(*updated, strict=True))
    assert "div_scene" not in scene_g_step(
        Trainer(tiny_recipe(scene_weight=0.5), landscape_dir, tmp_path / "off").models,
        tiny_recipe(scene_weight=0.5),
        top_px,
        torch.Generator().manual_seed(0),
    )


def test_lazy_regularisation_correction():
    config = TrainConfig(preset="tiny")
    optimizer = lazy_adam([torch.nn.Parameter(torch.zeros(1))], config, interval=16)
    group = optimizer.param_groups[0]
    c = 16 / 17
    assert group["lr"] == pytest.approx(0.002 * c)
    assert group["betas"] == pytest.approx((0.0, 0.99**c))


def test_batch_must_pair():
    with pytest.raises(ValueError, match="even"):
        TrainConfig(batch=3)


# ---- inputs -------------------------------------------------------------------------------------------------------


def test_training_coordinates_match_the_world():
    """A training window placed exactly where a world window is gets the world's vertical coordinates."""
    generator = build_generator("tiny")
    geometry = generator.geometry
    world = World(generator, WorldSpec(seed=3))
    for row0 in (-7, 0, 4):
        inputs = world.window_inputs(row0, 0, 9, 9)
        top_px = geometry.cell_px * row0 + geometry.pixel_offset
        rows = window_row_px(generator, top_px, 9)
        ours = coordinate_grid(rows, np.zeros(1), generator.config)[0, :, 0]
        torch.testing.assert_close(ours, inputs.coords[0, 0, :, 0])


def test_paired_fakes_share_global_latent_and_coordinates():
    generator = build_generator("tiny").train()
    top_px = torch.tensor([-40.0, 10.0, -5.0, 30.0], dtype=torch.float64)
    rng = torch.Generator().manual_seed(0)
    fake = sample_fake_inputs(generator, top_px, 9, rng, torch.device("cpu"), mixing=0.9, pairs="same_z_g")
    assert torch.equal(fake.z_global[:2], fake.z_global[2:])
    assert torch.equal(fake.inputs.coords[:2], fake.inputs.coords[2:])
    assert torch.equal(fake.styles[:2], fake.styles[2:])
    assert not torch.equal(fake.inputs.local_latents[:2], fake.inputs.local_latents[2:])
    # Labels follow the coordinates (the reference forgot to copy them).
    assert paired_labels(torch.tensor([0.1, 0.2, 0.3, 0.4])).tolist() == pytest.approx([0.1, 0.2, 0.1, 0.2])
    # Vertical coordinates follow each sample's position: higher patches see a more negative tanh.
    vertical = fake.inputs.coords[:, 0].mean(dim=(1, 2))
    assert vertical[0] < vertical[1]


def test_fakes_paired_by_local_latent_differ_only_in_z_g():
    """pairs="same_z_l" (mode seeking w.r.t. z_g): z_l, noise and coordinates repeat, z_g and styles do not; an
    unknown pairing is refused."""
    generator = build_generator("tiny").train()
    top_px = torch.tensor([-40.0, 10.0, -40.0, 10.0], dtype=torch.float64)
    rng = torch.Generator().manual_seed(0)
    fake = sample_fake_inputs(generator, top_px, 9, rng, torch.device("cpu"), mixing=0.9, pairs="same_z_l")
    assert torch.equal(fake.inputs.local_latents[:2], fake.inputs.local_latents[2:])
    assert torch.equal(fake.inputs.coords[:2], fake.inputs.coords[2:])
    assert all(torch.equal(noise[:2], noise[2:]) for noise in fake.inputs.noises)
    assert not torch.equal(fake.z_global[:2], fake.z_global[2:])
    assert not torch.equal(fake.styles[:2], fake.styles[2:])
    with pytest.raises(ValueError, match="pairs must be one of"):
        sample_fake_inputs(generator, top_px, 9, rng, torch.device("cpu"), mixing=0.9, pairs="same_w")


# ---- discriminator and losses -------------------------------------------------------------------------------------


def test_minibatch_stddev_groups_four_samples():
    assert STDDEV_GROUP == 4
    assert Discriminator(69).stddev_group == 4
    x = torch.randn(8, 5, 3, 3)
    base = minibatch_stddev(x)[:, -1, 0, 0]
    changed = x.clone()
    changed[1] += 10.0  # sample 1's group is {1, 3, 5, 7}
    stat = minibatch_stddev(changed)[:, -1, 0, 0]
    for i in (0, 2, 4, 6):
        assert stat[i] == base[i]
    for i in (1, 3, 5, 7):
        assert stat[i] > base[i]
    with pytest.raises(ValueError, match="divisible"):
        minibatch_stddev(torch.randn(6, 2, 2, 2))
    assert minibatch_stddev(torch.randn(2, 2, 2, 2)).shape == (2, 3, 2, 2)  # batch < 4: one group of 2


def test_discriminator_handles_odd_sizes():
    for size in (37, 69):
        logits, position = Discriminator(size, base_width=8, max_width=32)(torch.randn(4, 3, size, size))
        assert logits.shape == position.shape == (4,)
        assert position.abs().max() <= 1


def test_diversity_loss_is_larger_when_structures_are_closer():
    torch.manual_seed(0)
    local_a, local_b = torch.randn(2, 4, 9, 9), torch.randn(2, 4, 9, 9)
    structure = torch.randn(2, 6, 3, 3)
    far = diversity_loss(local_a, local_b, structure, structure + torch.randn(2, 6, 3, 3))
    near = diversity_loss(local_a, local_b, structure, structure + 0.1 * torch.randn(2, 6, 3, 3))
    assert near > far > 0
    # Minimising it pushes the pair apart: the gradient on structure_b points away from structure_a.
    structure_b = (structure + 0.5).requires_grad_(True)
    diversity_loss(local_a, local_b, structure, structure_b).backward()
    assert (structure_b.grad * (structure_b.detach() - structure)).sum() < 0


def test_r1_penalty_of_a_linear_critic():
    images = torch.randn(3, 2, 4, 4, requires_grad=True)
    weight = torch.randn(2, 4, 4)
    logits = (images * weight).flatten(1).sum(1)
    assert float(r1_penalty(logits, images)) == pytest.approx(float(weight.pow(2).sum()), rel=1e-5)


# ---- evaluation -----------------------------------------------------------------------------------------------------


def test_eval_cli_prints_one_json_object(landscape_dir, tmp_path, capsys):
    from infinitygan.checkpoint import save_generator
    from infinitygan.cli import main

    checkpoint = save_generator(build_generator("tiny"), tmp_path / "tiny.safetensors", {"scene_height": 128})
    argv = [
        "eval",
        str(checkpoint),
        "--data",
        str(landscape_dir),
        "--json",
        "--out",
        str(tmp_path / "eval"),
        "--patches",
        "16",
        "--scaleinv-images",
        "2",
        "--seeds",
        "2",
    ]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("swd", "swd_real_floor", "swd_scaleinv_4x", "seam_score", "diversity", "zs_gain"):
        assert isinstance(result[key], float) and math.isfinite(result[key]), key
    assert result["scene_height"] == 128
    assert result["swd_real_floor"] < result["swd"]  # an untrained model is far from the data
    assert "swd_eval" not in result  # a plain folder has no evaluation split
    assert (tmp_path / "eval" / "contact_sheet.png").is_file()
    assert (tmp_path / "eval" / "large_render.png").is_file()


def test_eval_cli_scores_at_the_truncation_asked_for(landscape_dir, tmp_path, capsys):
    from infinitygan.checkpoint import save_generator
    from infinitygan.cli import main

    checkpoint = save_generator(build_generator("tiny"), tmp_path / "tiny.safetensors", {"scene_height": 128})
    argv = ["eval", str(checkpoint), "--data", str(landscape_dir), "--json", "--patches", "16", "--seeds", "2"]
    argv += ["--scaleinv-images", "2"]
    results = {}
    for psi_local in ("1", "0.3"):
        assert main([*argv, "--psi", "0.8", "--psi-local", psi_local]) == 0
        results[psi_local] = json.loads(capsys.readouterr().out)
    assert (results["0.3"]["psi"], results["0.3"]["psi_local"]) == (0.8, 0.3)
    assert results["1"]["psi_local"] == 1.0 and results["1"]["swd"] != results["0.3"]["swd"]
    assert results["1"]["diversity"] != results["0.3"]["diversity"]  # the worlds are truncated too
    assert main([*argv, "--psi-local", "2.5"]) == 2
    assert "psi_local must be a number in [0, 2]" in capsys.readouterr().err


def test_eval_cli_scores_every_model_on_patches_of_one_size(landscape_dir, tmp_path, capsys):
    from infinitygan.checkpoint import save_generator
    from infinitygan.cli import main

    # Models trained on different windows (a teacher and its student): the run compares one patch size, the first's.
    small = save_generator(build_generator("tiny"), tmp_path / "a.safetensors", {"scene_height": 128})
    wide = save_generator(
        build_generator("tiny", init_seed=1),
        tmp_path / "b.safetensors",
        {"scene_height": 128, "train_config": {"patch_cells": 12}},
    )
    base = ["eval", "--data", str(landscape_dir), "--json", "--patches", "8", "--scaleinv-images", "2", "--seeds", "2"]
    assert main([*base, str(small), str(wide)]) == 0
    results = json.loads(capsys.readouterr().out)
    sizes = {result["patch_px"] for result in results.values()}
    assert len(sizes) == 1, results
    assert main([*base, str(wide)]) == 0
    assert json.loads(capsys.readouterr().out)["patch_px"] > sizes.pop()  # alone, its own larger patch
    assert main([*base, str(wide), "--patch-px", "40"]) == 0
    assert json.loads(capsys.readouterr().out)["patch_px"] == 40
    assert main([*base, str(small), "--patch-px", "500"]) != 0
    assert "--patch-px must lie in 16..128" in capsys.readouterr().err


def test_train_cli_rejects_missing_data(tmp_path, capsys):
    from infinitygan.cli import main

    code = main(["train", "--preset", "tiny", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run")])
    assert code != 0
    assert "error" in capsys.readouterr().err


def test_seam_ratio_sees_a_step_at_a_chunk_boundary():
    from infinitygan.evaluate import seam_ratio

    rng = np.random.default_rng(0)
    smooth = rng.integers(100, 110, (512, 512, 3)).astype(np.uint8)
    assert seam_ratio(smooth, 0, -256) == pytest.approx(1.0, abs=0.1)
    stepped = smooth.copy()
    stepped[:, 256:] += 40  # a visible seam at world column 256
    assert seam_ratio(stepped, 0, -256) > 3.0
    horizon = smooth.copy()
    horizon[256:] += 40  # a jump at world row 0 (the horizon) is content, not a seam
    assert seam_ratio(horizon, 0, -256) == pytest.approx(1.0, abs=0.1)
    # Texture that changes with the row (smooth sky, rough ground) is content too: a seam row in rough ground is
    # compared with the rough rows beside it, not with the image's average.
    rows = np.arange(512)[:, None, None]
    graded = (100 + rng.integers(0, 1 + rows // 8, (512, 512, 3))).astype(np.uint8)
    assert seam_ratio(graded, 0, -384, period=16) == pytest.approx(1.0, abs=0.1)  # seam rows: -256 (and 0)
    graded[128:] += 40  # a step at world row -256
    assert seam_ratio(graded, 0, -384, period=16) > 1.5


def test_swd_grows_with_the_difference_between_distributions():
    from infinitygan.evaluate import swd

    torch.manual_seed(0)
    images, more = torch.rand(2, 32, 3, 32, 32) * 2 - 1
    stripes = torch.sign(torch.sin(torch.arange(32.0) * 1.3)).expand(32, 3, 32, 32) + 0.1 * more
    same = swd(images, more, per_image=32)["mean"]
    different = swd(images, stripes, per_image=32)["mean"]
    assert different > 2 * same


def test_eval_cli_scores_several_models_on_the_same_reals(landscape_dir, tmp_path, capsys):
    from infinitygan.checkpoint import save_generator
    from infinitygan.cli import main

    a = save_generator(build_generator("tiny", init_seed=1), tmp_path / "a.safetensors", {"scene_height": 128})
    b = save_generator(build_generator("tiny", init_seed=2), tmp_path / "b.safetensors", {"scene_height": 128})
    small = ["--patches", "16", "--scaleinv-images", "2", "--seeds", "2"]
    strip = tmp_path / "strip.png"
    assert main(["eval", str(a), str(b), "--data", str(landscape_dir), "--json", "--strip", str(strip), *small]) == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results) == {str(a), str(b)}
    assert results[str(a)]["swd_real_floor"] == results[str(b)]["swd_real_floor"]  # the same real samples
    assert results[str(a)]["swd"] != results[str(b)]["swd"]
    with Image.open(strip) as image:
        assert image.size == (4 * 128 + 3 * 4, 2 * (128 + 16 + 4))
    assert main(["eval", str(a), "--data", str(landscape_dir), *small]) == 0
    assert capsys.readouterr().out.startswith("| model | SWD |")  # the Markdown table


def test_eval_reports_both_splits_with_their_floors(landscape_dir, tmp_path):
    """A fetched data folder (train/ and eval/ with manifests): SWD against each split, each with its real floor."""
    from infinitygan.checkpoint import LoadedGenerator
    from infinitygan.data import ManifestEntry, write_manifest
    from infinitygan.evaluate import EvalOptions, evaluate

    data_dir = tmp_path / "fetched"
    for split, names in (("train", ["scene0.png", "scene1.png", "scene2.png"]), ("eval", ["scene3.png"])):
        (data_dir / split).mkdir(parents=True)
        entries = []
        for name in names:
            (data_dir / split / name).write_bytes((landscape_dir / name).read_bytes())
            fields = dict.fromkeys(["package", "package_version", "path_in_package", "sha256", "author"], "")
            fields.update(dict.fromkeys(["copyright", "license", "license_source"], ""))
            entries.append(ManifestEntry(file=name, width=320, height=200, horizon=0.5, split=split, **fields))
        write_manifest(data_dir / split, entries)
    model = LoadedGenerator.in_memory(build_generator("tiny"), {"scene_height": 128})
    result = evaluate(model, data_dir, EvalOptions(patches=16, scaleinv_images=2, seeds=2, seam_seeds=2))
    for prefix in ("swd", "swd_eval"):
        assert result[prefix] > result[f"{prefix}_real_floor"] > 0
        assert result[f"{prefix}_floor_ratio"] == pytest.approx(result[prefix] / result[f"{prefix}_real_floor"], 0.01)
    assert result["scaleinv_ratio"] == pytest.approx(result["swd_scaleinv_4x"] / result["swd"], rel=0.01)
    assert result["scaleinv_floor_ratio"] == pytest.approx(
        result["swd_scaleinv_4x"] / result["swd_scaleinv_4x_real_floor"], rel=0.01
    )


def test_sheet_cli_renders_each_world_around_the_horizon(tmp_path, capsys):
    from infinitygan import save_generator
    from infinitygan.biomes import Biomes
    from infinitygan.cli import main
    from infinitygan.world import render_region

    generator = build_generator("tiny")
    checkpoint = save_generator(generator, tmp_path / "tiny.safetensors", {"scene_height": 128})
    out = tmp_path / "sheet.png"
    argv = ["sheet", str(checkpoint), "--out", str(out), "--seeds", "3", "--width", "64", "--height", "32"]
    assert main([*argv, "--psi", "0.7", "--psi-local", "0.3", "--seed", "5"]) == 0
    sheet = np.asarray(Image.open(out))
    assert sheet.shape == (2 * (32 + 16 + 8) - 8, 2 * 64 + 8, 3)  # 2 columns, 2 rows, gaps and labels
    third = render_region(World(generator.eval(), WorldSpec(seed=7, psi=0.7, psi_local=0.3)), -32, -16, 64, 32)
    assert np.array_equal(sheet[56 + 16 : 56 + 16 + 32, :64], third)  # seed 5 + 2, first column of row 2
    assert main([*argv, "--biomes", "256:128"]) == 0  # the service's worlds have biomes: the sheet can show them
    first = render_region(World(generator.eval(), WorldSpec(seed=0, biomes=Biomes(256, 128))), -32, -16, 64, 32)
    assert np.array_equal(np.asarray(Image.open(out))[16 : 16 + 32, :64], first)
    assert main([*argv[:-6], "--seeds", "0"]) == 2
    assert main(["sheet", str(checkpoint), "--out", str(tmp_path / "x.gif")]) == 1
    assert "must end in" in capsys.readouterr().err


def test_sheet_cli_lays_out_swap_levels_against_a_partner(tmp_path):
    from infinitygan import save_generator
    from infinitygan.blend import blend_generators
    from infinitygan.cli import main
    from infinitygan.world import render_region
    from tests.model_fixtures import lively_tiny_generator

    base, partner = lively_tiny_generator(), lively_tiny_generator(init_seed=5)
    paths = [save_generator(g, tmp_path / f"{name}.safetensors") for name, g in (("a", base), ("b", partner))]
    out = tmp_path / "swap.png"
    argv = ["sheet", str(paths[0]), "--blend-partner", str(paths[1]), "--out", str(out), "--seeds", "2"]
    assert main([*argv, "--width", "32", "--height", "32", "--swap-levels=-1,1"]) == 0
    sheet = np.asarray(Image.open(out))
    assert sheet.shape == (2 * (32 + 16 + 8) - 8, 2 * 32 + 8, 3)  # a row per level, a column per seed
    expected = render_region(World(blend_generators(base, partner, 1.0), WorldSpec(seed=1)), -16, -16, 32, 32)
    assert np.array_equal(sheet[56 + 16 : 56 + 48, 40:72], expected)  # level 1, seed 1
    other = save_generator(build_generator("tiny-mobile"), tmp_path / "other.safetensors")
    assert main(["sheet", str(paths[0]), "--blend-partner", str(other), "--out", str(out)]) == 2

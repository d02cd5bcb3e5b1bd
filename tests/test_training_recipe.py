"""The training recipe: DiffAugment, bf16 autocast, SWAGAN's wavelet D and G, warm starts, compact resume points and
the GPU hand-off script, on the tiny preset and synthetic landscapes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from infinitygan import build_generator, load_generator, save_generator
from infinitygan.augment import POLICIES, color, cutout, diff_augment, parse_policy, translation
from infinitygan.cli import main
from infinitygan.discriminator import Discriminator
from infinitygan.evaluate import structure_gain_probe
from infinitygan.layers import NOISE_GATE_LR_MUL, NoiseInjection
from infinitygan.losses import structure_gain
from infinitygan.runtime import ChunkGraph, ChunkSession, chunk_arguments, chunk_graph_bytes
from infinitygan.sampling import sample_fake_inputs
from infinitygan.training import ResumeError, TrainConfig, Trainer, phases, save_resume_point, seed_run_from, train
from infinitygan.training.phases import autocast, path_length_step, set_lr
from infinitygan.training.state import read_resume_point, read_run_meta
from infinitygan.world import World, WorldSpec, render_region
from tests.model_fixtures import tiny_config as tiny_generator_config
from tests.training_helpers import tiny_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parent.parent


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


# ---- DiffAugment ------------------------------------------------------------------------------------------------


def test_augmentations_never_move_content_vertically():
    """L_ar's labels stay true: each output row comes from the same input row (or is blanked)."""
    rng = torch.Generator().manual_seed(0)
    rows = torch.arange(40.0)[None, None, :, None].expand(8, 3, 40, 40) + 1000.0  # value = row + 1000
    moved = translation(rows, rng)
    assert moved.shape == rows.shape
    nonzero = moved != 0
    assert torch.equal(moved[nonzero], rows[nonzero])  # every kept value is still in its own row
    shifts = [(moved[i, 0, 0] != 0).float().sum().item() for i in range(8)]
    assert min(shifts) < 40  # some samples really moved (and were filled with zeros at one side)
    # Horizontal content moves as a whole: a column ramp stays a ramp, shifted.
    columns = torch.arange(40.0)[None, None, None, :].expand(1, 1, 5, 40) + 1.0
    shifted = translation(columns, torch.Generator().manual_seed(3))[0, 0]
    kept = shifted[0][shifted[0] != 0]
    assert torch.all(kept[1:] - kept[:-1] == 1)
    assert torch.equal(shifted, shifted[0].expand(5, 40))  # every row moved the same way
    # Cutout zeroes a square and moves nothing; colour changes values per sample, not positions.
    cut = cutout(rows, rng)
    assert torch.equal(cut[cut != 0], rows[cut != 0])
    flat = torch.full((4, 3, 16, 16), 0.25)
    coloured = color(flat, rng)
    assert torch.allclose(coloured, coloured[:, :1, :1, :1].expand_as(coloured))  # uniform stays uniform


def test_augment_off_switch_and_policy_parsing():
    x = torch.randn(2, 3, 9, 9)
    assert diff_augment(x, parse_policy(""), torch.Generator()) is x
    assert parse_policy("none") == ()
    assert parse_policy("color, cutout") == ("color", "cutout")
    assert parse_policy(",".join(POLICIES)) == POLICIES
    with pytest.raises(ValueError, match="flip"):
        parse_policy("color,flip")
    with pytest.raises(ValueError, match="unknown DiffAugment"):
        TrainConfig(augment="rotate")
    # Differentiable: G gets gradients through the transforms.
    y = x.clone().requires_grad_(True)
    diff_augment(y, POLICIES, torch.Generator().manual_seed(1)).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_training_with_augmentation_off_uses_the_plain_images(landscape_dir, tmp_path):
    plain = train(tiny_recipe(max_iterations=2, augment=""), landscape_dir, tmp_path / "plain", progress=False)
    augmented = train(tiny_recipe(max_iterations=2), landscape_dir, tmp_path / "augmented", progress=False)
    assert plain.config.augment_policy == () and augmented.config.augment_policy == POLICIES
    diffs = [
        not torch.equal(a, b)
        for a, b in zip(
            plain.models.discriminator.state_dict().values(),
            augmented.models.discriminator.state_dict().values(),
            strict=True,
        )
    ]
    assert any(diffs)


# ---- bf16 -------------------------------------------------------------------------------------------------------


def test_bf16_autocast_matches_fp32_within_tolerance(landscape_dir, tmp_path):
    """Tolerance: bf16 keeps 8 bits of mantissa (relative step 2^-8 = 0.4%); through a generator and a
    discriminator the images may differ by a few percent of their range, losses by a few hundredths."""
    trainer = Trainer(tiny_recipe(precision="fp32"), landscape_dir, tmp_path / "run")
    g, d = trainer.models.generator.eval(), trainer.models.discriminator
    real, top_px, _ = trainer.real_batch()
    rng, cpu = torch.Generator().manual_seed(0), torch.device("cpu")
    batch = sample_fake_inputs(g, top_px, 9, rng, cpu, mixing=0.0, pairs=None)
    with torch.no_grad():
        image32 = g(batch.inputs, batch.z_global, batch.styles)
        logits32, pos32 = d(real)
        with autocast(tiny_recipe(precision="bf16"), torch.device("cpu")):
            image16 = g(batch.inputs, batch.z_global, batch.styles)
            logits16, pos16 = d(real)
    assert not torch.equal(image16.float(), image32)  # the convolutions really ran in bf16
    scale = image32.abs().max()
    assert (image16.float() - image32).abs().max() <= 0.05 * scale
    assert (image16.float() - image32).abs().mean() <= 0.01 * scale
    torch.testing.assert_close(logits16.float(), logits32, atol=0.05, rtol=0.05)
    torch.testing.assert_close(pos16.float(), pos32, atol=0.02, rtol=0.05)
    # The fp32 parts stay fp32 under autocast: the mapping's running average and the EMA.
    assert g.mapping.w_avg.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in trainer.models.g_ema.parameters())


def test_one_bf16_step_tracks_the_fp32_step(landscape_dir, tmp_path):
    fp32 = train(tiny_recipe(max_iterations=1, precision="fp32"), landscape_dir, tmp_path / "fp32", progress=False)
    bf16 = train(tiny_recipe(max_iterations=1, precision="bf16"), landscape_dir, tmp_path / "bf16", progress=False)
    for key in ("d", "g", "g_pos", "d_pos_real"):
        assert bf16.losses[key] == pytest.approx(fp32.losses[key], abs=0.05), key
    assert bf16.models.g_ema.mapping.w_avg.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in bf16.models.generator.parameters())


def test_whole_scene_steps_run_under_the_recipes_autocast(landscape_dir, tmp_path):
    """G's whole-height squares and D_scene's passes on them run in bf16 when the recipe asks for it (they were most of
    an iteration's time in fp32); D_scene's pass on the reals stays fp32 for R1's double backward."""
    trainer = Trainer(
        tiny_recipe(precision="bf16", scene_weight=1.0, scene_diversity_weight=1.0), landscape_dir, tmp_path
    )
    models, config = trainer.models, trainer.config
    seen: list[torch.dtype] = []
    hook = models.scene_discriminator.from_rgb.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    scenes, top_px = trainer.real_scenes()
    rng = torch.Generator().manual_seed(0)
    logged = phases.scene_d_step(models, config, scenes, top_px, rng)
    assert seen == [torch.bfloat16, torch.float32]  # fakes, then reals
    logged |= phases.scene_g_step(models, config, top_px, rng)
    assert seen[2:] == [torch.bfloat16]
    hook.remove()
    assert all(np.isfinite(v) for v in logged.values())
    assert all(p.dtype == torch.float32 for p in models.generator.parameters())


def test_precision_auto_resolves_to_a_concrete_choice():
    config = TrainConfig(preset="tiny")
    assert config.precision == "auto"
    assert config.resolved_precision("cpu") in ("bf16", "fp32")
    assert TrainConfig(preset="tiny", precision="fp32").resolved_precision("cuda") == "fp32"


# ---- SWAGAN ------------------------------------------------------------------------------------------------------


def test_wavelet_discriminator_reads_haar_bands_of_even_patches():
    d = Discriminator(69, base_width=8, max_width=32, wavelet_input=True)
    assert d.from_rgb.conv.weight.shape[1] == 12  # 4 Haar bands x 3 colours
    logits, position = d(torch.randn(4, 3, 69, 69))
    assert logits.shape == position.shape == (4,)
    # An odd patch loses its last row and column: they cannot change the answer.
    x = torch.randn(4, 3, 69, 69)
    y = x.clone()
    y[..., 68, :] += 5.0
    y[..., :, 68] -= 5.0
    torch.testing.assert_close(d(x)[0], d(y)[0])
    assert Discriminator(74, base_width=8, max_width=32, wavelet_input=True)(torch.randn(4, 3, 74, 74))[0].shape == (4,)


def test_wavelet_generator_predicts_haar_bands_and_keeps_the_cell_size():
    generator = build_generator(tiny_generator_config("transposed+wavelet"))
    assert generator.geometry.cell_px == 16
    last = generator.texture.stages[-1]
    assert last.to_rgb.conv.weight.shape[0] == 12
    # The preset used by training: the same 16 px cell as "small", with a 74 px patch for 9 cells.
    small_wavelet = build_generator("small-wavelet")
    assert small_wavelet.geometry.cell_px == 16 and small_wavelet.geometry.texture_size(9) == 74


def test_warm_start_copies_what_a_different_preset_shares(tmp_path):
    shipped = build_generator("small", init_seed=5)
    checkpoint = save_generator(shipped, tmp_path / "small.safetensors")
    from infinitygan.training.loop import warm_start

    same = build_generator("small", init_seed=6)
    assert warm_start(same, checkpoint) == (len(same.state_dict()), len(same.state_dict()))
    assert_same_weights(same, shipped)
    wavelet = build_generator("small-wavelet", init_seed=6)
    copied, total = warm_start(wavelet, checkpoint)
    assert 0 < copied < total
    torch.testing.assert_close(wavelet.mapping.state_dict(), shipped.mapping.state_dict())
    torch.testing.assert_close(wavelet.structure.state_dict(), shipped.structure.state_dict())


# ---- resume points ------------------------------------------------------------------------------------------------


def test_resume_from_a_committed_point_equals_the_uninterrupted_run(landscape_dir, tmp_path):
    straight = train(tiny_recipe(max_iterations=4), landscape_dir, tmp_path / "straight", progress=False)
    first = train(tiny_recipe(max_iterations=2), landscape_dir, tmp_path / "first", progress=False)
    point = save_resume_point(tmp_path / "point.safetensors", first.models, first.run_state())
    # A fresh machine: only the point file; no run folder.
    meta = seed_run_from(point, tmp_path / "fresh")
    assert meta["step"] == 2
    resumed = train(tiny_recipe(max_iterations=4), landscape_dir, tmp_path / "fresh", progress=False)
    assert resumed.step == 4
    assert_same_weights(resumed.models.generator, straight.models.generator)
    assert_same_weights(resumed.models.discriminator, straight.models.discriminator)
    assert_same_weights(resumed.models.g_ema, straight.models.g_ema)
    assert resumed.losses == straight.losses


def test_resume_point_is_compact_and_refuses_to_discard_progress(landscape_dir, tmp_path):
    trainer = train(tiny_recipe(max_iterations=2), landscape_dir, tmp_path / "run", progress=False)
    point = save_resume_point(tmp_path / "point.safetensors", trainer.models, trainer.run_state())
    tensors, meta = read_resume_point(point)
    assert not any(key.endswith("/exp_avg") for key in tensors)  # beta1 = 0: overwritten by the next step
    assert any(key.endswith("/exp_avg_sq") for key in tensors)
    full = sum(t.numel() * t.element_size() for t in tensors.values())
    assert point.stat().st_size < full + 200_000
    with pytest.raises(ResumeError, match="not older"):
        seed_run_from(point, tmp_path / "run")  # the run is at the same step: nothing to gain, work to lose
    (tmp_path / "junk.safetensors").write_bytes(b"not a resume point")
    with pytest.raises(ResumeError):
        read_resume_point(tmp_path / "junk.safetensors")
    with pytest.raises(ResumeError, match="not a training resume point"):
        read_resume_point(trainer.out_dir / "generator.safetensors")


def test_cli_resumes_a_point_with_another_batch_size(landscape_dir, tmp_path, capsys):
    trainer = train(tiny_recipe(max_iterations=2), landscape_dir, tmp_path / "run", progress=False)
    point = save_resume_point(tmp_path / "point.safetensors", trainer.models, trainer.run_state())
    argv = ["train", "--data", str(landscape_dir), "--out", str(tmp_path / "fresh"), "--resume-from", str(point)]
    assert main([*argv, "--batch", "8", "--max-iterations", "3", "--quiet", "--threads", "1"]) == 0
    resumed = Trainer(tiny_recipe(), landscape_dir, tmp_path / "fresh")
    assert resumed.load_state() and resumed.step == 3
    assert "seeded" in capsys.readouterr().err
    # The same command again, with the run folder now ahead of the point: the folder is resumed, nothing is lost.
    assert main([*argv, "--max-iterations", "4", "--quiet", "--threads", "1"]) == 0
    assert "resuming" in capsys.readouterr().err
    ahead = Trainer(tiny_recipe(), landscape_dir, tmp_path / "fresh")
    assert ahead.load_state() and ahead.step == 4
    # The recipe itself cannot change on resume.
    with pytest.raises(ValueError, match="keeps its recipe"):
        tiny_recipe().resumed_with(preset="small")


def test_learning_rate_steps_apply_from_their_iteration_and_only_forward_on_resume(landscape_dir, tmp_path):
    trainer = train(tiny_recipe(max_iterations=2), landscape_dir, tmp_path / "run", progress=False)
    argv = ["train", "--data", str(landscape_dir), "--out", str(trainer.out_dir), "--quiet", "--threads", "1"]
    # A step before the run's iteration would make the stored recipe untrue of what was trained: refused.
    assert main([*argv, "--max-iterations", "3", "--lr-step", "1:0.5"]) == 1
    assert main([*argv, "--max-iterations", "4", "--lr-step", "3:0.25"]) == 0
    resumed = Trainer(tiny_recipe(), landscape_dir, trainer.out_dir)
    assert resumed.load_state() and resumed.step == 4
    config = TrainConfig.from_dict(read_run_meta(trainer.out_dir)["train_config"])
    assert config.lr_steps == ((3, 0.25),)
    assert [config.lr_at(i) for i in (0, 2, 3, 100)] == [config.lr, config.lr, config.lr / 4, config.lr / 4]
    # Both optimisers run at the stepped rate (times the lazy-regularisation factor k / (k + 1)).
    set_lr(resumed.models, config, 3)
    d_lr = resumed.models.d_opt.param_groups[0]["lr"]
    assert d_lr == pytest.approx(config.lr / 4 * config.r1_interval / (config.r1_interval + 1))
    with pytest.raises(ValueError, match="multiplier"):
        TrainConfig(lr_steps=((5, 0.0),))


# ---- the GPU hand-off -------------------------------------------------------------------------------------------


def test_gpu_script_continues_a_point_and_hands_it_back_to_the_cpu(landscape_dir, tmp_path):
    """scripts/gpu_train.sh on the CPU: prepared data + resume point in, parts of a new point out, which a CPU run
    then continues."""
    trainer = train(tiny_recipe(max_iterations=2), landscape_dir, tmp_path / "run", progress=False)
    point = save_resume_point(tmp_path / "point.safetensors", trainer.models, trainer.run_state())
    prepared = tmp_path / "prepared"
    assert main(["data", "prepare", "--data", str(landscape_dir), "--out", str(prepared), "--scene-height", "128"]) == 0
    out = tmp_path / "out"
    env = {
        **os.environ,
        "RESUME_POINT": str(point),
        "DATA": str(prepared),
        "OUT": str(out),
        "DEVICE": "cpu",
        "ITERATIONS": "4",
        "BATCH": "4",
        "PYTHON": sys.executable,
        "OMP_NUM_THREADS": "1",
    }
    subprocess.run(["bash", str(REPO / "scripts" / "gpu_train.sh")], env=env, check=True, capture_output=True)
    parts = sorted(out.glob("resume.safetensors.part-*"))
    assert parts and (out / "generator.safetensors").is_file()
    joined = tmp_path / "joined.safetensors"
    joined.write_bytes(b"".join(part.read_bytes() for part in parts))
    _, meta = read_resume_point(joined)
    assert meta["step"] == 4
    # Back on the CPU: the old run folder (step 2) takes the newer point and continues from step 4.
    seed_run_from(joined, tmp_path / "run")
    continued = train(tiny_recipe(max_iterations=5), landscape_dir, tmp_path / "run", progress=False)
    assert continued.step == 5


def test_evaluation_during_training_keeps_the_best_checkpoint(landscape_dir, tmp_path):
    from infinitygan import load_generator
    from infinitygan.training.loop import BEST_FILE, read_evals

    trainer = Trainer(tiny_recipe(eval_patches=16), landscape_dir, tmp_path / "run")
    first = trainer.evaluate()
    assert first["best"] and first["swd"] > 0 and first["floor"] > 0
    best = load_generator(tmp_path / "run" / BEST_FILE)
    assert best.metadata["swd"] == first["swd"]
    trainer.train_step()
    second = trainer.evaluate()
    assert [entry["step"] for entry in read_evals(tmp_path / "run")] == [0, 1]
    kept = load_generator(tmp_path / "run" / BEST_FILE).metadata
    assert kept["trained_iterations"] == (1 if second["swd"] < first["swd"] else 0)
    assert second["best"] == (second["swd"] < first["swd"])


# ---- noise-free coarse stages --------------------------------------------------------------------------------------


def test_noise_free_stages_ignore_their_noise_images_and_the_rest_use_theirs():
    config = dataclasses.replace(tiny_generator_config(), noise_free_stages=1)
    generator = build_generator(config, init_seed=2)
    names = [name for name, _ in generator.named_parameters() if name.endswith("noise.strength")]
    assert names and not any(name.startswith("texture.stages.0.") for name in names)
    with torch.no_grad():
        for module in generator.modules():
            if hasattr(module, "strength"):
                module.strength.fill_(0.5)
    local, coords, structure_style, texture_styles, *noises = chunk_arguments(World(generator, WorldSpec(seed=1)))
    graph = ChunkGraph(generator)
    with torch.no_grad():
        base = graph(local, coords, structure_style, texture_styles, *noises)
        coarse = [noises[0] + 1.0, noises[1] - 1.0, *noises[2:]]
        assert torch.equal(graph(local, coords, structure_style, texture_styles, *coarse), base)
        finer = [*noises[:2], noises[2] + 1.0, *noises[3:]]
        assert not torch.equal(graph(local, coords, structure_style, texture_styles, *finer), base)
    # The exported graph keeps every noise input, so one feed fits every model; the unused ones change nothing.
    session = ChunkSession(chunk_graph_bytes(generator))
    assert len(session.names) == 4 + len(noises)
    assert np.array_equal(
        session.run(local, coords, structure_style, texture_styles, *coarse),
        session.run(local, coords, structure_style, texture_styles, *noises),
    )
    with pytest.raises(ValueError, match="noise_free_stages"):
        dataclasses.replace(config, noise_free_stages=len(config.texture_widths) + 1)
    with pytest.raises(ValueError, match="noise_free_stages"):
        tiny_recipe(noise_free_stages=-1)


def test_old_run_configs_resume_with_noise_at_every_stage():
    assert TrainConfig().noise_free_stages == 1  # the recipe for new runs
    assert TrainConfig.from_dict({"preset": "tiny"}).noise_free_stages == 0  # a run stored before the field
    assert tiny_recipe(noise_free_stages=2).generator_config().noise_free_stages == 2


def test_noise_gate_weights_noise_per_location_and_starts_as_the_ungated_layer():
    x, noise = torch.randn(2, 5, 6, 7), torch.randn(1, 1, 6, 7)
    plain, gated = NoiseInjection(), NoiseInjection(5)
    with torch.no_grad():
        plain.strength.fill_(0.3)
        gated.strength.fill_(0.3)
    assert torch.equal(gated(x, noise), plain(x, noise))  # the gate's conv starts at zero: weight 1 everywhere
    with torch.no_grad():
        gated.gate.weight.normal_()
        gated.gate.bias.fill_(0.5 / gated.gate.lr_mul)  # stored / lr_mul, as every equalized-lr parameter
    weight = 1.0 + torch.einsum("bchw,c->bhw", x, gated.gate.weight.flatten() * gated.gate.weight_gain) + 0.5
    torch.testing.assert_close(gated(x, noise) - x, (0.3 * noise * weight[:, None]).expand(2, 5, 6, 7))
    assert weight.std() > 0.1  # it varies per location, as the features do
    with torch.no_grad():
        gated.gate.weight.zero_()
        gated.gate.bias.fill_(-1.0 / gated.gate.lr_mul)
    assert torch.equal(gated(x, noise), x)  # a closed gate: no grain at all


def test_a_gated_generator_renders_what_its_ungated_warm_start_rendered_until_it_learns(tmp_path):
    config = dataclasses.replace(tiny_generator_config(), noise_free_stages=2)
    ungated = build_generator(config, init_seed=2)
    with torch.no_grad():
        for name, parameter in ungated.named_parameters():
            if name.endswith("noise.strength"):
                parameter.fill_(0.5)
    gated = build_generator(dataclasses.replace(config, noise_gate=True), init_seed=5)
    missing, unexpected = gated.load_state_dict(ungated.state_dict(), strict=False)
    assert not unexpected and missing and all(".noise.gate." in name for name in missing)
    assert all(name.startswith(("texture.stages.2.", "texture.stages.3.")) for name in missing)  # noisy stages only
    spec = WorldSpec(seed=1)
    assert np.array_equal(
        render_region(World(gated, spec), -24, 8, 48, 40), render_region(World(ungated, spec), -24, 8, 48, 40)
    )
    with torch.no_grad():
        for name, parameter in gated.named_parameters():
            if name.endswith("noise.gate.bias"):
                parameter.fill_(-1.0 / NOISE_GATE_LR_MUL)  # closed: the picture no longer depends on the noise images
    arguments = chunk_arguments(World(gated, spec))
    graph, (local, coords, structure_style, texture_styles, *noises) = ChunkGraph(gated), arguments
    with torch.no_grad():
        base = graph(local, coords, structure_style, texture_styles, *noises)
        other = [n + 1.0 for n in noises]
        assert torch.equal(graph(local, coords, structure_style, texture_styles, *other), base)
    session = ChunkSession(chunk_graph_bytes(gated))  # the exported graph carries the gates
    np.testing.assert_allclose(session.run(*arguments), base.numpy(), atol=1e-4)
    # The flag is the architecture's: stored with the checkpoint, read back; older configs lack it and mean no gate.
    path = save_generator(gated, tmp_path / "gated.safetensors")
    assert load_generator(path).generator.config.noise_gate
    assert TrainConfig.from_dict({"preset": "tiny"}).noise_gate is False
    assert tiny_recipe(noise_gate=True).generator_config().noise_gate


def test_a_resume_point_warm_starts_g_g_ema_and_d_of_a_new_architecture(landscape_dir, tmp_path, capsys):
    old = train(tiny_recipe(max_iterations=2, noise_free_stages=0), landscape_dir, tmp_path / "old", progress=False)
    point = save_resume_point(tmp_path / "point.safetensors", old.models, old.run_state())
    recipe = tiny_recipe(max_iterations=1, noise_free_stages=1, init_from=str(point))
    new = Trainer(recipe, landscape_dir, tmp_path / "new")
    copied, total = new.warm_start(point)
    own = sum(len(m.state_dict()) for m in (new.models.generator, new.models.g_ema, new.models.discriminator))
    assert copied == total == own  # every tensor of the new models had a match; the point's stage-0 noise did not
    for module, source in (
        (new.models.generator, old.models.generator),
        (new.models.g_ema, old.models.g_ema),
        (new.models.discriminator, old.models.discriminator),
    ):
        reference = source.state_dict()
        for name, tensor in module.state_dict().items():
            assert torch.equal(tensor, reference[name]), name
    # Through the CLI: a new run from the point trains, its generator without stage-0 noise, the step count afresh.
    argv = ["train", "--data", str(landscape_dir), "--out", str(tmp_path / "cli"), "--preset", "tiny"]
    assert main([*argv, "--init-from", str(point), "--max-iterations", "1", "--quiet", "--threads", "1"]) == 0
    meta = read_run_meta(tmp_path / "cli")
    assert meta["step"] == 1 and meta["train_config"]["noise_free_stages"] == 1
    assert main([*argv, "--max-iterations", "1", "--noise-free-stages", "9", "--out", str(tmp_path / "bad")]) == 2
    assert "noise_free_stages must be 0..4" in capsys.readouterr().err
    diverse = [*argv, "--out", str(tmp_path / "diverse"), "--max-iterations", "1", "--quiet", "--threads", "1"]
    assert main([*diverse, "--diversity-weight", "2.5"]) == 0
    assert read_run_meta(tmp_path / "diverse")["train_config"]["diversity_weight"] == 2.5
    assert main([*diverse, "--out", str(tmp_path / "gated"), "--init-from", str(point), "--noise-gate"]) == 0
    assert read_run_meta(tmp_path / "gated")["train_config"]["noise_gate"] is True
    assert main([*argv, "--diversity-weight", "-1", "--out", str(tmp_path / "bad")]) == 2
    assert "diversity_weight must be >= 0" in capsys.readouterr().err
    scene = ["--scene-weight", "1", "--scene-batch", "4", "--scene-d-lr", "0.003", "--scene-diversity-weight", "0.5"]
    assert main([*diverse, "--out", str(tmp_path / "scene"), *scene]) == 0
    recorded = read_run_meta(tmp_path / "scene")["train_config"]
    assert (recorded["scene_batch"], recorded["scene_d_lr"], recorded["scene_diversity_weight"]) == (4, 0.003, 0.5)
    assert main([*argv, "--scene-batch", "3", "--out", str(tmp_path / "bad")]) == 2
    assert "scene_batch even" in capsys.readouterr().err


def test_a_resume_point_warm_starts_the_scene_discriminator_of_a_new_recipe(landscape_dir, tmp_path):
    """A whole-scene run continued with another scene weight keeps its trained D_scene (a fresh one would undo it)."""
    old_recipe = tiny_recipe(max_iterations=2, scene_weight=1.0, scene_interval=1)
    old = train(old_recipe, landscape_dir, tmp_path / "old", progress=False)
    point = save_resume_point(tmp_path / "point.safetensors", old.models, old.run_state())
    new = Trainer(
        tiny_recipe(max_iterations=1, scene_weight=3.0, init_from=str(point)), landscape_dir, tmp_path / "new"
    )
    copied, total = new.warm_start(point)
    assert copied == total
    reference = old.models.scene_discriminator.state_dict()
    for name, tensor in new.models.scene_discriminator.state_dict().items():
        assert torch.equal(tensor, reference[name]), name


# ---- G_T's gain with respect to z_S -----------------------------------------------------------------------------


def test_structure_gain_is_the_relative_change_per_relative_perturbation():
    z_s = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(1)) * 7.0 + 2.0  # no test-order flakes
    styles, noises = [], []
    for texture, expected in ((lambda z, s, n: 3.0 * z, 1.0), (lambda z, s, n: torch.ones_like(z), 0.0)):
        images = texture(z_s, styles, noises)
        gain = structure_gain(texture, z_s, images, styles, noises, torch.Generator().manual_seed(0))
        assert gain.shape == (3,)
        # A linear G_T moves the image by as many % as z_S moved (within the noise draw's RMS spread).
        assert torch.allclose(gain, torch.full((3,), expected), atol=0.15)
    # An image that is a small difference of large terms (the trained teacher's case) moves far more than z_S.
    cancelling = lambda z, s, n: (z - z_s) + 0.01 * z_s  # noqa: E731
    rng = torch.Generator().manual_seed(0)
    gain = structure_gain(cancelling, z_s, cancelling(z_s, styles, noises), styles, noises, rng)
    assert torch.allclose(gain, torch.full((3,), 100.0), rtol=0.15)


def test_structure_gain_weight_adds_the_penalty_to_the_path_length_step(landscape_dir, tmp_path):
    with pytest.raises(ValueError, match="structure_gain_weight"):
        tiny_recipe(structure_gain_weight=-1.0)
    assert TrainConfig.from_dict({"preset": "tiny"}).structure_gain_weight == 0.0  # older runs: off
    plain = train(tiny_recipe(max_iterations=2), landscape_dir, tmp_path / "plain", progress=False)
    assert "zs_gain" not in plain.losses
    probe = dict(cells=5, psi=1.0, windows=4, batch=4)
    g_plain = plain.models.generator
    assert structure_gain_probe(g_plain, **probe) == structure_gain_probe(g_plain, **probe)  # a fixed probe
    # With the path-length weight at 0, the path-length step moves G only through the gain penalty.
    for weight in (0.0, 1.0):
        trainer = Trainer(
            tiny_recipe(pl_weight=0.0, structure_gain_weight=weight), landscape_dir, tmp_path / f"w{weight}"
        )
        before = {k: v.detach().clone() for k, v in trainer.models.generator.named_parameters()}
        _, top_px, _ = trainer.real_batch()
        logged = path_length_step(trainer.models, trainer.config, top_px, torch.Generator().manual_seed(0))
        moved = [k for k, v in trainer.models.generator.named_parameters() if not torch.equal(v, before[k])]
        if weight == 0.0:
            assert moved == [] and "zs_gain" not in logged
        else:
            assert logged["zs_gain"] > 0
            assert any(k.startswith("texture.") for k in moved)

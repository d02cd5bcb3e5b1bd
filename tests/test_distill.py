"""The MobileStyleGAN student: its separable modulated conv, its world's seams, and distillation (resumable, and it
learns)."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from infinitygan import World, WorldSpec, build_generator, load_generator, render_region
from infinitygan.checkpoint import MODELS, SHIPPED_MODEL, TEACHER_MODEL, LoadedGenerator, save_generator
from infinitygan.config import preset_config
from infinitygan.distill import DistillConfig, Distiller, DistillError, build_student, distill
from infinitygan.generator import WindowInputs
from infinitygan.layers import SeparableModulatedConv2d
from infinitygan.sampling import sample_coords, sample_local, sample_noises
from infinitygan.world import noise_images
from tests.model_fixtures import lively_tiny_generator

REPO = Path(__file__).resolve().parents[1]
TINY = DistillConfig(student_preset="tiny-mobile", batch=2, cells=10, lr=5e-3, seed=3, structure_warmup=2)
# The first students' form: the teacher's G_S copied and frozen (still loads and resumes).
SHARED_GS = dataclasses.replace(preset_config("tiny-mobile"), structure_conv="full")


def test_separable_conv_folds_its_demodulation_into_the_pointwise_weights_and_keeps_the_margin():
    torch.manual_seed(0)
    conv = SeparableModulatedConv2d(8, 12, 3, 16)
    x, style = torch.randn(2, 8, 20, 20), torch.randn(2, 16)
    out = conv(x, style)
    assert out.shape == (2, 12, 18, 18)  # a valid 3x3: one pixel per side, like the full modulated conv
    # Explicitly: modulate, depthwise, pointwise, then divide each output channel by its weight energy.
    s = conv.style_scale(style)
    depthwise = conv.depthwise * conv.depthwise_gain
    pointwise = conv.pointwise * conv.pointwise_gain
    plain = F.conv2d(F.conv2d(x * s, depthwise, groups=8), pointwise)
    energy = (pointwise[:, :, 0, 0].pow(2) * depthwise.pow(2).sum(dim=(1, 2, 3))[None]).sum(dim=1)
    assert torch.allclose(out, plain / torch.sqrt(energy + 1e-8)[None, :, None, None], atol=1e-5)
    # For a fixed style vector the modulation folds into the depthwise weights: one depthwise + one pointwise conv.
    folded = (depthwise * s[0, :, 0, 0, None, None, None]).clone()
    assert torch.allclose(F.conv2d(F.conv2d(x[:1], folded, groups=8), conv.fused_pointwise()), out[:1], atol=1e-5)
    # Unit-RMS modulation: scaling the style's affine output does not change the result.
    assert torch.allclose(conv.style_scale(style).pow(2).mean(dim=1), torch.ones(2, 1, 1), atol=1e-4)


@pytest.mark.parametrize(
    ("preset", "copied"), [("tiny-mobile", ("mapping.",)), (SHARED_GS, ("mapping.", "structure."))]
)
def test_the_student_copies_the_teachers_mapping_and_a_g_s_of_its_form_and_trains_the_rest(preset, copied):
    teacher = lively_tiny_generator()
    student = build_student(teacher, preset)
    for name, tensor in teacher.state_dict().items():
        if name.startswith(copied):
            assert torch.equal(student.state_dict()[name], tensor), name
    trainable = {name for name, p in student.named_parameters() if p.requires_grad}
    assert any(name.startswith("texture.") for name in trainable)
    assert all(not name.startswith(copied) for name in trainable)
    assert any(name.startswith("structure.") for name in trainable) == ("structure." not in copied)
    assert student.config.noise_free_stages == 0
    quiet_teacher = build_generator(dataclasses.replace(teacher.config, noise_free_stages=1))
    assert build_student(quiet_teacher, preset).config.noise_free_stages == 1  # no noise where the teacher has none
    with pytest.raises(DistillError, match="do not match|regresses"):
        build_student(teacher, "small-mobile")  # the same cell size, but another mapping network and z_S width
    with pytest.raises(DistillError, match="do not match"):
        build_student(teacher, dataclasses.replace(preset_config("small-mobile"), structure_width=12))


def test_a_separable_g_s_keeps_the_margins_and_costs_far_fewer_macs():
    full, separable = build_generator("small"), build_generator("small-mobile")
    assert separable.config.structure_conv == "separable"
    assert separable.geometry.structure_margin == full.geometry.structure_margin
    local = torch.randn(1, 32, 32, 32)  # 4 blocks of valid 7x7 convs: 3 cells off each side per block
    coords = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        z_full = full.structure(local, coords, torch.randn(1, 128))
        z_separable = separable.structure(local, coords, torch.randn(1, 128))
    assert z_full.shape == z_separable.shape == (1, 48, 8, 8)
    full_params = sum(p.numel() for p in full.structure.parameters())
    separable_params = sum(p.numel() for p in separable.structure.parameters())
    assert separable_params * 5 < full_params


def test_a_student_world_is_seamless_and_reproducible():
    """Any tile renders alone and stitches exactly: a 512 render equals its four 256 quarters, bit for bit."""
    student = build_student(lively_tiny_generator(), "tiny-mobile")
    with torch.no_grad():
        for name, parameter in student.named_parameters():
            if name.endswith("noise.strength"):
                parameter.fill_(0.2)  # noise must matter, so a misaligned noise image would show
        student.texture.output_noise.weights.conv.weight.normal_()  # and so must the output noise
    world = World(student, WorldSpec(seed=5))
    whole = render_region(world, -256, -256, 512, 512)
    for dy in (0, 256):
        for dx in (0, 256):
            quarter = render_region(World(student, WorldSpec(seed=5)), -256 + dx, -256 + dy, 256, 256)
            assert np.array_equal(whole[dy : dy + 256, dx : dx + 256], quarter)


def test_the_students_output_noise_reads_its_teachers_last_stage_noise_at_the_same_world_positions():
    """A 3-stage student has no layer at its 4-stage teacher's last step; its output noise (layer 6, step 1 px) is
    hashed like the teacher's layer 6, so it is the very noise behind the teacher's finest texture."""
    teacher = lively_tiny_generator()
    student = build_student(teacher, "tiny-mobile")
    t, s = teacher.geometry, student.geometry
    assert len(s.layer_sizes(10)) == student.texture.num_noises == 7 and s.layer_step(6) == t.layer_step(6) == 1
    offset = t.layer_origin(6) - s.layer_origin(6)  # student element k sits on teacher element k - offset
    assert offset == int(offset) > 0
    for row0, col0 in ((0, 0), (5, -3), (-11, 7)):
        teacher_noise = noise_images(t, 9, row0, col0, 10, 10)[6][0, 0]
        student_noise = noise_images(s, 9, row0, col0, 10, 10)[6][0, 0]
        n, k = teacher_noise.shape[-1], int(offset)
        assert torch.equal(student_noise[k : k + n, k : k + n], teacher_noise)
    # It starts at zero: a student warm-started from one without it renders what that one rendered.
    inputs = sample_window(student)
    with torch.no_grad():
        image = student.synthesize(*inputs)[0]
        student.texture.output_noise.weights.conv.weight.normal_()
        assert not torch.equal(student.synthesize(*inputs)[0], image)
        student.texture.output_noise.weights.conv.weight.zero_()
        inputs[0].noises[-1].normal_()
        assert torch.equal(student.synthesize(*inputs)[0], image)


def sample_window(generator):
    rng = torch.Generator().manual_seed(0)
    cells = 8
    top_px = torch.zeros(1)
    inputs = WindowInputs(
        sample_local(generator, 1, cells, rng),
        sample_coords(generator, top_px, cells, rng, jitter=False),
        sample_noises(generator, 1, cells, rng),
    )
    z = torch.randn(1, generator.config.global_dim, generator=rng)
    return inputs, z, generator.texture_styles(z)


def teacher_model() -> LoadedGenerator:
    return LoadedGenerator.in_memory(lively_tiny_generator())


def test_distillation_resumes_exactly(tmp_path: Path):
    teacher = teacher_model()
    straight = distill(teacher, tmp_path / "straight", TINY, max_steps=4, save_every=100, log=lambda _: None)
    distill(teacher, tmp_path / "resumed", TINY, max_steps=2, save_every=100, log=lambda _: None)
    resumed = distill(teacher, tmp_path / "resumed", TINY, max_steps=4, save_every=100, log=lambda _: None)
    assert resumed.step_count == straight.step_count == 4
    for name, tensor in straight.student.state_dict().items():
        assert torch.equal(resumed.student.state_dict()[name], tensor), name
        assert torch.equal(resumed.student_ema.state_dict()[name], straight.student_ema.state_dict()[name]), name
    saved = load_generator(tmp_path / "resumed" / "student.safetensors")
    for name, tensor in saved.generator.state_dict().items():  # what is saved is the moving average
        assert torch.equal(tensor, straight.student_ema.state_dict()[name]), name
    assert saved.metadata["distilled_from"] == teacher.model_hash and saved.metadata["distill_steps"] == 4
    other = LoadedGenerator.in_memory(build_generator("tiny", init_seed=9))
    with pytest.raises(DistillError, match="distils teacher"):
        Distiller.resume(tmp_path / "resumed", other)


@pytest.mark.parametrize("half_pixel", ["mean", "lanczos3"])
def test_align_puts_the_teacher_on_the_students_pixel_positions(half_pixel):
    from fractions import Fraction

    from infinitygan.distill import align

    def ramp(size: int, origin: float, frequency: float = 0.0) -> torch.Tensor:
        """An image whose pixel (r, c) shows world position (origin + r, origin + c): a ramp (and a sinusoid)."""
        position = origin + torch.arange(size, dtype=torch.float64)
        values = 0.01 * position + 0.3 * torch.sin(2 * torch.pi * frequency * position)
        return (values[:, None] + 2 * values[None, :]).float().expand(1, 3, size, size)

    shift = Fraction(-47, 2)  # small-mobile against small: the student's pixel 0 sits at the teacher's -23.5
    teacher, student = ramp(120, 0.0), ramp(70, float(shift))
    t, s = align(teacher, student, shift, half_pixel)
    assert t.shape == s.shape and t.shape[-1] >= 40
    torch.testing.assert_close(t, s, atol=1e-4, rtol=0)  # a ramp: both filters interpolate it exactly
    # Detail 3.3 px across: the 2x2 mean keeps 0.45 of it, Lanczos-3 0.84 (what a student learns to draw).
    t, s = align(ramp(120, 0.0, 0.3), ramp(70, float(shift), 0.3), shift, half_pixel)
    error = float((t - s).abs().mean() / s.sub(s.mean()).abs().mean())
    assert error < 0.2 if half_pixel == "lanczos3" else error > 0.3, error


def test_a_resumed_distillation_may_add_learning_rate_steps_but_not_rewrite_its_past(tmp_path: Path):
    teacher = teacher_model()
    distill(teacher, tmp_path / "run", TINY, max_steps=3, save_every=100, log=lambda _: None)
    with pytest.raises(DistillError, match="cannot start before it"):
        Distiller.resume(tmp_path / "run", teacher, lr_steps=((2, 0.5),))
    lowered = dataclasses.replace(TINY, lr_steps=((4, 0.25),))
    run = distill(teacher, tmp_path / "run", lowered, max_steps=5, save_every=100, log=lambda _: None)
    assert run.config.lr_steps == ((4, 0.25),) and run.config.lr_at(3) == TINY.lr
    assert all(group["lr"] == 0.25 * TINY.lr for opt in (run.g_opt, run.d_opt) for group in opt.param_groups)
    # The schedule is stored with the run: resuming without --lr-step keeps it.
    assert Distiller.resume(tmp_path / "run", teacher).config.lr_steps == ((4, 0.25),)
    with pytest.raises(ValueError, match="multiplier"):
        DistillConfig(lr_steps=((10, 2.0),))


def test_a_new_teacher_is_distilled_from_the_old_student(tmp_path: Path):
    old = distill(teacher_model(), tmp_path / "old", TINY, max_steps=2, save_every=100, log=lambda _: None)
    new_teacher = LoadedGenerator.in_memory(lively_tiny_generator(init_seed=4))
    config = dataclasses.replace(TINY, init_from=str(tmp_path / "old" / "student.safetensors"))
    run = distill(new_teacher, tmp_path / "new", config, max_steps=0, log=lambda _: None)
    for name, tensor in run.student.state_dict().items():
        source = new_teacher.generator if name.startswith("mapping") else old.student_ema  # G_S, G_T: the saved ones
        assert torch.equal(tensor, source.state_dict()[name]), name
    # Resuming that run takes its own state, not the warm start again (which may be gone by then).
    (tmp_path / "old" / "student.safetensors").unlink()
    assert distill(new_teacher, tmp_path / "new", max_steps=1, log=lambda _: None).step_count == 1
    wrong = save_generator(build_generator("tiny"), tmp_path / "teacher-shaped.safetensors")
    with pytest.raises(DistillError, match="not a student of this preset"):
        distill(new_teacher, tmp_path / "bad", dataclasses.replace(TINY, init_from=str(wrong)), max_steps=0)


def test_the_saved_student_is_the_moving_average_of_the_trained_one():
    teacher = teacher_model()
    averaged = Distiller(teacher, dataclasses.replace(TINY, ema_beta=0.5, structure_warmup=0))
    start = {k: v.clone() for k, v in averaged.student.state_dict().items()}
    averaged.step()
    name = next(n for n, p in averaged.student.named_parameters() if p.requires_grad and n.startswith("texture."))
    trained, ema = averaged.student.state_dict()[name], averaged.student_ema.state_dict()[name]
    assert not torch.equal(trained, start[name])
    torch.testing.assert_close(ema, 0.5 * start[name] + 0.5 * trained)
    plain = Distiller(teacher, dataclasses.replace(TINY, ema_beta=0.0, structure_warmup=0))
    plain.step()
    for key, tensor in plain.student.state_dict().items():
        assert torch.equal(plain.student_ema.state_dict()[key], tensor), key
    with pytest.raises(ValueError, match="ema_beta"):
        DistillConfig(ema_beta=1.0)
    with pytest.raises(ValueError, match="half_pixel"):
        DistillConfig(half_pixel="cubic")


def test_r1_regularises_the_discriminator_on_its_interval_and_old_runs_read_as_without_it():
    teacher = teacher_model()
    base = dataclasses.replace(TINY, structure_warmup=0, r1_interval=2)
    with_r1 = Distiller(teacher, dataclasses.replace(base, r1_gamma=10.0))
    without = Distiller(teacher, dataclasses.replace(base, r1_gamma=0.0))
    without.discriminator.load_state_dict(with_r1.discriminator.state_dict())
    with_r1.step(), without.step()
    # Same inputs, same D before the step: the two D differ by the penalty's gradient alone.
    assert with_r1.last["d"] == without.last["d"] and with_r1.last["r1"] > 0 and "r1" not in without.last
    assert any(
        not torch.equal(with_r1.discriminator.state_dict()[k], v) for k, v in without.discriminator.state_dict().items()
    )
    assert ["r1" in with_r1.step() for _ in range(2)] == [False, True]  # steps 1 and 2 of an interval of 2
    stored = json.loads(with_r1.config.to_json())
    del stored["r1_gamma"]  # a run saved before R1 existed trained without it
    assert DistillConfig.from_json(json.dumps(stored)).r1_gamma == 0.0
    del stored["detail_weight"]  # nor the detail loss
    assert DistillConfig.from_json(json.dumps(stored)).detail_weight == 0.0
    with pytest.raises(ValueError, match="r1_gamma"):
        DistillConfig(r1_gamma=-1.0)
    with pytest.raises(ValueError, match="r1_interval"):
        DistillConfig(r1_interval=0)


def test_a_d_warmup_trains_the_discriminator_alone_before_the_student():
    teacher = teacher_model()
    run = Distiller(teacher, dataclasses.replace(TINY, structure_warmup=1, d_warmup=2))
    student = {k: v.clone() for k, v in run.student.state_dict().items()}
    run.step()  # the structure warmup: G_S learns z_S
    moved = {k for k, v in run.student.state_dict().items() if not torch.equal(v, student[k])}
    assert moved and all(k.startswith("structure.") for k in moved)
    after_structure = {k: v.clone() for k, v in run.student.state_dict().items()}
    d_before = {k: v.clone() for k, v in run.discriminator.state_dict().items()}
    for _ in range(2):
        losses = run.step()
        assert "d" in losses and "pixel" not in losses
    for name, tensor in run.student.state_dict().items():
        assert torch.equal(tensor, after_structure[name]), name
    assert any(not torch.equal(v, d_before[k]) for k, v in run.discriminator.state_dict().items())
    assert "pixel" in run.step()
    assert any(not torch.equal(v, after_structure[k]) for k, v in run.student.state_dict().items())
    with pytest.raises(ValueError, match="d_warmup"):
        DistillConfig(d_warmup=-1)
    with pytest.raises(ValueError, match="adversarial_weight"):
        DistillConfig(d_warmup=10, adversarial_weight=0.0)


def test_the_detail_loss_is_a_sliced_wasserstein_distance_of_fine_neighbourhoods():
    from infinitygan.distill import detail_swd

    rng = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, 40, 40, generator=rng) * 0.2
    same = detail_swd(image, image.clone(), torch.Generator().manual_seed(1))
    assert float(same) == 0.0
    # A blur (what L1 converges to on detail it cannot place) and a sharpening are both far; more, the further.
    blurred = F.avg_pool2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    distances = [float(detail_swd(x, image, torch.Generator().manual_seed(1))) for x in (image * 0.9, blurred)]
    assert 0 < distances[0] < distances[1]
    assert float(detail_swd(image * 2.0, image, torch.Generator().manual_seed(1))) > distances[0]
    # Its gradient reaches the student's image; a run with it trains and logs it.
    student = image.clone().requires_grad_(True)
    detail_swd(student * 0.5, image, torch.Generator().manual_seed(1)).backward()
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    run = Distiller(teacher_model(), dataclasses.replace(TINY, structure_warmup=0, detail_weight=1.0))
    assert run.step()["detail"] > 0
    with pytest.raises(ValueError, match="detail_levels"):
        DistillConfig(detail_levels=0)


def test_a_run_starts_from_another_runs_student_and_discriminator(tmp_path: Path):
    teacher = teacher_model()
    old = distill(teacher, tmp_path / "old", TINY, max_steps=3, save_every=100, log=lambda _: None)
    stronger = dataclasses.replace(TINY, adversarial_weight=0.2, init_from=str(tmp_path / "old"))
    run = distill(teacher, tmp_path / "new", stronger, max_steps=0, log=lambda _: None)
    for name, tensor in old.discriminator.state_dict().items():
        assert torch.equal(run.discriminator.state_dict()[name], tensor), name
    for name, tensor in old.student.state_dict().items():
        assert torch.equal(run.student.state_dict()[name], tensor), name
    assert run.step_count == 0 and run.config.adversarial_weight == 0.2
    # Its windows decide D's input size: a run on other windows cannot take it.
    with pytest.raises(DistillError, match="does not fit"):
        distill(teacher, tmp_path / "wider", dataclasses.replace(stronger, cells=12), max_steps=0, log=lambda _: None)


def test_distillation_brings_the_student_closer_to_its_teacher():
    # The pixel terms, alone: the detail loss matches distributions of detail, not pixels (its own test above).
    run = Distiller(teacher_model(), dataclasses.replace(TINY, detail_weight=0.0))
    probe = torch.Generator().manual_seed(123)
    inputs = run._inputs(probe, 4)

    def distance() -> tuple[float, float]:
        with torch.no_grad():
            target, image, structure = run._render_pair(inputs, 0.8)
            return float((target - image).abs().mean()), float(structure)

    before, structure_before = distance()
    for _ in range(40):
        losses = run.step()
    after, structure_after = distance()
    assert after < 0.7 * before, (before, after)
    assert structure_after < 0.85 * structure_before, (structure_before, structure_after)
    assert {"pixel", "wavelet", "structure"} <= set(losses)  # past the warm-up: the joint step


def test_distill_cli_needs_a_stopping_rule_and_writes_a_loadable_student(tmp_path: Path):
    teacher = save_generator(lively_tiny_generator(), tmp_path / "teacher.safetensors")
    base = [sys.executable, "-m", "app.cli", "distill", "--teacher", str(teacher), "--out", str(tmp_path / "run")]
    refused = subprocess.run(base, cwd=REPO, capture_output=True, text=True)
    assert refused.returncode != 0 and "--max-steps or --max-minutes" in refused.stderr
    assert "Traceback" not in refused.stderr
    negative = subprocess.run(
        [*base, "--max-steps", "1", "--adversarial-weight", "-1"], cwd=REPO, capture_output=True, text=True
    )
    assert negative.returncode != 0 and "must be >= 0" in negative.stderr and "Traceback" not in negative.stderr
    bad_step = subprocess.run([*base, "--max-steps", "1", "--lr-step", "10"], cwd=REPO, capture_output=True, text=True)
    assert bad_step.returncode == 2 and "ITERATION:MULTIPLIER" in bad_step.stderr and "Traceback" not in bad_step.stderr
    done = subprocess.run(
        [*base, "--preset", "tiny-mobile", "--max-steps", "2", "--batch", "1", "--cells", "10"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    student = load_generator(tmp_path / "run" / "student.safetensors")
    assert student.generator.config.texture_conv == "separable"
    assert render_region(World(student.generator, WorldSpec(seed=1)), 0, 0, 64, 64).shape == (64, 64, 3)


def test_sigterm_stops_a_distillation_with_its_state_saved(tmp_path: Path):
    teacher = save_generator(lively_tiny_generator(), tmp_path / "teacher.safetensors")
    command = [
        sys.executable, "-m", "infinitygan", "distill", "--teacher", str(teacher), "--out", str(tmp_path / "run"),
        "--preset", "tiny-mobile", "--max-minutes", "10", "--batch", "1", "--cells", "10", "--save-every", "100000",
        "--structure-warmup", "1",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "distilling into" in process.stdout.readline()
        time.sleep(3.0)  # some steps, none of them saved (--save-every is far away)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "stopped by a signal" in out and "Traceback" not in err
    resumed = Distiller.resume(tmp_path / "run", load_generator(teacher))
    assert resumed.step_count >= 1


def test_the_student_reads_the_teachers_structure_at_unit_scale(tmp_path: Path):
    """A long-trained G_S drifts to large activations (RMS 140 for the 28k-step teacher); a fresh student would
    start with outputs that large. A student copying G_S takes 1 / RMS(z_S) as its G_T input gain, stored in its
    config; one with its own G_S learns the teacher's z_S divided by that RMS, and takes gain 1."""
    from infinitygan.distill import structure_rms

    teacher = lively_tiny_generator()
    with torch.no_grad():
        for name, parameter in teacher.structure.named_parameters():
            if name.endswith("bias"):
                parameter.add_(50.0)  # z_S far from unit scale
    rms = structure_rms(teacher)
    assert rms > 10
    student = build_student(teacher, SHARED_GS)
    assert student.config.texture_input_gain == pytest.approx(1.0 / rms)
    saved = load_generator(save_generator(student, Path(tempfile.mkdtemp()) / "s.safetensors"))
    assert saved.generator.config.texture_input_gain == student.config.texture_input_gain
    assert build_generator("tiny").config.texture_input_gain == 1.0  # teachers are untouched
    run = Distiller(LoadedGenerator.in_memory(teacher), TINY)
    assert run.student.config.texture_input_gain == 1.0 and run.structure_scale == pytest.approx(1.0 / rms)
    # A run started with a shared G_S resumes as one, though the preset has a separable G_S now.
    shared = Distiller(LoadedGenerator.in_memory(teacher), TINY, build_student(teacher, SHARED_GS))
    shared.step()
    shared.save(tmp_path / "shared")
    resumed = Distiller.resume(tmp_path / "shared", LoadedGenerator.in_memory(teacher))
    assert resumed.student.config.structure_conv == "full" and resumed.step_count == 1 and not resumed.own_structure


@pytest.mark.parametrize("preset", ["tiny-mobile", SHARED_GS])
def test_the_error_breakdown_splits_the_students_error_between_g_s_and_g_t(preset):
    run = Distiller(teacher_model(), dataclasses.replace(TINY, student_preset=preset))
    result = run.error_breakdown(windows=4)
    assert set(result) == {
        "student",
        "teacher_g_t_on_student_z_s",
        "student_g_t_on_teacher_z_s",
        "z_s_relative_l1",
        "teacher_gain",
        "student_gain",
        "teacher_other_noise",
    }
    assert all(np.isfinite(v) and v >= 0 for v in result.values())
    assert result["teacher_other_noise"] > 0  # the lively teacher's noise shows
    assert result["student"] > 0 and result["teacher_gain"] > 0 and result["student_gain"] > 0
    if run.own_structure:  # an untrained G_S: far from the teacher's z_S, and the teacher's G_T shows it
        assert result["z_s_relative_l1"] > 0.1 and result["teacher_g_t_on_student_z_s"] > 0
    else:  # a copied G_S is exact: the whole error is G_T's
        assert result["z_s_relative_l1"] == 0 and result["teacher_g_t_on_student_z_s"] == 0
        assert result["student_g_t_on_teacher_z_s"] == result["student"]
    assert run.error_breakdown(windows=4) == result  # fixed windows and perturbations
    with torch.no_grad():
        for name, parameter in run.teacher.named_parameters():
            if name.endswith("noise.strength"):
                parameter.zero_()
    assert run.error_breakdown(windows=4)["teacher_other_noise"] == 0  # a teacher without noise: nothing unreachable


@pytest.mark.parametrize(
    ("student", "teacher"),
    [
        (SHIPPED_MODEL, TEACHER_MODEL),
        *((MODELS / "domains" / "students" / f"{name}.safetensors", MODELS / "domains" / f"{name}.safetensors")
          for name in ("alpine", "dusk")),
    ],
    ids=["served", "alpine", "dusk"],
)  # fmt: skip
def test_each_shipped_student_was_distilled_from_the_teacher_shipped_beside_it(student: Path, teacher: Path) -> None:
    """A teacher that moves on (a new model) leaves its student behind until it is distilled again: this fails then."""
    loaded = load_generator(student)
    assert loaded.generator.config.preset == "small-mobile"
    assert loaded.metadata["distilled_from"] == load_generator(teacher).model_hash

"""Shared by the training tests: a tiny training recipe (the fixtures they share live in tests/conftest.py)."""

from __future__ import annotations

from infinitygan.training import TrainConfig


def tiny_recipe(**overrides) -> TrainConfig:
    """The tiny preset with small D, batch 4 and every lazy regulariser every other step: fast, yet every phase runs."""
    values = dict(
        preset="tiny",
        batch=4,
        r1_interval=2,
        pl_interval=2,
        sample_every=0,
        checkpoint_minutes=60.0,
        scene_height=128,
        d_base_width=8,
        d_max_width=32,
    )
    values.update(overrides)
    return TrainConfig(**values)

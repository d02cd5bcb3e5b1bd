"""InfinityGAN training: the recipe (config), the loss phases, run state and resume points, and the run driver."""

from infinitygan.training.config import TrainConfig
from infinitygan.training.loop import GENERATOR_FILE, Trainer, train
from infinitygan.training.state import ResumeError, save_resume_point, seed_run_from

__all__ = ["GENERATOR_FILE", "ResumeError", "TrainConfig", "Trainer", "save_resume_point", "seed_run_from", "train"]

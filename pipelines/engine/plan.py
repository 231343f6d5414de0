"""How long a run trains and in which order it sees the examples: the step count (training.max_steps,
or num_train_epochs over the global batch) and the sampler (grouped by length when asked)."""

from __future__ import annotations

import math

from pipelines.config import Recipe, TrainingSection
from pipelines.data.sampler import GlobalBatchSampler
from pipelines.errors import LmforgeError


def resolve_max_steps(t: TrainingSection, n_examples: int, world: int) -> int:
    if t.max_steps > 0:
        return t.max_steps
    per_step = t.per_device_train_batch_size * t.gradient_accumulation_steps * world
    return max(1, math.ceil(t.num_train_epochs * n_examples / per_step))


def training_sampler(task, train_data, recipe: Recipe, world: int) -> GlobalBatchSampler:
    """The sampler of a training run: the recipe's batch split and seed, and the task's example
    lengths when training.group_by_length is set."""
    t = recipe.training
    lengths = task.example_lengths(train_data) if t.group_by_length else None
    if t.group_by_length and lengths is None:
        raise LmforgeError(f"recipe '{recipe.name}', training.group_by_length: task '{task.name}' has no "
                           "per-example lengths to group by; set training.group_by_length=false")
    return GlobalBatchSampler(len(train_data), t.per_device_train_batch_size, world, t.seed,
                              t.gradient_accumulation_steps, lengths=lengths)

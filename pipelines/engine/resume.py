"""What a resume takes from the checkpoint and what from the recipe.

A checkpoint records the settings that shape the optimisation (trainer_state.json "settings"):
learning rate, schedule type, warmup, total steps, global batch and the AdamW hyper-parameters.
The optimizer and scheduler states restored from it carry the OLD learning rate and AdamW values,
so a recipe changed at resume used to be half applied without a word (new schedule shape, old
rate). Now the recipe wins: each change is named old -> new in one warning line and applied from
the resumed step (the schedule is recomputed for the new total at the scheduler's own step).
Resuming into the same output folder with other identity fields is refused earlier, by
pipelines/runs/run_folder.py; this covers what that allows (a longer run) and checkpoints resumed from
elsewhere.
"""

from __future__ import annotations

from pipelines.engine.time_budget import schedule_length
from pipelines.errors import LmforgeError, warn

COMPARED = ("learning_rate", "lr_scheduler_type", "warmup_steps", "max_steps", "time_budget", "global_batch",
            "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon")


def warmup_steps(t, max_steps: int) -> int:
    """The schedule object's warmup (virtual steps under training.time_budget)."""
    return schedule_length(t, max_steps)[0]


def schedule_settings(t, max_steps: int, world: int) -> dict:
    """The settings a checkpoint records (batch split and world size for information)."""
    return {"learning_rate": t.learning_rate, "lr_scheduler_type": t.lr_scheduler_type,
            "warmup_steps": warmup_steps(t, max_steps), "max_steps": max_steps, "time_budget": t.time_budget,
            "global_batch": t.per_device_train_batch_size * t.gradient_accumulation_steps * world,
            "per_device_train_batch_size": t.per_device_train_batch_size,
            "gradient_accumulation_steps": t.gradient_accumulation_steps, "world_size": world,
            "weight_decay": t.weight_decay, "adam_beta1": t.adam_beta1, "adam_beta2": t.adam_beta2,
            "adam_epsilon": t.adam_epsilon}


def changes(old: dict, new: dict) -> list[str]:
    return [f"{k} {old[k]} -> {new[k]}" for k in COMPARED if k in old and old[k] != new[k]]


def apply_recipe_schedule(t, optimizer, scheduler, last_epoch: int) -> None:
    """Put the recipe's learning rate, schedule and AdamW settings into the restored optimizer and
    scheduler, at the scheduler's step `last_epoch`. The scheduler object was built from the recipe
    (its lambdas have the new warmup and total); only its base rates and step came from the checkpoint."""
    if not hasattr(scheduler, "lr_lambdas"):
        raise LmforgeError(f"training.lr_scheduler_type={t.lr_scheduler_type}: this schedule cannot be moved to a "
                           "resumed step; resume with the checkpoint's settings")
    groups = optimizer.param_groups
    scheduler.base_lrs = [t.learning_rate] * len(groups)
    scheduler.last_epoch = last_epoch
    lrs = [base * fn(last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for i, (group, lr) in enumerate(zip(groups, lrs)):
        group.update(lr=lr, initial_lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon)
        if i == 0:  # build_optimizer: group 0 decays, group 1 (biases, norms) never does
            group["weight_decay"] = t.weight_decay
    scheduler._last_lr = lrs


def check_resumed_schedule(t, optimizer, scheduler, state: dict, start_step: int, max_steps: int, world: int):
    """Apply the recipe's settings where they differ from the checkpoint's, saying so. A checkpoint
    without settings or scheduler state (older lmforge) gets the recipe's schedule at its step."""
    where = state.get("checkpoint", "the checkpoint")
    if start_step > max_steps:
        raise LmforgeError(f"{where} is at step {start_step} but training.max_steps is {max_steps}: nothing to train")
    old = state.get("settings")
    if old is None or not state.get("restored_objects"):
        warn(f"{where} records no schedule (written by an older lmforge): the recipe's schedule is used from "
             f"step {start_step}")
        apply_recipe_schedule(t, optimizer, scheduler, start_step)
        return
    new = schedule_settings(t, max_steps, world)
    diff = changes(old, new)
    if not diff:
        return
    batch = "; the data order follows the new global batch" if old.get("global_batch") != new["global_batch"] else ""
    warn(f"resuming {where} with {', '.join(diff)}: the new values apply from step {start_step}{batch}")
    apply_recipe_schedule(t, optimizer, scheduler, scheduler.last_epoch)

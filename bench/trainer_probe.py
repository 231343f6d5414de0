"""What the HF Trainer baselines record, without changing what the Trainer computes: the end time of
every optimizer step (a TrainerCallback) and every step's own loss (the Trainer logs the MEAN of the
losses since its previous log; lmforge logs the loss of the logged step itself, so the loss curves
compare the same quantity only when both sides report the step's own loss)."""

from __future__ import annotations

import time

from transformers import Trainer, TrainerCallback


class StepClock(TrainerCallback):
    """time.perf_counter() at on_step_end, i.e. after the optimizer and scheduler step."""

    def __init__(self):
        self.step_ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.step_ends.append(time.perf_counter())


class StepLossTrainer(Trainer):
    """Trainer that keeps each step's returned (detached) loss tensor: no host sync in the loop;
    read once after training. With gradient accumulation 1, that is the step's mean loss."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_losses = []

    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        self.step_losses.append(loss)
        return loss

    def losses_every(self, every: int) -> dict[int, float]:
        return {i + 1: float(v) for i, v in enumerate(self.step_losses) if (i + 1) % every == 0}

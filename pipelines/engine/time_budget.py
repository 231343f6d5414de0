"""training.time_budget: a run that ends at a wall-time budget, with its schedule laid over the budget.

cramming (Geiping & Goldstein 2022) makes "what can you reach in N hours" the unit of comparison, and
lays the learning-rate schedule over the budget rather than over a step count that nobody can know in
advance: a budgeted run always finishes its warmup and decay.

- Progress = max(elapsed / budget, step / max_steps): the budget or max_steps, whichever comes first,
  ends the run, and the schedule (any transformers schedule: linear, cosine, warmup_stable_decay, ...)
  reaches its end at that moment. The transformers schedule is built over RESOLUTION virtual steps
  and set to round(progress x RESOLUTION) after every optimizer step.
- Elapsed time is the training loop's wall time (evaluations and checkpoints included; setup, the
  tokenizer and data preparation not). A checkpoint records it and a resume continues from it (the
  steps redone after a resume are not counted twice).
- Several processes must use one clock, or the replicas would take different rates: rank 0's elapsed
  time is broadcast at every host read (logging, evaluation, checkpoint), and between two reads every
  rank extrapolates it with the same seconds-per-step, so all ranks agree without a sync per step. A
  run whose extrapolated time passes the budget reads the true clock before it stops.
"""

from __future__ import annotations

import time

from pipelines.config import parse_duration

RESOLUTION = 10_000  # virtual schedule steps over the whole budget (a 0.01 % grain)


def budget_seconds(t) -> float | None:
    return None if t.time_budget is None else parse_duration(t.time_budget, "training.time_budget")


class TimeBudget:
    """The clock of a budgeted run: elapsed seconds (resumed), progress, and the end."""

    def __init__(self, seconds: float, max_steps: int, elapsed_before: float = 0.0, processes: int = 1):
        self.seconds, self.max_steps, self.processes = seconds, max_steps, processes
        self.elapsed_before = elapsed_before  # from the checkpoint a resume starts at
        self.started = time.monotonic()
        # the last shared reading (multi-process): (step, elapsed seconds, seconds per step)
        self.synced: tuple[int, float, float] | None = None

    def local_elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def elapsed(self, step: int) -> float:
        """Seconds of training at `step`; the same number on every rank."""
        if self.processes == 1:
            return self.local_elapsed()
        if self.synced is None:
            return self.elapsed_before
        at, seconds, per_step = self.synced
        return seconds + (step - at) * per_step

    def sync(self, accelerator, step: int, start_step: int) -> None:
        """Rank 0's clock to every rank (a collective: all ranks call it at the same read)."""
        if self.processes == 1:
            return
        import torch
        from accelerate.utils import broadcast

        now = broadcast(torch.tensor([self.local_elapsed()], dtype=torch.float64, device=accelerator.device), 0)
        seconds = float(now[0])
        per_step = (seconds - self.elapsed_before) / max(step - start_step, 1)
        self.synced = (step, seconds, per_step)

    def progress(self, step: int) -> float:
        return min(1.0, max(self.elapsed(step) / self.seconds, step / self.max_steps))

    def over(self, step: int) -> bool:
        return self.elapsed(step) >= self.seconds

    def set_schedule(self, scheduler, step: int) -> None:
        """The rate for the step after `step`: the schedule at this progress. transformers' schedules
        are LambdaLR, a closed form of last_epoch (as pipelines/engine/stops.py rewind_schedule uses)."""
        scheduler.last_epoch = round(self.progress(step) * RESOLUTION) - 1
        scheduler.step()


def schedule_length(t, max_steps: int) -> tuple[int, int]:
    """(warmup, total) steps of the schedule object: real steps, or RESOLUTION virtual ones under a budget."""
    if t.time_budget is not None:
        return int(t.warmup_ratio * RESOLUTION), RESOLUTION
    return t.warmup_steps or int(t.warmup_ratio * max_steps), max_steps


def describe(seconds: float) -> str:
    """60m, 1h30m, 90s: a budget as a person writes it."""
    h, rest = divmod(int(round(seconds)), 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{unit}" for v, unit in ((h, "h"), (m, "m"), (s, "s")) if v) or "0s"

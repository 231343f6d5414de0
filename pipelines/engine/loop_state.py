"""What the loop carries between steps: the batches it trains on (collated ahead, on the device),
the resume checks before the first step, and the per-loop state (log, tally, progress bar).

Split from loop.py, which keeps the step and the periodic actions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pipelines.engine.accelerator import loader_workers
from pipelines.engine.preemption import ignore_stop_signals
from pipelines.engine.resume import check_resumed_schedule
from pipelines.engine.step import to_device
from pipelines.engine.step_stats import StepTally
from pipelines.errors import LmforgeError
from pipelines.runs.tracking import JsonlLog


def train_batches(run):
    """(step, its micro-batches on the device, their tokens), collated ahead by DataLoader workers.
    Tokens are counted on the host copy, before the transfer: no device read."""
    from pipelines.data.loader import micro_batch_loader

    t, acc = run.recipe.training, run.accelerator
    ga = t.gradient_accumulation_steps
    loader = micro_batch_loader(run.task, run.train_data, run.sampler, t.seed, ga, acc.process_index,
                                run.start_step, run.max_steps, workers=loader_workers(t, acc.device),
                                prefetch=t.dataloader_prefetch_factor, pin_memory=acc.device.type == "cuda",
                                worker_init_fn=ignore_stop_signals)
    step, micro, tokens = run.start_step, [], 0
    for batch in loader:
        tokens += int(run.task.tokens_in(batch))
        micro.append(to_device(batch, acc.device))
        if len(micro) == ga:
            yield step, micro, tokens
            step, micro, tokens = step + 1, [], 0


def _start_loop(run, log: JsonlLog) -> None:
    """What a resume checks before the first step (setup() restored the state): the recipe's
    schedule against the checkpoint's, and the metrics log cut back to the checkpoint's step."""
    t, acc = run.recipe.training, run.accelerator
    if t.nonfinite == "skip" and acc.distributed_type == "DEEPSPEED":
        raise LmforgeError("training.nonfinite=skip is not available under DeepSpeed (it applies the step inside "
                           "backward, before lmforge sees the loss); use training.nonfinite=stop")
    if run.start_step:
        check_resumed_schedule(t, run.optimizer, run.scheduler, run.state, run.start_step, run.max_steps,
                               acc.num_processes)
        log.truncate_after(run.start_step)  # the steps after the checkpoint are done again


@dataclass
class LoopState:
    """What the loop carries from one step to the next, besides the Run."""

    log: JsonlLog
    tally: StepTally  # the steps since the last read, on the device
    bar: object  # tqdm
    eval_every: int  # optimizer steps between evaluations (0: only the final one)
    flops_per_token: float | None
    skipped: int  # non-finite steps skipped so far (resumed from the checkpoint)
    saved_at: int  # the step of the newest checkpoint on disk
    window_tokens: int = 0  # this rank's tokens since the last read
    window_start: float = field(default_factory=time.perf_counter)


def loop_state(run) -> LoopState:
    from tqdm.auto import tqdm

    t, acc = run.recipe.training, run.accelerator
    log = JsonlLog(run.out / "metrics.jsonl", acc.is_main_process)
    _start_loop(run, log)
    if run.budget is not None:  # the bar counts the budget's seconds; the clock starts with the loop
        run.budget.started = time.monotonic()
        bar = tqdm(total=round(run.budget.seconds), initial=round(run.budget.elapsed_before),
                   disable=not acc.is_local_main_process, desc=run.recipe.name, dynamic_ncols=True,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} s of the time budget{postfix}")
    else:
        bar = tqdm(total=run.max_steps, initial=run.start_step, disable=not acc.is_local_main_process,
                   desc=run.recipe.name, dynamic_ncols=True)
    return LoopState(log=log, tally=StepTally(acc.device, t.max_skipped_steps, check_grad=acc.scaler is None), bar=bar,
                     eval_every=run.task.eval_every(run.sampler.per_epoch // t.gradient_accumulation_steps),
                     flops_per_token=run.task.flops_per_token(acc.unwrap_model(run.model)),
                     skipped=run.state.get("skipped_steps", 0),
                     saved_at=run.start_step)  # a resumed run's checkpoint is on disk already


def advance_bar(run, s: LoopState, done: int) -> None:
    if run.budget is None:
        s.bar.update(1)
    else:
        s.bar.update(max(0, min(round(run.budget.elapsed(done)), s.bar.total) - s.bar.n))

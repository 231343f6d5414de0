"""The training engine: one accelerate loop for every task (pretraining and fine-tuning).

    train(task, recipe) = setup() -> loop() -> finish()

DDP / FSDP / DeepSpeed, mixed precision and the device come from accelerate (its launch
config or `accelerate_configs/*.yaml`); the task supplies model, data, corruption and losses.
Losses are averaged over the units (tokens, examples) of the GLOBAL batch, so how the batch
is split between per-device size, accumulation steps and processes does not change them
(step.py).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipelines.config import Recipe, recipe_to_dict
from pipelines.data.sampler import GlobalBatchSampler, collate_seed
from pipelines.engine import checkpoint
from pipelines.engine.accelerator import make_accelerator
from pipelines.engine.best import BestKeeper, check_unsharded
from pipelines.engine.flops import mfu
from pipelines.engine.loop_state import LoopState, advance_bar, loop_state, train_batches
from pipelines.engine.optimizers import build_optimizer
from pipelines.engine.plan import resolve_max_steps, training_sampler
from pipelines.engine.preemption import StopSignals
from pipelines.engine.resume import schedule_settings
from pipelines.engine.step import DeviceBatches, evaluate, train_step
from pipelines.engine.stops import preempted, rewind_schedule, stop_nonfinite, weights_finite
from pipelines.engine.time_budget import TimeBudget, budget_seconds, describe, schedule_length
from pipelines.errors import LmforgeError
from pipelines.runs.library_logs import LOG_FILE, capture_library_logs
from pipelines.runs.tracking import JsonlLog


@dataclass
class TrainResult:
    output_dir: Path
    export_dirs: list[Path]
    steps: int
    history: list[dict] = field(default_factory=list)  # the logged training records
    eval_metrics: dict = field(default_factory=dict)  # final evaluation
    # Task.keep_best(): the metrics of the evaluation the export holds, and which one it was (best.py)
    exported_metrics: dict | None = None
    exported_evaluation: dict | None = None


@dataclass
class Run:
    """Everything one training run holds between setup, loop and finish."""

    task: object
    recipe: Recipe
    accelerator: object
    tokenizer: object
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    train_data: object
    sampler: GlobalBatchSampler
    eval_batches: DeviceBatches  # on the host, copied to the device batch by batch
    max_steps: int
    start_step: int
    state: dict
    out: Path
    history: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.time)  # when setup() began (wall time in results.json)
    best: BestKeeper | None = None  # Task.keep_best(): the best evaluation's weights, exported instead of the last
    budget: TimeBudget | None = None  # training.time_budget: the clock that ends the run and drives the schedule
    ended_by: str = "max_steps"  # max_steps | time_budget | early_stopping (results.json)


def setup(task, recipe: Recipe) -> Run:
    """Tokenizer, prepared data, model, optimizer, schedule, eval batches; resume if asked."""
    from transformers import get_scheduler
    from transformers import set_seed as hf_set_seed

    from pipelines.engine.launch_guard import check_launch
    from pipelines.runs.run_folder import claim_output_dir

    started = time.time()
    t = recipe.training
    out = Path(t.output_dir)
    accelerator = make_accelerator(t)
    check_launch(accelerator)  # a mis-launch gives N lone processes writing one folder
    best = None
    if (keep := task.keep_best()) is not None:
        check_unsharded(f"recipe '{recipe.name}', section 'objective'")  # before any work
        best = BestKeeper(*keep)
    if t.torch_compile:  # a missing C++ compiler is named before the run folder exists
        from pipelines.engine.compile import check_cpu_compiler

        check_cpu_compiler()
    if accelerator.is_main_process:  # before load_tokenizer(), which reuses output_dir/tokenizer
        claim_output_dir(recipe)
        capture_library_logs(out)  # load reports, library notices: out/lmforge.log, not the terminal
    hf_set_seed(t.seed)
    # rank 0 trains the tokenizer and prepares the shards first; the other ranks then find both on
    # disk (same fingerprint) and memory-map the same files
    with accelerator.main_process_first():
        tokenizer = task.load_tokenizer()
        task.setup(tokenizer)
        train_data, eval_data = task.prepare(tokenizer)
    if len(train_data) == 0:
        raise LmforgeError(f"recipe '{recipe.name}': the training set is empty after preprocessing")
    model = task.build_model(tokenizer)
    if t.torch_compile:  # in place: weight names unchanged (pipelines/engine/compile.py)
        from pipelines.engine.compile import compile_model

        model = compile_model(model)
    optimizer = build_optimizer(model, t)
    world = accelerator.num_processes
    sampler = training_sampler(task, train_data, recipe, world)
    max_steps = resolve_max_steps(t, len(train_data), world)
    warmup, total = schedule_length(t, max_steps)  # a time budget: the schedule over its elapsed fraction
    scheduler = get_scheduler(t.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=total)
    # The scheduler is stepped by hand once per optimizer step: accelerate's wrapper would step it
    # once per process and shorten the schedule under DDP.
    model, optimizer = accelerator.prepare(model, optimizer)

    eval_gen = torch.Generator().manual_seed(collate_seed(t.seed, -1, 0, accelerator.process_index))
    eval_idx = sampler.eval_batches(len(eval_data), t.per_device_eval_batch_size, accelerator.process_index,
                                    t.max_eval_batches, world)
    eval_batches = DeviceBatches([task.collate([eval_data[i] for i in idx], eval_gen) for idx in eval_idx],
                                 accelerator.device)

    start_step, state = 0, {"tokens": 0}
    resume = checkpoint.resolve_resume(t.resume_from_checkpoint, out)
    if resume is not None:
        state = checkpoint.load_checkpoint(accelerator, resume, objects=[scheduler])
        start_step = state["step"]
        accelerator.print(f"resumed from {resume} at step {start_step}")

    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.json").write_text(json.dumps(recipe_to_dict(recipe), indent=2))
    accelerator.init_trackers(t.project, config=recipe_to_dict(recipe),
                              init_kwargs={"wandb": {"name": t.run_name or recipe.name, "dir": str(out)}})
    budget = None
    if (seconds := budget_seconds(t)) is not None:
        budget = TimeBudget(seconds, max_steps, state.get("elapsed", 0.0), accelerator.num_processes)
        accelerator.print(f"time budget {describe(seconds)} ({describe(budget.elapsed_before)} used before), or "
                          f"{max_steps} steps, whichever comes first")
    return Run(task, recipe, accelerator, tokenizer, model, optimizer, scheduler, train_data, sampler, eval_batches,
               max_steps, start_step, state, out, started=started, best=best, budget=budget)


def _trainer_state(run: Run, step: int, skipped: int) -> dict:
    t = run.recipe.training
    state = {"step": step, "tokens": run.state["tokens"], "skipped_steps": skipped,
             "settings": schedule_settings(t, run.max_steps, run.accelerator.num_processes)}
    if run.budget is not None:  # a resume continues the clock from here
        state["elapsed"] = run.budget.elapsed(step)
    return state


@dataclass(frozen=True)
class Due:
    """The periodic actions due after a step. Any of them needs a host read, which every rank must
    make together (it reduces)."""

    read: bool
    evaluate: bool
    save: bool
    budget_end: bool = False  # training.time_budget may be spent (the read confirms it on rank 0's clock)


def loop(run: Run) -> JsonlLog:
    """Optimizer steps from run.start_step to run.max_steps, in three blocks: the step (nothing read
    from the device), the periodic actions due after it (read and log, evaluate, checkpoint or stop),
    and, after the last step, the caller's finish().

    The host reads the device (step_stats.py) only at "read" steps: logging, evaluation, checkpoint
    and the last step, or a stop signal. Non-finite steps in between were already skipped on the
    device; the read reports them, rewinds the schedule over them, and stops if asked
    (training.nonfinite). SIGTERM / SIGINT save a checkpoint and stop."""
    t, acc = run.recipe.training, run.accelerator
    s = loop_state(run)
    try:
        with StopSignals(verbose=acc.is_local_main_process) as signals:
            for step, micro, n_tok in train_batches(run):
                # the step
                s.tally.add(step + 1, train_step(acc, run.model, run.optimizer, run.task, micro, t.max_grad_norm))
                done = step + 1
                if run.budget is not None:  # the rate at this elapsed fraction of the budget
                    run.budget.set_schedule(run.scheduler, done)
                else:
                    run.scheduler.step()  # rewound at the read below if this step turns out to be skipped
                s.window_tokens += n_tok
                advance_bar(run, s, done)
                # the periodic actions
                due = _due(run, s, done, signals)
                if not due.read:
                    continue
                logs = _read_and_log(run, s, done)
                if due.budget_end and run.budget.over(done):  # rank 0's clock, shared at the read
                    run.max_steps, run.ended_by = done, "time_budget"
                    acc.print(f"time budget {describe(run.budget.seconds)} spent at step {done}")
                    break  # finish() evaluates, exports and reports this step
                if due.evaluate and _evaluate_during_training(run, s, done):
                    break  # early stopping: finish() evaluates, exports and reports this step
                _checkpoint_or_stop(run, s, done, due.save, signals.requested(acc), logs)
    finally:  # also when a step, a save or a stop raises: the bar's line ends before any message
        s.bar.close()
    return s.log


def _due(run: Run, s: LoopState, done: int, signals: StopSignals) -> Due:
    t, acc = run.recipe.training, run.accelerator
    last = done == run.max_steps
    budget_end = run.budget is not None and not last and run.budget.over(done)
    # several processes share rank 0's clock at reads; the first step after (re)start reads it once
    first_sync = run.budget is not None and acc.num_processes > 1 and done == run.start_step + 1
    evaluate_now = bool(s.eval_every and done % s.eval_every == 0 and not last and run.eval_batches)
    save = bool(t.save_steps and done % t.save_steps == 0 and not last)
    # a signal alone triggers a read only in a lone process (ranks agree on it at the next shared read);
    # with fp16's scaler, the host reads every step: the scaler may have skipped it
    read = (done % t.logging_steps == 0 or last or evaluate_now or save
            or (signals.received and acc.num_processes == 1) or acc.scaler is not None or budget_end or first_sync)
    return Due(read=read, evaluate=evaluate_now, save=save, budget_end=budget_end)


def _read_and_log(run: Run, s: LoopState, done: int) -> dict:
    """The one host read: skipped steps reported (the schedule rewound over them, a stop if asked),
    the window's tokens/s and MFU, one record to the trackers, metrics.jsonl and the history."""
    t, acc = run.recipe.training, run.accelerator
    read = s.tally.read()
    logs = read.last
    if run.budget is None:  # a budget sets the rate from the clock, whatever the steps did
        rewind_schedule(run, read.bad_steps or int(acc.scaler is not None and acc.optimizer_step_was_skipped))
    else:
        run.budget.sync(acc, done, run.start_step)
        logs["elapsed_s"] = run.budget.elapsed(done)
    s.skipped += read.bad_steps
    if read.first_bad and (t.nonfinite == "stop" or read.too_many):
        bad = read.first_bad if t.nonfinite == "stop" else read.too_many
        stop_nonfinite(run, s.log, bad.step, bad.why, bad.logs, read.in_a_row if read.too_many else 0)
    if read.first_bad:
        acc.print(f"step {read.first_bad.step}: {read.first_bad.why}; "
                  + (f"{read.bad_steps} non-finite steps up to step {done} " if read.bad_steps > 1 else "step ")
                  + "skipped (training.nonfinite=skip)")
    n_tok = int(acc.reduce(torch.tensor(s.window_tokens, device=acc.device), reduction="sum"))
    run.state["tokens"] += n_tok
    tps = n_tok / max(time.perf_counter() - s.window_start, 1e-9)
    if t.nonfinite == "skip":
        logs["skipped_steps"] = s.skipped
    if read.first_bad and read.first_bad.step == done:
        logs["nonfinite"] = read.first_bad.why
    logs.update(step=done, lr=run.scheduler.get_last_lr()[0], tokens_per_sec=tps, tokens=run.state["tokens"])
    if (u := mfu(s.flops_per_token, tps, acc.num_processes)) is not None:
        logs["mfu"] = u
    s.bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}", tok_s=f"{tps:,.0f}")
    acc.log(logs, step=done)
    s.log.write(logs)
    run.history.append(logs)
    s.window_tokens, s.window_start = 0, time.perf_counter()
    return logs


def _evaluate_during_training(run: Run, s: LoopState, done: int) -> bool:
    """A periodic evaluation; True when the task stops training here (early stopping: every rank saw
    the same metrics), which makes this step the run's last."""
    acc = run.accelerator
    metrics = evaluate(acc, run.model, run.task, run.eval_batches)
    acc.log(metrics, step=done)
    s.log.write({"step": done, **metrics})
    acc.print(f"step {done}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    if run.best is not None:
        run.best.update(run.model, task_metrics(metrics))
        if run.best.after_evaluation(done):
            run.max_steps, run.ended_by = done, "early_stopping"  # finish() evaluates, exports, reports this step
            return True
    return False


def task_metrics(metrics: dict) -> dict:
    """evaluate()'s metrics without the losses and the 'eval/' prefix: the task's own (accuracy, F1, ...)."""
    return {k.removeprefix("eval/"): v for k, v in metrics.items() if not k.startswith("eval/loss")}


def _checkpoint_or_stop(run: Run, s: LoopState, done: int, save: bool, signum: int | None, logs: dict) -> None:
    """A checkpoint when one is due or a stop signal came (never of non-finite weights); after a signal,
    Preempted with where the checkpoint is."""
    acc, t = run.accelerator, run.recipe.training
    state = _trainer_state(run, done, s.skipped)
    if (save or signum) and not weights_finite(acc, run.model):
        stop_nonfinite(run, s.log, done, "the weights are not finite after the update", logs)
    if save:
        checkpoint.save_checkpoint(acc, run.out, done, state, t.save_total_limit, objects=[run.scheduler])
        s.saved_at = done
    if signum:
        s.bar.close()  # before the main process prints where the checkpoint is
        raise preempted(run, signum, state, s.saved_at)


def finish(run: Run, log) -> TrainResult:
    """Final evaluation, export (of the best evaluation's weights when the task keeps them), optional
    push, results.json."""
    t, acc = run.recipe.training, run.accelerator
    final_metrics = evaluate(acc, run.model, run.task, run.eval_batches) if run.eval_batches else {}
    if final_metrics:
        acc.log(final_metrics, step=run.max_steps)
        log.write({"step": run.max_steps, **final_metrics})
        acc.print("final: " + ", ".join(f"{k}={v:.4f}" for k, v in final_metrics.items()))
        bad = {k: v for k, v in final_metrics.items() if k.startswith("eval/loss") and not math.isfinite(v)}
        if bad:  # NaN outputs: a GLUE accuracy computed from them (argmax of NaN) is meaningless
            acc.end_training()
            raise LmforgeError(f"final evaluation: {', '.join(f'{k} is {v}' for k, v in bad.items())}: the model's "
                               "outputs are not finite; nothing was exported")
        if run.best is not None:
            run.best.update(run.model, task_metrics(final_metrics))
    if not weights_finite(acc, run.model):
        acc.end_training()
        raise LmforgeError(f"step {run.max_steps}: the weights are not finite after the last update; nothing was "
                           "exported (lower training.learning_rate)")
    if run.best is not None:  # the best evaluation's weights replace the last step's
        run.best.restore(run.model)
    export_dirs = export(acc, run.task, run.model, run.tokenizer, run.out / "final")
    if acc.is_main_process:
        from pipelines.runs.model_card import refresh_cards
        from pipelines.runs.results import write_results

        results = write_results(run, final_metrics, export_dirs, log)  # also logs the table to the trackers
        held = exported_metrics(run) or {k.removeprefix("eval/"): v for k, v in final_metrics.items()}
        refresh_cards(export_dirs, run.recipe, held, acc.num_processes)  # the exports' cards carry their scores
        notes = run.out / LOG_FILE
        if notes.is_file() and notes.stat().st_size:
            acc.print(f"library warnings and load reports: {notes}")
        if t.push_to_hub and export_dirs:
            from pipelines.runs.push import push_folder

            push_folder(export_dirs[0], t.hub_model_id or run.recipe.name, results=results)
    acc.end_training()
    exported = run.best.summary(run.max_steps) if run.best is not None else None
    return TrainResult(run.out, export_dirs, run.max_steps, run.history, final_metrics,
                       exported_metrics=exported_metrics(run), exported_evaluation=exported)


def exported_metrics(run: Run) -> dict | None:
    """The metrics of the best evaluation the export holds (Task.keep_best), or None."""
    return dict(run.best.metrics) if run.best is not None and run.best.metrics else None


def train(task, recipe: Recipe) -> TrainResult:
    """Run the recipe's training for `task` end to end: data, model, loop, checkpoints, export."""
    run = setup(task, recipe)
    log = loop(run)
    return finish(run, log)


def export(accelerator, task, model, tokenizer, out_dir: Path) -> list[Path]:
    """Gather the full state dict (ZeRO-3 / FSDP shards included) and let the task write its folders."""
    state_dict = accelerator.get_state_dict(model)
    dirs: list[Path] = []
    if accelerator.is_main_process:
        dirs = task.export(accelerator.unwrap_model(model), tokenizer, out_dir, state_dict=state_dict)
    accelerator.wait_for_everyone()
    return dirs

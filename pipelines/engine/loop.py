"""The training engine: one accelerate loop for every task (pretraining and fine-tuning).

DDP / FSDP / DeepSpeed, mixed precision and the device come from accelerate (its launch
config or `accelerate_configs/*.yaml`); the task supplies model, data, corruption and losses.
Losses are averaged over the units (tokens, examples) of the GLOBAL batch, so how the batch
is split between per-device size, accumulation steps and processes does not change them.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipelines.config import Recipe, TrainingSection, recipe_to_dict
from pipelines.data.sampler import GlobalBatchSampler, collate_seed
from pipelines.engine import checkpoint
from pipelines.engine.flops import mfu
from pipelines.engine.optimizers import build_optimizer
from pipelines.engine.preemption import StopSignals, ignore_stop_signals
from pipelines.engine.resume import check_resumed_schedule, schedule_settings
from pipelines.engine.step_stats import StepResult, StepTally
from pipelines.errors import LmforgeError, Preempted
from pipelines.runs.tracking import JsonlLog, log_with


@dataclass
class TrainResult:
    output_dir: Path
    export_dirs: list[Path]
    steps: int
    history: list[dict] = field(default_factory=list)  # the logged training records
    eval_metrics: dict = field(default_factory=dict)  # final evaluation


def make_accelerator(t: TrainingSection):
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    if t.mixed_precision not in ("no", "bf16", "fp16"):
        raise LmforgeError(f"training.mixed_precision: '{t.mixed_precision}' is not one of no, bf16, fp16")
    accelerator = Accelerator(mixed_precision=t.mixed_precision,
                              gradient_accumulation_steps=t.gradient_accumulation_steps, log_with=log_with(t.report_to),
                              project_config=ProjectConfiguration(project_dir=t.output_dir, logging_dir=t.output_dir))
    if t.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        # accelerate runs fp16 on a CPU as plain fp32 without a word, and the model card would say fp16
        raise LmforgeError("training.mixed_precision=fp16 needs a GPU; this machine trains on the CPU, where it "
                           "would silently be fp32. Use bf16 (CPU autocast) or no")
    _recipe_into_deepspeed(accelerator, t)
    return accelerator


def _recipe_into_deepspeed(accelerator, t: TrainingSection) -> None:
    """The recipe's per-device batch and gradient clipping into DeepSpeed's config ("auto" or absent).
    accelerate reads the batch off a DataLoader passed to prepare() and fails without one (the engine
    passes none: it feeds the loop itself); DeepSpeed clips inside its own step with `gradient_clipping`
    (accelerator.clip_grad_norm_ only reads the norm there), so max_grad_norm must reach it."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    cfg = plugin.deepspeed_config
    for key, field_name, value in (("train_micro_batch_size_per_gpu", "per_device_train_batch_size",
                                    t.per_device_train_batch_size),
                                   ("gradient_clipping", "max_grad_norm", float(t.max_grad_norm))):
        if cfg.get(key, "auto") not in ("auto", value):
            raise LmforgeError(f"the DeepSpeed config sets {key}={cfg[key]} but the recipe has "
                               f"training.{field_name}={value}: remove it from the DeepSpeed config (the recipe "
                               "sets it) or make them equal")
        cfg[key] = value


def train_step(accelerator, model, optimizer, task, micro_batches: list[dict], max_grad_norm: float) -> StepResult:
    """One optimizer step over `micro_batches`; returns the global-batch loss terms and grad norm,
    still on the device (pipelines/engine/step_stats.py: the loop reads them only at logging steps).

    Each term is divided by its unit count summed over all micro-batches and ranks, then
    scaled by the world size (DDP averages gradients over ranks) and by the number of
    micro-batches (accelerate divides by it in backward, DeepSpeed too): the gradient is
    exactly that of the global-batch average.

    A step whose loss or gradient norm is NaN/inf is not applied. The values are reduced over all
    ranks, so every rank decides alike. Fused AdamW skips it on the device (`found_inf`); other
    optimizers need the host to decide (one sync per step). Exceptions: DeepSpeed steps inside
    backward, and fp16's grad scaler skips inf gradients itself (a normal event there).
    """
    counts = [task.loss_counts(b) for b in micro_batches]
    names = list(task.loss_weights)
    weights = torch.tensor([task.loss_weights[n] for n in names], device=accelerator.device)
    local = torch.stack([torch.as_tensor(sum(c[n] for c in counts)).float() for n in names]).to(accelerator.device)
    total = accelerator.reduce(local, reduction="sum").clamp_min(1.0)
    scale = accelerator.num_processes * len(micro_batches)
    sums = torch.zeros(len(names), device=accelerator.device)
    model.train()
    for batch in micro_batches:
        with accelerator.accumulate(model):
            with accelerator.autocast():
                terms = task.loss(model, batch)
            loss = sum(task.loss_weights[n] * terms[n] / total[i] for i, n in enumerate(names))
            accelerator.backward(loss * scale)
            sums += torch.stack([terms[n].detach().float() for n in names])
    means = accelerator.reduce(sums, reduction="sum") / total
    grad_norm = torch.full((), math.nan, device=accelerator.device)
    if accelerator.sync_gradients:
        # without clipping the norm is still measured (to see a NaN): clipping at inf scales by exactly 1
        norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm if max_grad_norm > 0 else math.inf)
        if norm is not None:
            grad_norm = torch.as_tensor(norm, device=accelerator.device).float()
    values = torch.cat([(weights * means).sum().reshape(1), means, grad_norm.reshape(1)])
    finite = torch.isfinite(values[0])
    if accelerator.scaler is None and accelerator.sync_gradients:  # fp16: inf gradients are the scaler's business
        finite = finite & torch.isfinite(grad_norm)
    inner = getattr(optimizer, "optimizer", optimizer)
    if accelerator.scaler is not None:
        optimizer.step()  # the scaler must see its step (it skips inf gradients)
    elif skips_on_device(accelerator, inner):
        inner.found_inf = (~finite).float()  # the fused kernel leaves weights, moments and step count alone
        optimizer.step()
    elif bool(finite):  # a host sync: this optimizer cannot skip on the device
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(names, values, finite, bool(accelerator.sync_gradients))


def skips_on_device(accelerator, optimizer) -> bool:
    """Fused Adam/AdamW take torch's GradScaler flag `found_inf` and skip the update in the kernel."""
    return (accelerator.distributed_type != "DEEPSPEED" and getattr(optimizer, "_step_supports_amp_scaling", False)
            and any(g.get("fused") for g in optimizer.param_groups))


@torch.no_grad()
def evaluate(accelerator, model, task, batches: list[dict]) -> dict:
    """Per-term mean losses over the eval batches (all ranks) plus the task's own metrics."""
    model.eval()
    names = list(task.loss_weights)
    sums = torch.zeros(len(names), device=accelerator.device)
    counts = torch.zeros(len(names), device=accelerator.device)
    outputs = []  # what eval_metrics needs from each batch's forward pass (GLUE: predictions), so it runs once
    for batch in batches:
        with accelerator.autocast():
            terms, kept = task.eval_batch(model, batch)
        outputs.append(kept)
        c = task.loss_counts(batch)
        sums += torch.stack([terms[n].float() for n in names])
        counts += torch.stack([torch.as_tensor(c[n], device=accelerator.device).float() for n in names])
    sums = accelerator.reduce(sums, reduction="sum")
    counts = accelerator.reduce(counts, reduction="sum").clamp_min(1.0)
    means = {n: (sums[i] / counts[i]).item() for i, n in enumerate(names)}
    out = {f"eval/loss/{n}": v for n, v in means.items()} if len(names) > 1 else {}
    out["eval/loss"] = sum(task.loss_weights[n] * v for n, v in means.items())
    out.update({f"eval/{k}": v for k, v in task.loss_metrics(means).items()})
    # outputs only to a task that returned some: eval_metrics(model, batches) overrides keep working
    extra = (task.eval_metrics(model, batches, outputs=outputs) if any(o is not None for o in outputs)
             else task.eval_metrics(model, batches))
    out.update({f"eval/{k}": v for k, v in extra.items()})
    model.train()
    return out


def _to_device(batch: dict, device) -> dict:
    # non_blocking: a copy from pinned memory (the loader pins on GPU) overlaps the running step
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def resolve_max_steps(t: TrainingSection, n_examples: int, world: int) -> int:
    if t.max_steps > 0:
        return t.max_steps
    per_step = t.per_device_train_batch_size * t.gradient_accumulation_steps * world
    return max(1, math.ceil(t.num_train_epochs * n_examples / per_step))


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
    eval_batches: list[dict]
    max_steps: int
    start_step: int
    state: dict
    out: Path
    history: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.time)  # when setup() began (wall time in results.json)


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
    if accelerator.is_main_process:  # before load_tokenizer(), which reuses output_dir/tokenizer
        claim_output_dir(recipe)
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
    sampler = GlobalBatchSampler.for_training(task, train_data, recipe, world)  # lengths: training.group_by_length
    max_steps = resolve_max_steps(t, len(train_data), world)
    warmup = t.warmup_steps or int(t.warmup_ratio * max_steps)
    scheduler = get_scheduler(t.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=max_steps)
    # The scheduler is stepped by hand once per optimizer step: accelerate's wrapper would step it
    # once per process and shorten the schedule under DDP.
    model, optimizer = accelerator.prepare(model, optimizer)

    eval_gen = torch.Generator().manual_seed(collate_seed(t.seed, -1, 0, accelerator.process_index))
    eval_batches = [_to_device(task.collate([eval_data[i] for i in idx], eval_gen), accelerator.device)
                    for idx in sampler.eval_batches(len(eval_data), t.per_device_eval_batch_size,
                                                    accelerator.process_index, t.max_eval_batches, world)]

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
    return Run(task, recipe, accelerator, tokenizer, model, optimizer, scheduler, train_data, sampler, eval_batches,
               max_steps, start_step, state, out, started=started)


def loader_workers(t: TrainingSection, device) -> int:
    """training.dataloader_num_workers, or with -1 (auto): 2 on a GPU, where collation would stall the
    device, and 0 on a CPU, where a worker only takes a core from the step and a second process's memory."""
    if t.dataloader_num_workers >= 0:
        return t.dataloader_num_workers
    return 2 if device.type == "cuda" else 0


def _steps(run: Run):
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
        micro.append(_to_device(batch, acc.device))
        if len(micro) == ga:
            yield step, micro, tokens
            step, micro, tokens = step + 1, [], 0


def _start_loop(run: Run, log: JsonlLog) -> None:
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


def _trainer_state(run: Run, step: int, skipped: int) -> dict:
    t = run.recipe.training
    return {"step": step, "tokens": run.state["tokens"], "skipped_steps": skipped,
            "settings": schedule_settings(t, run.max_steps, run.accelerator.num_processes)}


def _weights_finite(acc, model) -> bool:
    """An update can overflow the weights after a finite loss and gradient: checked before each save
    and the export, so no checkpoint holds inf weights (one host sync; all ranks agree). A ZeRO-3
    parameter released to its shard is an empty placeholder: its rank's shard (ds_tensor) is checked."""
    shards = (p.ds_tensor if p.numel() == 0 and hasattr(p, "ds_tensor") else p for p in model.parameters())
    local = torch.stack([torch.isfinite(t).all().to(acc.device) for t in shards]).all()
    if acc.num_processes > 1:
        return bool(acc.gather(local.reshape(1)).all())
    return bool(local)


def _stop_nonfinite(run: Run, log: JsonlLog, step: int, why: str, logs: dict, in_a_row: int = 0):
    """Training diverged: log the step, keep the checkpoints (none holds NaN weights), export nothing."""
    t = run.recipe.training
    log.write({"step": step, **logs, "nonfinite": why})
    good = checkpoint.list_checkpoints(run.out)
    kept = f"The last good checkpoint is {good[-1]}" if good else "No checkpoint was saved"
    limit = (f" ({in_a_row} non-finite steps in a row, training.max_skipped_steps={t.max_skipped_steps})"
             if t.nonfinite == "skip" and in_a_row else "")
    hint = "lower training.learning_rate" + (", or set training.nonfinite=skip" if t.nonfinite == "stop" else "")
    run.accelerator.end_training()
    raise LmforgeError(f"step {step}: {why}; stopped{limit}. {kept}; nothing was exported ({hint})")


def _preempted(run: Run, signum: int, state: dict, saved_at: int) -> Preempted:
    """Save at this step boundary (unless just saved) and say where; every rank gets here together."""
    import signal

    acc, t, step = run.accelerator, run.recipe.training, state["step"]
    path = checkpoint.checkpoint_root(run.out) / f"step-{step:06d}"
    if saved_at != step:
        path = checkpoint.save_checkpoint(acc, run.out, step, state, t.save_total_limit, objects=[run.scheduler])
    acc.end_training()
    name = signal.Signals(signum).name
    msg = (f"stopped by {name} after step {step}; checkpoint saved to {path}; resume with the same command plus "
           f"{checkpoint.RESUME_HINT}") if acc.is_main_process else ""
    return Preempted(128 + signum, msg)


def loop(run: Run):
    """Optimizer steps from run.start_step to run.max_steps: logging, evaluation, checkpoints.
    Non-finite steps follow training.nonfinite; SIGTERM / SIGINT save a checkpoint and stop.

    The host reads the device (pipelines/engine/step_stats.py) only at "read" steps: logging, evaluation,
    checkpoint and the last step, or a stop signal. Non-finite steps in between were already skipped
    on the device; the read reports them, rewinds the schedule over them, and stops if asked."""
    from tqdm.auto import tqdm

    t, acc, task = run.recipe.training, run.accelerator, run.task
    log = JsonlLog(run.out / "metrics.jsonl", acc.is_main_process)
    _start_loop(run, log)
    flops_tok = task.flops_per_token(acc.unwrap_model(run.model))
    eval_every = task.eval_every(run.sampler.per_epoch // t.gradient_accumulation_steps)  # steps per epoch
    bar = tqdm(total=run.max_steps, initial=run.start_step, disable=not acc.is_local_main_process,
               desc=run.recipe.name, dynamic_ncols=True)
    tally = StepTally(acc.device, t.max_skipped_steps, check_grad=acc.scaler is None)
    window_tokens, window_start = 0, time.perf_counter()  # this rank's tokens since the last read
    skipped = run.state.get("skipped_steps", 0)
    saved_at = run.start_step  # a resumed run's checkpoint is on disk already
    with StopSignals(verbose=acc.is_local_main_process) as signals:
        for step, micro, n_tok in _steps(run):
            tally.add(step + 1, train_step(acc, run.model, run.optimizer, task, micro, t.max_grad_norm))
            run.scheduler.step()  # rewound at the read below if this step turns out to be skipped
            done = step + 1
            window_tokens += n_tok
            bar.update(1)
            evaluate_now = bool(eval_every and done % eval_every == 0 and done != run.max_steps and run.eval_batches)
            save = bool(t.save_steps and done % t.save_steps == 0 and done != run.max_steps)
            # every rank must agree on a read (it reduces): a signal alone triggers one only in a lone process
            if not (done % t.logging_steps == 0 or done == run.max_steps or evaluate_now or save
                    or (signals.received and acc.num_processes == 1) or acc.scaler is not None):
                continue  # (with fp16's scaler, the host reads every step: the scaler may have skipped it)
            read = tally.read()
            logs = read.last
            _rewind_schedule(run, read.bad_steps or int(acc.scaler is not None and acc.optimizer_step_was_skipped))
            skipped += read.bad_steps
            if read.first_bad and (t.nonfinite == "stop" or read.too_many):
                bar.close()
                bad = read.first_bad if t.nonfinite == "stop" else read.too_many
                _stop_nonfinite(run, log, bad.step, bad.why, bad.logs, read.in_a_row if read.too_many else 0)
            if read.first_bad:
                acc.print(f"step {read.first_bad.step}: {read.first_bad.why}; "
                          + (f"{read.bad_steps} non-finite steps up to step {done} " if read.bad_steps > 1 else "step ")
                          + "skipped (training.nonfinite=skip)")
            n_tok = int(acc.reduce(torch.tensor(window_tokens, device=acc.device), reduction="sum"))
            run.state["tokens"] += n_tok
            elapsed = time.perf_counter() - window_start
            tps = n_tok / max(elapsed, 1e-9)
            if t.nonfinite == "skip":
                logs["skipped_steps"] = skipped
            if read.first_bad and read.first_bad.step == done:
                logs["nonfinite"] = read.first_bad.why
            logs.update(step=done, lr=run.scheduler.get_last_lr()[0], tokens_per_sec=tps, tokens=run.state["tokens"])
            if (u := mfu(flops_tok, tps, acc.num_processes)) is not None:
                logs["mfu"] = u
            bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}", tok_s=f"{tps:,.0f}")
            acc.log(logs, step=done)
            log.write(logs)
            run.history.append(logs)
            window_tokens, window_start = 0, time.perf_counter()
            if evaluate_now:
                metrics = evaluate(acc, run.model, task, run.eval_batches)
                acc.log(metrics, step=done)
                log.write({"step": done, **metrics})
                acc.print(f"step {done}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
                if task.stop_after_eval(done):  # early stopping (every rank saw the same metrics)
                    run.max_steps = done  # the run ends here: finish() evaluates, exports and reports this step
                    break
            state = _trainer_state(run, done, skipped)
            signum = signals.requested(acc)
            if (save or signum) and not _weights_finite(acc, run.model):
                bar.close()
                _stop_nonfinite(run, log, done, "the weights are not finite after the update", logs)
            if save:
                checkpoint.save_checkpoint(acc, run.out, done, state, t.save_total_limit, objects=[run.scheduler])
                saved_at = done
            if signum:
                bar.close()
                raise _preempted(run, signum, state, saved_at)
    bar.close()
    return log


def _rewind_schedule(run: Run, skipped: int) -> None:
    """The loop stepped the schedule after every step; a skipped update must not advance it (as
    before the sync-free step): back `skipped` steps. transformers' schedules are LambdaLR, a closed
    form of last_epoch, so stepping from last_epoch - skipped - 1 sets the right rate."""
    if skipped:
        run.scheduler.last_epoch -= skipped + 1
        run.scheduler.step()


def finish(run: Run, log) -> TrainResult:
    """Final evaluation, export, optional push, results.json."""
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
    if not _weights_finite(acc, run.model):
        acc.end_training()
        raise LmforgeError(f"step {run.max_steps}: the weights are not finite after the last update; nothing was "
                           "exported (lower training.learning_rate)")
    export_dirs = export(acc, run.task, run.model, run.tokenizer, run.out / "final")
    if acc.is_main_process:
        from pipelines.runs.results import write_results

        results = write_results(run, final_metrics, export_dirs, log)  # also logs the table to the trackers
        if t.push_to_hub and export_dirs:
            from pipelines.runs.push import push_folder

            push_folder(export_dirs[0], t.hub_model_id or run.recipe.name, results=results)
    acc.end_training()
    return TrainResult(run.out, export_dirs, run.max_steps, run.history, final_metrics)


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

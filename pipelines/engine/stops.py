"""How a run ends before its last step, and the bookkeeping of skipped steps: non-finite losses or
weights (training.nonfinite) and stop signals (a checkpoint, then Preempted)."""

from __future__ import annotations

import torch

from pipelines.engine import checkpoint
from pipelines.errors import LmforgeError, Preempted
from pipelines.runs.tracking import JsonlLog


def weights_finite(acc, model) -> bool:
    """An update can overflow the weights after a finite loss and gradient: checked before each save
    and the export, so no checkpoint holds inf weights (one host sync; all ranks agree). A ZeRO-3
    parameter released to its shard is an empty placeholder: its rank's shard (ds_tensor) is checked."""
    shards = (p.ds_tensor if p.numel() == 0 and hasattr(p, "ds_tensor") else p for p in model.parameters())
    local = torch.stack([torch.isfinite(t).all().to(acc.device) for t in shards]).all()
    if acc.num_processes > 1:
        return bool(acc.gather(local.reshape(1)).all())
    return bool(local)


def stop_nonfinite(run, log: JsonlLog, step: int, why: str, logs: dict, in_a_row: int = 0):
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


def preempted(run, signum: int, state: dict, saved_at: int) -> Preempted:
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


def rewind_schedule(run, skipped: int) -> None:
    """The loop stepped the schedule after every step; a skipped update must not advance it (as
    before the sync-free step): back `skipped` steps. transformers' schedules are LambdaLR, a closed
    form of last_epoch, so stepping from last_epoch - skipped - 1 sets the right rate."""
    if skipped:
        run.scheduler.last_epoch -= skipped + 1
        run.scheduler.step()

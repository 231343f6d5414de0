"""One optimizer step over a global batch, and one evaluation pass: the two things the loop does
with the model. Loss terms are sums normalised by their global unit counts (docs/DESIGN.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pipelines.engine.step_stats import StepResult


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


def to_device(batch: dict, device) -> dict:
    # non_blocking: a copy from pinned memory (the loader pins on GPU) overlaps the running step
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class DeviceBatches(Sequence):
    """The evaluation batches, kept on the host and copied to the device one at a time as they are
    read: a GPU holds one eval batch at a time, not the whole eval set for the whole run. Tasks
    iterate it like the list it wraps (eval_metrics(model, batches))."""

    def __init__(self, batches: list[dict], device):
        self.batches, self.device = batches, device

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return DeviceBatches(self.batches[i], self.device)
        return to_device(self.batches[i], self.device)

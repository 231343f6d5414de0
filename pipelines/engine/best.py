"""Export the best dev evaluation instead of the last step (GLUE's default, objective.export_best),
and stop early when the main metric stops improving (objective.early_stopping_patience).

A task asks for it with `Task.keep_best()` (its main metric and patience); the engine then owns one
BestKeeper per run (Run.best): every evaluation (periodic and final) updates it, a CPU copy of the
trained weights is kept whenever the main metric improves, the loop stops when `patience`
evaluations in a row bring no gain, and finish() loads the copy back before the export. Only trainable
parameters and buffers are copied: a LoRA run keeps its adapters and head, not the frozen base.
Not for sharded (ZeRO-3 / FSDP) models, whose local state is a shard: refused at build time.
The copy lives in memory: a resumed run keeps the best of the evaluations made after the resume.
The dev score reported is the best one, an optimistic estimate (chosen on the same dev set)."""

from __future__ import annotations

import math
from itertools import chain

from pipelines.errors import LmforgeError


class BestKeeper:
    def __init__(self, metric: str, patience: int = 0):
        self.metric = metric
        self.patience = patience  # evaluations without improvement before stopping; 0: never stop
        self.score = -math.inf
        self.metrics: dict[str, float] | None = None
        self.state: dict | None = None
        self.evaluations = 0
        self.best_at = 0  # which evaluation (1-based) was the best
        self.steps: list[int | None] = []  # each evaluation's step (None: the final one, after training)
        self.stopped_at: int | None = None

    def update(self, model, metrics: dict[str, float]) -> None:
        if self.stopped_at is not None:  # finish() re-evaluates the weights just evaluated: not a new one
            return
        self.evaluations += 1
        self.steps.append(None)
        score = metrics.get(self.metric, -math.inf)
        if score > self.score:  # ties keep the earlier one; NaN never wins
            self.score, self.metrics, self.best_at = score, dict(metrics), self.evaluations
            if self.state is None:
                self.state = {name: t.detach().to("cpu", copy=True) for name, t in _trained(model)}
            else:  # into the same buffers: never two copies in memory at once
                for name, t in _trained(model):
                    self.state[name].copy_(t.detach())

    def after_evaluation(self, step: int) -> bool:
        """Record the step of the evaluation just made; True when `patience` evaluations in a row
        have not improved on the best (early stopping)."""
        if not self.steps or self.steps[-1] is not None:  # no update() since the last call
            return False
        self.steps[-1] = step
        if self.patience and self.evaluations - self.best_at >= self.patience:
            self.stopped_at = step
            return True
        return False

    def restore(self, model) -> None:
        if self.state is None:
            return
        import torch

        current = dict(_tensors(model))
        with torch.no_grad():
            for name, saved in self.state.items():
                current[name].copy_(saved)

    def summary(self, last_step: int) -> dict | None:
        """Which evaluation was exported (for eval_results.json); None when none had a score."""
        if self.metrics is None:
            return None
        step = self.steps[self.best_at - 1]
        return {"metric": self.metric, "score": self.score, "evaluation": self.best_at,
                "evaluations": self.evaluations, "step": last_step if step is None else step,
                "stopped_early_at": self.stopped_at, "patience": self.patience}


def summary_line(s: dict) -> str:
    line = (f"exported the best of {s['evaluations']} evaluations: #{s['evaluation']} at step {s['step']} "
            f"({s['metric']}={s['score']:.4f})")
    if s["stopped_early_at"] is not None:
        line += f"; stopped early at step {s['stopped_early_at']} (no gain in {s['patience']} evaluations)"
    return line


def _tensors(model):
    """(name, tensor) of the model's parameters and buffers, unwrapped from DDP / torch.compile."""
    from accelerate.utils import extract_model_from_parallel

    inner = extract_model_from_parallel(model, keep_torch_compile=False)
    return chain(inner.named_parameters(), inner.named_buffers())


def _trained(model):
    """What training can change: parameters that take gradients, and buffers (small)."""
    import torch

    return [(n, t) for n, t in _tensors(model) if not isinstance(t, torch.nn.Parameter) or t.requires_grad]


def check_unsharded(where: str) -> None:
    """Refuse ZeRO-3 / FSDP, where each process holds a shard and the copy would be partial."""
    from accelerate.state import AcceleratorState, is_initialized

    if not is_initialized():
        return
    state = AcceleratorState()
    kind = state.distributed_type
    if kind == "FSDP" or (kind == "DEEPSPEED" and state.deepspeed_plugin.zero_stage == 3):
        raise LmforgeError(f"{where}, export_best: keeping the best evaluation needs whole weights on each "
                           f"process, but this launch shards them ({'FSDP' if kind == 'FSDP' else 'ZeRO-3'}); "
                           "set objective.export_best=false (exports the last step) or use DDP / ZeRO-2")

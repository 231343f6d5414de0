"""Export the best evaluation instead of the last step (objective.export_best=true with
training.eval_steps=N): the task keeps a CPU copy of the weights whenever the task's main dev metric
improves, and loads it back before the export. No engine hook: every evaluation (periodic and final)
passes through the task's eval_metrics. Costs one model's worth of CPU memory; not for sharded
(ZeRO-3 / FSDP) models, whose local state is a shard. The dev score reported is then the best one,
an optimistic estimate (the checkpoint was chosen on the same dev set)."""

from __future__ import annotations

import math


class BestKeeper:
    def __init__(self, metric: str):
        self.metric = metric
        self.score = -math.inf
        self.metrics: dict[str, float] | None = None
        self.state: dict | None = None
        self.evaluations = 0
        self.best_at = 0  # which evaluation (1-based) was the best

    def update(self, model, metrics: dict[str, float]) -> None:
        from accelerate.utils import extract_model_from_parallel

        self.evaluations += 1
        score = metrics.get(self.metric, -math.inf)
        if score > self.score:  # ties keep the earlier one
            self.score, self.metrics, self.best_at = score, dict(metrics), self.evaluations
            inner = extract_model_from_parallel(model)
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in inner.state_dict().items()}

    def restore(self, model) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)

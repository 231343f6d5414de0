"""Task-specific logit distillation (Hinton et al. 2015), everything in one file.

The teacher is a classifier already fine-tuned on the GLUE task; the student learns from
    alpha * CE(student, hard labels) + (1 - alpha) * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))
and, for STS-B (regression), alpha * MSE(student, label) + (1 - alpha) * MSE(student, teacher's score).
The teacher's logits are computed once, before training, for the train and dev examples (cached
under the prepared-data folder by teacher files and inputs; glue_student.py) and travel in the batch.
alpha = 1 is plain fine-tuning, step for step (tests/distillation/test_distill_methods.py).
objective.augment_copies > 0 adds TinyBERT's augmented examples (tasks/distillation/augment.py),
labelled by the teacher only.

    make distill METHOD=kd TEACHER=<fine-tuned teacher> STUDENT=student-tiny TASK=glue/sst2
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.config import check_range
from tasks.base import register
from tasks.distillation.glue_student import GlueDistillParams, GlueStudent


@dataclass
class KdParams(GlueDistillParams):
    alpha: float = 0.5  # weight of the hard-label loss; 1 - alpha on the teacher's soft targets
    temperature: float = 2.0

    def check(self, where: str) -> None:
        super().check(where)
        check_range(where, "alpha", self.alpha, lo=0.0, hi=1.0)
        check_range(where, "temperature", self.temperature, lo=0.0, lo_open=True)


@register("distill-kd")
class LogitDistillation(GlueStudent):
    Params = KdParams
    cached_teacher_logits = True

    @property
    def loss_weights(self) -> dict[str, float]:
        return {"hard": self.params.alpha, "soft": 1.0 - self.params.alpha}

    def build_model(self, tokenizer):
        return self.build_student(tokenizer)

    def loss_counts(self, batch):
        labels = batch["labels"]
        labelled = (~labels.isnan() if self.spec.is_regression else labels != -100).sum()  # augmented: none
        return {"hard": labelled, "soft": torch.tensor(labels.numel())}

    def loss(self, model, batch):
        from tasks.distillation.losses import soft_kl_sum, squared_error_sum

        logits = self._logits(model, batch).float()
        teacher = batch["teacher_logits"].float()
        if self.spec.is_regression:
            score, labels = logits.squeeze(-1), batch["labels"]
            known = ~labels.isnan()
            return {"hard": squared_error_sum(score[known], labels[known]),
                    "soft": squared_error_sum(score, teacher[:, 0])}
        hard = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum", ignore_index=-100)
        return {"hard": hard, "soft": soft_kl_sum(logits, teacher, self.params.temperature)}

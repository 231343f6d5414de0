"""Task-specific logit distillation (Hinton et al. 2015), everything in one file.

The teacher is a classifier already fine-tuned on the GLUE task; the student learns from
    alpha * CE(student, hard labels) + (1 - alpha) * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))
and, for STS-B (regression), alpha * MSE(student, label) + (1 - alpha) * MSE(student, teacher's score).
The teacher runs in eval mode (no dropout), so its logits are a fixed function of each example:
they are computed once, before training, for the train and dev examples (cached under the
prepared-data folder by teacher files and inputs) and travel in the batch. alpha = 1 is plain
fine-tuning, step for step (tests/distillation/test_distill_methods.py). objective.augment_copies > 0
adds TinyBERT's augmented examples (tasks/distillation/augment.py), labelled by the teacher only.

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
    # TinyBERT's data augmentation (tasks/distillation/augment.py): new examples per training example
    # (0: off; the paper uses 20), word replacement probability, neighbours per word
    augment_copies: int = 0
    augment_prob: float = 0.4
    augment_neighbours: int = 15

    def check(self, where: str) -> None:
        super().check(where)
        check_range(where, "alpha", self.alpha, lo=0.0, hi=1.0)
        check_range(where, "temperature", self.temperature, lo=0.0, lo_open=True)
        check_range(where, "augment_copies", self.augment_copies, lo=0)
        check_range(where, "augment_prob", self.augment_prob, lo=0.0, hi=1.0)
        check_range(where, "augment_neighbours", self.augment_neighbours, lo=1)


@register("distill-kd")
class LogitDistillation(GlueStudent):
    Params = KdParams

    def __init__(self, recipe):
        super().__init__(recipe)
        self.loss_weights = {"hard": self.params.alpha, "soft": 1.0 - self.params.alpha}

    def prepare(self, tokenizer):
        from tasks.distillation.teacher import cached_teacher_logits

        train, evals = super().prepare(tokenizer)
        if self.params.augment_copies:
            train = train + self.augmented(tokenizer)
        pad = tokenizer.pad_token_id
        for rows in (train, evals):
            logits = cached_teacher_logits(self.params.teacher, self.load_teacher, rows, pad)
            for row, z in zip(rows, logits):
                row["teacher_logits"] = z
        return train, evals

    def augmented(self, tokenizer) -> list[dict]:
        """augment_copies new examples per training example, unlabelled (the teacher's logits are their
        only target: label -100, NaN for a regression task, which the hard-label loss skips)."""
        import numpy as np

        from tasks.distillation.augment import augment_texts, neighbours
        from tasks.finetuning.glue import load_glue_splits

        p, seed = self.params, self.recipe.training.seed
        rows, _ = load_glue_splits(p, seed)
        columns = [list(rows[c]) for c in self.spec.text_columns]
        words = {w for col in columns for text in col for w in text.split()}
        table = self.load_teacher().get_input_embeddings().weight.detach()
        near = neighbours(tokenizer, table, words, p.augment_neighbours)
        rng = np.random.default_rng(seed)
        variants = [augment_texts(col, near, p.augment_copies, p.augment_prob, rng) for col in columns]
        texts = [[v[i][c] for i in range(len(v)) for c in range(p.augment_copies)] for v in variants]
        no_label = float("nan") if self.spec.is_regression else -100
        fake = {c: t for c, t in zip(self.spec.text_columns, texts)} | {"label": [no_label] * len(texts[0])}
        return self._encode(fake, 0)

    def build_model(self, tokenizer):
        return self.build_student(tokenizer)

    def collate(self, examples, generator):
        batch = super().collate(examples, generator)
        batch["teacher_logits"] = torch.stack([torch.from_numpy(e["teacher_logits"]) for e in examples])
        return batch

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

"""DistilBERT-style pretraining distillation (Sanh et al. 2019), everything in one file.

The student does masked language modelling on the corpus (RoBERTa-style packing and dynamic masking:
tasks/objectives/roberta_mlm.py) next to a frozen MLM teacher, with the paper's loss
    5 * L_ce + 2 * L_mlm + 1 * L_cos          (alpha_ce, alpha_mlm, alpha_cos in the recipe)
  L_ce  = T^2 KL(softmax(z_t / T) || softmax(z_s / T)), T = 2, at every non-padding position
          (soft_targets_at=masked: only at the masked ones, the reference code's restrict_ce_to_mask)
  L_mlm = cross-entropy against the original tokens at the masked positions
  L_cos = 1 - cos(h_s, h_t) of the last hidden states at every non-padding position
each averaged over its positions in the global batch. The student's config is the teacher's with
the student recipe's changes, by default half the teacher's layers; when the widths match it starts
from every (N / M)-th teacher layer (0, 2, 4, ... for half; the reference extraction script picks
0, 2, 4, 7, 9, 11 of 12) plus the teacher's embeddings and MLM head. It exports as a plain
AutoModelForMaskedLM checkpoint.

The teacher needs a trained MLM head (an lmforge-pretrained BERT, any local *ForMaskedLM checkpoint).

    make distill METHOD=distilbert TEACHER=runs/bert-tiny/final STUDENT=student-half TASK=pretrain
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pipelines.config import check_choice, check_range
from pipelines.errors import LmforgeError
from tasks.base import Task, register, write_pretrained
from tasks.distillation.teacher import WithFrozenTeacher, require_teacher
from tasks.objectives.roberta_mlm import MaskedLM
from tasks.shared.masked_lm import MlmParams, masked_hits
from tasks.shared.masking import IGNORE_INDEX

MLM_HEAD = ("cls.predictions", "lm_head", "generator_lm_head", "predictions.decoder")


@dataclass
class DistilBertParams(MlmParams):
    teacher: str | None = None  # a *ForMaskedLM checkpoint folder (with a trained MLM head)
    temperature: float = 2.0
    alpha_ce: float = 5.0
    alpha_mlm: float = 2.0
    alpha_cos: float = 1.0
    soft_targets_at: str = "all"  # all non-padding positions (the paper) | masked
    init_from_teacher: bool = True  # every (N / M)-th teacher layer, when the widths match
    sparse_prediction: bool = False  # the soft targets need every position's logits

    def check(self, where: str) -> None:
        super().check(where)
        require_teacher(where, self.teacher, "MLM teacher")
        check_range(where, "temperature", self.temperature, lo=0.0, lo_open=True)
        for name in ("alpha_ce", "alpha_mlm", "alpha_cos"):
            check_range(where, name, getattr(self, name), lo=0.0)
        check_choice(where, "soft_targets_at", self.soft_targets_at, ("all", "masked"))
        if self.sparse_prediction:
            raise LmforgeError(f"{where}: sparse_prediction=true: the soft targets need the logits of every "
                               "position; DistilBERT distillation computes them densely")


def initial_layers(student_layers: int, teacher_layers: int) -> list[int]:
    """The teacher layers (0-based) a student of the same width starts from: every (N / M)-th, from
    the first (DistilBERT takes every other one)."""
    if student_layers > teacher_layers:
        raise LmforgeError(f"the student has {student_layers} layers and the teacher {teacher_layers}: "
                           "it cannot start from the teacher's layers (objective.init_from_teacher=false)")
    return [m * teacher_layers // student_layers for m in range(student_layers)]


class DistilBertDistiller(WithFrozenTeacher):
    """forward = the three loss sums of one batch (student and teacher in one top-level call)."""

    def __init__(self, student, teacher, temperature: float, soft_at_masked: bool):
        super().__init__(student, teacher)
        self.temperature, self.soft_at_masked = temperature, soft_at_masked

    def forward(self, input_ids, attention_mask, labels):
        from tasks.distillation.losses import cosine_sum, soft_kl_sum
        from tasks.shared.losses import token_ce_sum

        s = self.student(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        with torch.no_grad():
            t = self.teacher(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        real = attention_mask.bool()
        soft_rows = labels != IGNORE_INDEX if self.soft_at_masked else real
        hs, ht = s.hidden_states[-1][real], t.hidden_states[-1][real]
        # objective.alpha_cos=0 lets a student of another width distil (the term is then not computed)
        cos = cosine_sum(hs, ht) if hs.size(-1) == ht.size(-1) else hs.new_zeros(())
        return {"soft": soft_kl_sum(s.logits[soft_rows], t.logits[soft_rows], self.temperature),
                "mlm": token_ce_sum(s.logits, labels), "cos": cos}


@register("distill-mlm")
class DistilBertDistillation(MaskedLM):
    Params = DistilBertParams

    @property
    def loss_weights(self) -> dict[str, float]:
        p = self.params
        return {"soft": p.alpha_ce, "mlm": p.alpha_mlm, "cos": p.alpha_cos}

    load_tokenizer = Task.load_tokenizer  # the teacher's (tokenizer.name_or_path), whatever the student family

    def build_model(self, tokenizer):
        from transformers import AutoModelForMaskedLM

        from tasks.distillation.teacher import copy_teacher_layers, teacher_and_student

        where = f"recipe '{self.recipe.name}'"
        self.setup_once(tokenizer)
        teacher, student, fresh = teacher_and_student(self.recipe, tokenizer, AutoModelForMaskedLM,
                                                      self.params.teacher, MLM_HEAD)
        if fresh and self.params.init_from_teacher and student.config.hidden_size == teacher.config.hidden_size:
            self.teacher_layers = initial_layers(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
            copy_teacher_layers(student, teacher, self.teacher_layers)
        if self.params.alpha_cos and student.config.hidden_size != teacher.config.hidden_size:
            raise LmforgeError(f"{where}: objective.alpha_cos={self.params.alpha_cos} needs the student's width "
                               f"({student.config.hidden_size}) to equal the teacher's ({teacher.config.hidden_size}); "
                               "set objective.alpha_cos=0")
        return DistilBertDistiller(student, teacher, self.params.temperature, self.params.soft_targets_at == "masked")

    def loss_counts(self, batch):
        real = batch["attention_mask"].sum()
        masked = (batch["labels"] != IGNORE_INDEX).sum()
        return {"soft": masked if self.params.soft_targets_at == "masked" else real, "mlm": masked, "cos": real}

    def loss(self, model, batch):
        out = model(batch["input_ids"], batch["attention_mask"], batch["labels"])
        return {k: out[k] for k in self.loss_weights}

    @torch.no_grad()
    def eval_metrics(self, model, batches):
        from accelerate.utils import extract_model_from_parallel

        student = extract_model_from_parallel(model).student
        right = total = 0
        for b in batches:
            logits = student(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            hits, n = masked_hits(logits, b["labels"])
            right, total = right + hits, total + n
        return {"mlm_accuracy": right / max(total, 1)}

    def export(self, model, tokenizer, out_dir, state_dict=None):
        from tasks.distillation.teacher import student_state

        write_pretrained(model.student, tokenizer, Path(out_dir), self.recipe, state_dict=student_state(state_dict))
        return [Path(out_dir)]

    def flops_per_token(self, model):
        """Student training plus the teacher's forward pass (a third of a training step), both with
        dense MLM heads: the soft targets need every position's logits (pipelines/engine/flops.py)."""
        from pipelines.engine.flops import mlm_flops_per_token

        s = mlm_flops_per_token(model.student, self.max_length)
        t = mlm_flops_per_token(model.teacher, self.max_length)
        return None if s is None or t is None else s + t / 3

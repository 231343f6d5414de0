"""TinyBERT-style layer-wise distillation (Jiao et al. 2020), general then task-specific, in one file.

For an M-layer student of an N-layer teacher, student layer m learns from teacher layer
g(m) = m * N / M (losses.layer_map; 0 is the embedding output), with
  L_emb  = MSE(E_s W_h, E_t)                                   embedding outputs
  L_hidn = sum_m MSE(H_s^m W_h, H_t^g(m))                      hidden states
  L_attn = sum_m MSE(A_s^m, A_t^g(m))                          attention SCORES before the softmax
  L_pred = soft cross-entropy(z_s / T, z_t / T), T = 1          logits (task stage only)
W_h is one learned projection (student width -> teacher width) shared by all layers; it exists only
when the widths differ and is not exported. Each MSE is a mean over the real (non-padding) tokens,
or (query, key) pairs of real tokens for the scores (TinyBERT's code zeroes the padded entries and
averages over the padded tensor instead). Heads: with fewer student heads, each student head learns
the mean score of H_t / H_s consecutive teacher heads (losses.group_heads). The scores are read
through a registered transformers attention function ("lmforge_scores": eager attention that
returns its pre-softmax scores, padded keys zeroed), set only while the intermediate losses run.

Stages (objective.stage):
  general       on the corpus (make distill METHOD=tinybert TASK=pretrain): L_emb + L_hidn + L_attn,
                with any encoder as teacher (all-MiniLM-L6-v2 works: no MLM head is needed);
                exports the student encoder (AutoModel), the start of the task stage.
  intermediate  on a GLUE task with a fine-tuned teacher: L_emb + L_hidn + L_attn;
  prediction    then L_pred from the intermediate student, the student alone against the teacher's
                logits, cached once before training (the teacher is in eval mode: they do not change).
                `make distill METHOD=tinybert TASK=glue/<task>` runs intermediate, then prediction
                (TinyBERT's two runs). objective.augment_copies adds TinyBERT's augmented examples
                to both stages (augment.py; the paper's word neighbours come from BERT's MLM and GloVe,
                ours from the teacher's embedding table).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from pipelines.config import check_choice, check_range
from tasks.base import Task, register, write_pretrained
from tasks.distillation import losses
from tasks.distillation.glue_student import GlueDistillParams, GlueStudent
from tasks.distillation.teacher import WithFrozenTeacher, require_teacher, student_state
from tasks.objectives.roberta_mlm import MaskedLM

SCORES = "lmforge_scores"
INTERMEDIATE = ("embedding", "hidden", "attention")


def _register_score_attention() -> None:
    """Register SCORES with transformers' AttentionInterface (and its additive mask), once."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    if SCORES in AttentionInterface._global_mapping:
        return

    def scores_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        scaling = query.size(-1) ** -0.5 if scaling is None else scaling
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling
        masked = scores if attention_mask is None else scores + attention_mask
        probs = nn.functional.dropout(torch.softmax(masked, dim=-1), p=dropout, training=module.training)
        out = torch.matmul(probs, value).transpose(1, 2).contiguous()
        if attention_mask is not None:  # TinyBERT zeroes the padded keys' scores
            scores = scores.masked_fill(attention_mask < 0, 0.0)
        return out, scores

    AttentionInterface.register(SCORES, scores_attention)
    AttentionMaskInterface.register(SCORES, eager_mask)


def use_attention(model: nn.Module, name: str) -> None:
    if name == SCORES:
        _register_score_attention()
    model.set_attn_implementation(name)


@dataclass
class LayerWeights:
    embedding: float = 1.0
    hidden: float = 1.0
    attention: float = 1.0
    prediction: float = 1.0

    def check(self, where: str) -> None:
        for name in vars(self):
            check_range(where, f"weights.{name}", getattr(self, name), lo=0.0)


class TinyBertDistiller(WithFrozenTeacher):
    """forward = the intermediate loss sums of one batch (embedding, hidden, attention)."""

    def __init__(self, student, teacher):
        super().__init__(student, teacher)
        s, t = student.config, teacher.config
        self.mapping = losses.layer_map(s.num_hidden_layers, t.num_hidden_layers)
        losses.check_head_counts(t.num_attention_heads, s.num_attention_heads)
        # W_h: only when the widths differ (TinyBERT's fit_dense)
        self.projection = nn.Linear(s.hidden_size, t.hidden_size) if s.hidden_size != t.hidden_size else None
        use_attention(student, SCORES)
        use_attention(teacher, SCORES)

    def _project(self, h):
        return h if self.projection is None else self.projection(h)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        extra = {"output_hidden_states": True, "output_attentions": True}
        s = self.student(**inputs, **extra)
        with torch.no_grad():
            t = self.teacher(**inputs, **extra)
        real = attention_mask.bool()
        pairs = (real[:, :, None] & real[:, None, :])[:, None]  # [B, 1, T, T]
        heads = s.attentions[0].size(1)
        return {
            "embedding": losses.squared_error_sum(self._project(s.hidden_states[0])[real], t.hidden_states[0][real]),
            "hidden": sum(losses.squared_error_sum(self._project(s.hidden_states[m])[real], t.hidden_states[g][real])
                          for m, g in enumerate(self.mapping, start=1)),
            "attention": sum(
                losses.squared_error_sum(s.attentions[m - 1].masked_select(pairs),
                                         losses.group_heads(t.attentions[g - 1], heads).masked_select(pairs))
                for m, g in enumerate(self.mapping, start=1)),
        }


def intermediate_counts(batch: dict, student_heads: int, teacher_width: int) -> dict:
    """Units of the intermediate terms: real tokens x teacher width (embedding, hidden), real
    (query, key) pairs x student heads (attention)."""
    lengths = batch["attention_mask"].sum(dim=1)
    tokens = lengths.sum() * teacher_width
    return {"embedding": tokens, "hidden": tokens,
            "attention": (lengths * lengths).sum() * student_heads}


def export_student(model, tokenizer, out_dir, recipe, state_dict) -> list[Path]:
    """The student alone, with transformers' default attention (the scores function is ours)."""
    use_attention(model.student, "sdpa")
    write_pretrained(model.student, tokenizer, Path(out_dir), recipe, state_dict=student_state(state_dict))
    return [Path(out_dir)]


def flops(task, model):
    from pipelines.engine.flops import transformer_flops_per_token

    s = transformer_flops_per_token(model.student, task.max_length)
    t = transformer_flops_per_token(model.teacher, task.max_length)
    return None if s is None or t is None else s + t / 3  # teacher: forward only


# --- general stage: the corpus --------------------------------------------------------------------

@dataclass
class GeneralParams:
    teacher: str | None = None  # any encoder checkpoint folder (AutoModel)
    weights: LayerWeights = field(default_factory=LayerWeights)

    def check(self, where: str) -> None:
        require_teacher(where, self.teacher, "teacher")
        self.weights.check(where)


@register("distill-tinybert-general")
class TinyBertGeneral(MaskedLM):
    """Packed corpus blocks as MLM pretraining builds them, unmasked: the teacher's layers are the targets."""

    Params = GeneralParams
    needs_word_ids = False
    load_tokenizer = Task.load_tokenizer  # the teacher's (tokenizer.name_or_path), whatever the student family

    @property
    def loss_weights(self) -> dict[str, float]:
        return {n: getattr(self.params.weights, n) for n in INTERMEDIATE}

    def collate(self, examples, generator):
        from tasks.shared.batching import attention_mask, pad_stack

        input_ids = pad_stack([e["input_ids"] for e in examples], self.tokenizer.pad_token_id)
        lengths = torch.tensor([len(e["input_ids"]) for e in examples])
        return {"input_ids": input_ids,
                "attention_mask": attention_mask(lengths, input_ids.size(1))}

    def build_model(self, tokenizer):
        from transformers import AutoModel

        from tasks.distillation.teacher import teacher_and_student

        self.setup_once(tokenizer)
        teacher, student, _ = teacher_and_student(self.recipe, tokenizer, AutoModel, self.params.teacher)
        return TinyBertDistiller(student, teacher)

    @cached_property
    def units(self) -> tuple[int, int]:
        """(the student's attention heads, the teacher's width): what the attention and hidden-state
        MSE terms average over besides tokens; read from the two configs."""
        from transformers import AutoConfig

        from tasks.distillation.teacher import student_config

        teacher = AutoConfig.from_pretrained(self.params.teacher)
        path = self.recipe.model.name_or_path
        student = AutoConfig.from_pretrained(path) if path else student_config(teacher, self.recipe)
        return student.num_attention_heads, teacher.hidden_size

    def loss_counts(self, batch):
        return intermediate_counts(batch, *self.units)

    def loss(self, model, batch):
        out = model(batch["input_ids"], batch["attention_mask"])
        return {k: out[k] for k in self.loss_weights}

    def eval_metrics(self, model, batches):
        return {}

    def export(self, model, tokenizer, out_dir, state_dict=None):
        return export_student(model, tokenizer, out_dir, self.recipe, state_dict)

    def flops_per_token(self, model):
        return flops(self, model)


# --- task stage: a GLUE task --------------------------------------------------------------------

@dataclass
class TaskParams(GlueDistillParams):
    stage: str = "intermediate"  # intermediate | prediction (the driver runs both, in this order)
    # epochs of the intermediate stage (the driver's first run); None: training.num_train_epochs, which
    # the prediction stage always uses (TinyBERT: 20 and 3 on augmented data, 10 and 3 on MNLI)
    intermediate_epochs: float | None = None
    temperature: float = 1.0
    weights: LayerWeights = field(default_factory=LayerWeights)

    def check(self, where: str) -> None:
        super().check(where)
        check_choice(where, "stage", self.stage, ("intermediate", "prediction"))
        check_range(where, "temperature", self.temperature, lo=0.0, lo_open=True)
        check_range(where, "intermediate_epochs", self.intermediate_epochs, lo=0.0, lo_open=True)
        self.weights.check(where)


@register("distill-tinybert")
class TinyBertTask(GlueStudent):
    Params = TaskParams

    def __init__(self, recipe):
        super().__init__(recipe)
        self.intermediate = self.params.stage == "intermediate"
        self.cached_teacher_logits = not self.intermediate

    def keep_best(self):
        return None if self.intermediate else super().keep_best()  # intermediate: an untrained head, no score

    @property
    def loss_weights(self) -> dict[str, float]:
        names = INTERMEDIATE if self.params.stage == "intermediate" else ("prediction",)
        return {n: getattr(self.params.weights, n) for n in names}

    def build_model(self, tokenizer):
        student = self.build_student(tokenizer)
        if not self.intermediate:
            return student
        return TinyBertDistiller(student, self.load_teacher())

    @cached_property
    def units(self) -> tuple[int, int]:
        """(the student's attention heads, the teacher's width), read from the two configs (see
        TinyBertGeneral.units)."""
        from transformers import AutoConfig

        path = self.recipe.model.name_or_path
        student = AutoConfig.from_pretrained(path) if path else self.student_config(self.tokenizer)
        return student.num_attention_heads, self.teacher_config.hidden_size

    def loss_counts(self, batch):
        if not self.intermediate:
            return {"prediction": torch.tensor(batch["labels"].numel())}
        return intermediate_counts(batch, *self.units)

    def loss(self, model, batch):
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        if self.intermediate:
            out = model(**inputs)
            return {k: out[k] for k in self.loss_weights}
        logits, teacher = model(**inputs).logits.float(), batch["teacher_logits"].float()
        if self.spec.is_regression:  # STS-B: the teacher's score
            return {"prediction": losses.squared_error_sum(logits.squeeze(-1), teacher[:, 0])}
        return {"prediction": losses.soft_ce_sum(logits, teacher, self.params.temperature)}

    def _logits(self, model, batch):  # evaluation: the student's own predictions
        from accelerate.utils import extract_model_from_parallel

        if not self.intermediate:  # the model is the student
            return super()._logits(model, batch)
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        return extract_model_from_parallel(model).student(**inputs).logits

    def export(self, model, tokenizer, out_dir, state_dict=None):
        if not self.intermediate:  # the student alone, the best dev evaluation's (GlueClassification)
            return super().export(model, tokenizer, out_dir, state_dict=state_dict)
        return export_student(model, tokenizer, out_dir, self.recipe, state_dict)

    def flops_per_token(self, model):
        return flops(self, model) if self.intermediate else super().flops_per_token(model)

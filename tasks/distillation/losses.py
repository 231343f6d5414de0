"""The distillation losses as SUMS over their units (rows, tokens, elements): the engine divides each
term by its global count (tasks/base.py), so they average over the whole global batch.

Written by hand because no maintained library has them for encoders: TRL's GKD and DistillKit cover
decoders, TextBrewer and TinyBERT's code stopped in 2020. Each is a line or two of torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipelines.errors import LmforgeError


def soft_kl_sum(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """sum over rows of T^2 KL(softmax(z_t / T) || softmax(z_s / T)) (Hinton et al. 2015): the T^2 keeps
    the gradient's size independent of T. DistilBERT's L_ce is the same (KLDivLoss at T = 2)."""
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=-1)
    return t * t * (log_p_t.exp() * (log_p_t - log_p_s)).sum()


def soft_ce_sum(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """sum over rows of -sum_c softmax(z_t / T)_c log softmax(z_s / T)_c: TinyBERT's prediction-layer loss
    (its soft_cross_entropy; it equals the KL above plus the teacher's entropy, so the same gradient)."""
    t = float(temperature)
    p_t = F.softmax(teacher_logits.float() / t, dim=-1)
    return -(p_t * F.log_softmax(student_logits.float() / t, dim=-1)).sum()


def squared_error_sum(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """sum of (s - t)^2 over every element: MSE as a sum (TinyBERT's layer losses, STS-B's KD term)."""
    return (student.float() - teacher.float()).pow(2).sum()


def cosine_sum(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """sum over rows of 1 - cos(s, t): DistilBERT's L_cos (CosineEmbeddingLoss with target 1)."""
    return (1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=-1)).sum()


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """TinyBERT's uniform mapping g(m) = m * N / M: the teacher layer (1-based; 0 is the embedding
    output) that student layer m = 1..M learns from. With N / M not whole, g(m) = floor(m * N / M),
    which still maps the last student layer to the last teacher layer."""
    if not 1 <= student_layers <= teacher_layers:
        raise LmforgeError(f"the student has {student_layers} layers and the teacher {teacher_layers}: layer-wise "
                           "distillation needs 1 <= student layers <= teacher layers")
    return [m * teacher_layers // student_layers for m in range(1, student_layers + 1)]


def group_heads(teacher_scores: torch.Tensor, student_heads: int) -> torch.Tensor:
    """Teacher attention scores [B, H_t, T, T] as [B, H_s, T, T]: with fewer student heads, each student
    head learns the mean score of H_t / H_s consecutive teacher heads (TinyBERT itself keeps the
    teacher's head count; averaging is our choice, and needs H_t to be a multiple of H_s)."""
    b, h_t, q, k = teacher_scores.shape
    check_head_counts(h_t, student_heads)
    if h_t == student_heads:
        return teacher_scores
    return teacher_scores.view(b, student_heads, h_t // student_heads, q, k).mean(dim=2)


def check_head_counts(teacher_heads: int, student_heads: int) -> None:
    if teacher_heads % student_heads:
        raise LmforgeError(f"the teacher has {teacher_heads} attention heads and the student {student_heads}: "
                           "attention distillation needs the teacher's head count to be a multiple of the student's")

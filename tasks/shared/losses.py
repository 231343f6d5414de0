"""Loss sums: the engine divides each by its global count (tasks/base.py)."""

from __future__ import annotations

import torch


def token_ce_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy over positions whose label is not -100 (fp32 for stable sums)."""
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=-100, reduction="sum")

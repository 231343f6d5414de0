"""Padding lists of ids into batch tensors."""

from __future__ import annotations

import torch


def pad_stack(rows: list[list[int]], pad_value: int, length: int | None = None) -> torch.Tensor:
    """Right-pad lists of ints into a LongTensor (to `length` or the longest row)."""
    width = length or max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad_value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.as_tensor(r[:width], dtype=torch.long)
    return out


def attention_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """1 at the first lengths[i] positions of row i, 0 after (right padding), as a LongTensor [B, width]."""
    return (torch.arange(width)[None] < lengths[:, None]).long()


def split_word_ids(tokens: list) -> tuple[list[int], list[int]]:
    """(token ids, word ids) of a list of (token_id, word_id) pairs."""
    return [t for t, _ in tokens], [w for _, w in tokens]


def has_padding(attention_mask: torch.Tensor) -> bool:
    """A collator's "padded" entry, computed on the host: does any position of the batch hold padding?"""
    return bool((attention_mask == 0).any())


def model_attention_mask(batch: dict) -> torch.Tensor | None:
    """The mask to hand the model: None for a batch its collator marked unpadded ("padded": False).
    transformers checks `padding_mask.all()` on every forward to drop an all-ones mask (a device-to-
    host sync on a GPU); a packed batch, known to be full on the host, skips that read."""
    return batch["attention_mask"] if batch.get("padded", True) else None

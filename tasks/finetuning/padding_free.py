"""Padding-free (packed) sequence classification: the examples of a micro-batch packed into fewer
rows, each example attending only to itself, and the head run on each example's own first token.

A padded batch of SST-2 sentences is mostly padding (random batches of 32: the longest sentence
sets the width, the mean is a third of it), and every layer computes on it. ModernBERT and
MosaicBERT unpad before the encoder; HF's DataCollatorWithFlattening does it for models with a
varlen kernel (flash attention). Here, for any device and SDPA or eager attention:

- the collator packs the micro-batch's examples (the same ones, in the same order, as the padded
  path: equal batching) first-fit-decreasing into rows as wide as its longest example, so the
  packed batch is never larger than the padded one; it carries each token's example number
  (`segment_ids`, -1 for the tail padding of a row), per-example `position_ids` from 0, the token
  types, and `cls_positions`: the flat index of each example's first token, in example order;
- the forward builds the block-diagonal mask [rows, 1, width, width] on the device (a 4-D mask is
  passed through by transformers' mask builder untouched: a token sees only its own example; the
  padding of a row sees only itself, so no softmax row is empty) and adds the family's position
  offset (RoBERTa counts from padding_idx + 1);
- a forward hook on the encoder hands the rest of the model (BERT/ALBERT's pooler on [:, 0],
  RoBERTa/ELECTRA's head on features[:, 0]) the first-token states as [examples, 1, hidden], so the
  model's own head runs unchanged and returns logits [examples, labels] in example order. A ModernBERT
  that pools by mean gets each example's mean over its own tokens there instead (what its padded
  mean over the attention mask computes), and reads it as its first token for the call. The
  model is called through its top-level forward (DDP hooks, autocast), as tasks/shared/sparse_head.py
  does for the MLM output layer.

Every token attends to the same keys with the same positions and types as when padded, so logits
and gradients equal the padded path's up to float summation order (tests/finetuning/test_padding_free.py).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from pipelines.errors import LmforgeError
from tasks.shared.modeling import position_offset

# families whose classifier reads only the first token's state after the encoder (tested exact)
FAMILIES = ("bert", "roberta", "roberta-prelayernorm", "albert", "electra", "modernbert")
# attention kernels that take a 4-D mask as given (flash / flex would need the varlen path instead)
ATTENTION = ("sdpa", "eager")
# auto packs a micro-batch only when that removes at least this fraction of its rows: the block mask
# costs a few percent, so a batch that is already nearly full (length-grouped batches) stays padded
# (measured in docs/BENCHMARKS.md, "Padding-free GLUE")
MIN_ROW_SAVING = 0.1


def setting(recipe) -> str:
    """training.padding_free as auto | true | false (checked by pipelines/config.py; YAML's true
    arrives as the string 'True')."""
    return str(recipe.training.padding_free).lower()


def unsupported_reason(config) -> str | None:
    """Why a model with `config` cannot be trained packed here; None: it can."""
    family = getattr(config, "model_type", None)
    if family not in FAMILIES:
        return f"model type '{family}' (packed: {', '.join(FAMILIES)})"
    attention = getattr(config, "_attn_implementation", None) or "sdpa"  # transformers' default for these
    if attention not in ATTENTION:
        return f"attention '{attention}' (packed: {', '.join(ATTENTION)})"
    if family == "modernbert":  # both its poolings (cls, mean) pack; every layer must see the whole example
        if any(kind != "full_attention" for kind in config.layer_types):
            return "ModernBERT's local (sliding-window) attention layers (packed: full_attention only)"
    return None


def resolve(recipe, config) -> bool:
    """Whether the run may pack: auto and true where exact (unsupported_reason is None), true refused
    elsewhere with one line; false never."""
    wanted = setting(recipe)
    if wanted == "false":
        return False
    why = unsupported_reason(config)
    if why and wanted == "true":
        raise LmforgeError(f"recipe '{recipe.name}', training.padding_free=true: not supported for {why}; "
                           "set training.padding_free=auto (packs where supported) or false")
    return why is None


# --- collation ---------------------------------------------------------------------------------


def pack_rows(lengths: list[int], width: int) -> list[list[int]]:
    """Example indices per row: first-fit decreasing into rows of at most `width` tokens (within a row
    in example order). Deterministic: a pure function of the lengths."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):  # stable: ties keep example order
        if lengths[i] > width:
            raise ValueError(f"example {i} has {lengths[i]} tokens, more than the row width {width}")
        row = next((r for r, f in enumerate(free) if f >= lengths[i]), None)
        if row is None:
            rows.append([])
            free.append(width)
            row = len(rows) - 1
        rows[row].append(i)
        free[row] -= lengths[i]
    return [sorted(r) for r in rows]


def collate_packed(examples: list[dict], pad_id: int, min_saving: float = 0.0) -> dict[str, torch.Tensor] | None:
    """The packed layout of `examples` (module docstring), rows as wide as the longest example; None
    when packing would remove fewer than `min_saving` x len(examples) rows (the caller pads instead)."""
    lengths = [len(e["input_ids"]) for e in examples]
    width = max(lengths)
    rows = pack_rows(lengths, width)
    if len(examples) - len(rows) < min_saving * len(examples):
        return None
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    token_types, positions = torch.zeros(shape, dtype=torch.long), torch.zeros(shape, dtype=torch.long)
    segments = torch.full(shape, -1, dtype=torch.long)
    cls = torch.empty(len(examples), dtype=torch.long)
    for r, members in enumerate(rows):
        start = 0
        for i in members:
            end = start + lengths[i]
            input_ids[r, start:end] = torch.as_tensor(examples[i]["input_ids"])
            if "token_type_ids" in examples[i]:
                token_types[r, start:end] = torch.as_tensor(examples[i]["token_type_ids"])
            positions[r, start:end] = torch.arange(lengths[i])
            segments[r, start:end] = i
            cls[i] = r * width + start
            start = end
    return {"input_ids": input_ids, "token_type_ids": token_types, "position_ids": positions,
            "segment_ids": segments, "cls_positions": cls,
            "attention_mask": (segments >= 0).long()}  # real tokens: Task.tokens_in counts them


def is_packed(batch: dict) -> bool:
    return "cls_positions" in batch


# --- the forward -------------------------------------------------------------------------------


def _transformers_model(model: torch.nn.Module) -> torch.nn.Module:
    from accelerate.utils import extract_model_from_parallel

    inner = extract_model_from_parallel(model)
    return inner.get_base_model() if hasattr(inner, "peft_config") else inner  # peft (LoRA) wrapper


def block_mask(segments: torch.Tensor, attention: str, dtype: torch.dtype) -> torch.Tensor:
    """[rows, 1, width, width]: True (sdpa) / 0.0 (eager, added to the scores) where query and key
    belong to the same example, or are both the padding of a row."""
    same = segments[:, None, :, None] == segments[:, None, None, :]
    if attention == "sdpa":
        return same
    return torch.zeros(same.shape, dtype=dtype, device=same.device).masked_fill_(~same, torch.finfo(dtype).min)


def segment_means(flat: torch.Tensor, segments: torch.Tensor, n: int) -> torch.Tensor:
    """[n, hidden]: the mean of the rows of `flat` [tokens, hidden] of each example 0..n-1 (segment -1,
    a row's tail padding, is left out)."""
    real = segments >= 0
    sums = flat.new_zeros(n, flat.size(-1)).index_add_(0, segments[real], flat[real])
    counts = torch.bincount(segments[real], minlength=n).to(flat.dtype)
    return sums / counts[:, None]


@contextmanager
def first_tokens_only(model: torch.nn.Module, batch: dict):
    """Within the block, the encoder's output is cut to one state per example of the packed `batch`,
    shaped [n, 1, hidden]: its first token's (at batch["cls_positions"], flat indices), or, for a
    ModernBERT that pools by mean, the mean over its tokens, which its head then reads as a first
    token (its own mean would average over the 4-D mask); the model's own pooler/head then reads
    exactly those."""
    inner = _transformers_model(model)
    base, config = inner.base_model, inner.config  # the head reads the top model's config
    mean = getattr(config, "classifier_pooling", None) == "mean"

    def hook(module, args, output):
        hidden = output[0]
        flat = hidden.reshape(-1, hidden.size(-1))
        if mean:
            rows = segment_means(flat, batch["segment_ids"].reshape(-1), batch["cls_positions"].numel())
        else:
            rows = flat.index_select(0, batch["cls_positions"])
        rows = rows.unsqueeze(1)
        if isinstance(output, tuple):
            return (rows, *output[1:])
        output["last_hidden_state"] = rows
        return output

    # BERT/ALBERT keep a pooler after the encoder inside the base model; ModernBERT has no encoder module
    # and pools in its head, so its whole base model's output is cut
    handle = getattr(base, "encoder", base).register_forward_hook(hook)
    if mean:
        config.classifier_pooling = "cls"
    try:
        yield
    finally:
        handle.remove()
        if mean:
            config.classifier_pooling = "mean"


def packed_logits(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """Logits [examples, labels] of a collate_packed batch, in example order."""
    inner = _transformers_model(model)
    config = inner.config
    attention = getattr(config, "_attn_implementation", None) or "sdpa"
    why = unsupported_reason(config)
    if why:  # a model built otherwise than the config setup() looked at
        raise LmforgeError(f"training.padding_free: a packed batch reached a model it is not exact for: {why}")
    positions = batch["position_ids"]
    positions = positions + position_offset(inner)  # RoBERTa-style tables count from padding_idx + 1
    mask = block_mask(batch["segment_ids"], attention, next(inner.parameters()).dtype)
    types = {"token_type_ids": batch["token_type_ids"]} if takes_token_types(inner) else {}  # not ModernBERT
    with first_tokens_only(model, batch):
        return model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=positions, **types).logits


def takes_token_types(model: torch.nn.Module) -> bool:
    import inspect

    return "token_type_ids" in inspect.signature(model.forward).parameters

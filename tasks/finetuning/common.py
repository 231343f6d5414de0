"""What every fine-tuning task needs: the checkpoint's config, the input length it supports, and
evaluation rows gathered from all ranks."""

from __future__ import annotations

import logging

from pipelines.errors import LmforgeError, one_line

log = logging.getLogger(__name__)


def checkpoint_config(path: str):
    """The transformers config of checkpoint `path`; a user error when it cannot be read."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise LmforgeError(f"--model {path}: cannot read its config: {one_line(exc)}") from None


def family_override(path: str) -> list[str]:
    """The override `model.family=<the checkpoint's model_type>` for a fine-tuning run of `path`: the
    recipes' family (bert) is a default for building models, and a checkpoint brings its own, so
    model.config is checked against the checkpoint's Config class (ModernBERT's classifier_pooling is
    no BertConfig field) and run.json names the family that actually trains."""
    return [f"model.family={checkpoint_config(path).model_type}"]


def fit_max_length(recipe, tokenizer, config=None, label: str | None = None) -> int:
    """recipe.data.max_seq_length, lowered to what the checkpoint can embed (its position table, the
    tokenizer's model_max_length), as transformers' run_glue.py does: a recipe default of 128 must
    not index past a tiny model's 64 positions. Relative-position models (T5) have no table; only
    the tokenizer limits them. The recipe is not changed: the caller keeps the result."""
    config = config or checkpoint_config(recipe.model.name_or_path)
    limits = [getattr(config, k) for k in ("max_position_embeddings", "n_positions") if getattr(config, k, None)]
    limits += [tokenizer.model_max_length] if tokenizer.model_max_length else []
    wanted = recipe.data.max_seq_length
    if limits and min(limits) < wanted:
        log.warning("data.max_seq_length %d exceeds what %s supports; using %d", wanted,
                    label or recipe.model.name_or_path, int(min(limits)))
        return int(min(limits))
    return wanted


def gather(objects: list) -> list:
    """All ranks' lists, concatenated (a no-op in one process)."""
    from accelerate.utils import gather_object

    return gather_object(objects)


def eval_tables(benchmark: str, metrics: dict, sample: tuple[list[str], list[list]] | None = None) -> dict:
    """Task.tracker_tables of a fine-tuning run: '<benchmark>/dev' (metric, value) of the evaluation the
    export holds and, when given, '<benchmark>/predictions' (columns, rows) of the last evaluation."""
    rows = [[k, float(v)] for k, v in metrics.items() if isinstance(v, (int, float)) and not k.startswith("loss")]
    tables = {f"{benchmark}/dev": (["metric", "value"], rows)}
    if sample and sample[1]:
        tables[f"{benchmark}/predictions"] = sample
    return tables

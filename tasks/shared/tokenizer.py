"""The tokenizer of a recipe: a named one (checked to be of a usable kind) or one trained for the
model family on the recipe's corpus."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import Recipe
from pipelines.errors import LmforgeError, one_line


def load_or_build_tokenizer(recipe: Recipe, kinds: tuple[str, ...], match_family: bool = False):
    """recipe.tokenizer.name_or_path if given (checked to be of a kind the task can use, and with
    `match_family` of the kind model.family is built with: a byte-level BPE for RoBERTa, Unigram for
    ALBERT), else a tokenizer for the family trained on the recipe's corpus and saved in output_dir."""
    from tokenizer import FAMILY_SPECS, build_tokenizer, tokenizer_kind

    source = recipe.tokenizer.name_or_path or recipe.model.name_or_path
    if source:
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(source)
        except Exception as exc:
            raise LmforgeError(f"tokenizer.name_or_path: cannot load '{source}': "
                               f"{one_line(exc)}") from None
    else:
        from pipelines.data.sources import sample_texts

        out_dir = Path(recipe.training.output_dir) / "tokenizer"
        if (out_dir / "tokenizer.json").exists():  # resumed runs reuse the tokenizer they trained
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(out_dir)
        else:
            texts = sample_texts(recipe.data, int(recipe.tokenizer.train_sample_mb * 1e6), recipe.training.seed)
            tok = build_tokenizer(recipe.model.family, texts, recipe.tokenizer.vocab_size, out_dir,
                                  model_max_length=recipe.tokenizer.model_max_length)
    kind = tokenizer_kind(tok)
    if kind not in kinds:
        raise LmforgeError(f"tokenizer '{source}' is {kind}, but task '{recipe.task}' needs "
                           f"{' or '.join(kinds)}")
    spec = FAMILY_SPECS.get(recipe.model.family)  # families without a builder: any kind the task takes
    if match_family and spec is not None and kind != spec.kind:
        raise LmforgeError(f"tokenizer '{source}' is {kind}, but model.family '{recipe.model.family}' "
                           f"(recipe '{recipe.name}') is pretrained with a {spec.kind} tokenizer")
    return tok

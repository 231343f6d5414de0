"""Building a task's transformers model from a recipe: config from model.config (typos refused),
or a checkpoint; vocabulary and position-table checks."""

from __future__ import annotations

from pipelines.config import Recipe, check_model_config
from pipelines.errors import LmforgeError, one_line


def build_config(recipe: Recipe, tokenizer, **fixed):
    """The family's transformers Config from recipe.model.config (checked by check_model_config)."""
    from transformers import AutoConfig

    check_model_config(recipe)
    kwargs = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
              **special_token_ids(AutoConfig.for_model(recipe.model.family), tokenizer), **fixed, **recipe.model.config}
    return AutoConfig.for_model(recipe.model.family, **kwargs)


def special_token_ids(defaults, tokenizer) -> dict:
    """cls/sep/bos/eos ids from the tokenizer for the fields the family's Config sets by default
    (ModernBERT's defaults are its released vocabulary's 50281/50282: wrong for any other tokenizer);
    None for such a field the tokenizer has no token for whose default lies outside its vocabulary
    (ModernBERT's bos/eos with a WordPiece vocabulary: unused by an encoder, and transformers warns
    at every load that they are out of range)."""
    ids = {}
    for role in ("cls", "sep", "bos", "eos"):
        field, value = f"{role}_token_id", getattr(tokenizer, f"{role}_token_id", None)
        default = getattr(defaults, field, None)
        if default is not None and value is not None:
            ids[field] = value
        elif isinstance(default, int) and default >= len(tokenizer):
            ids[field] = None
    return ids


def init_model(auto_cls, recipe: Recipe, tokenizer, **fixed):
    """From recipe.model.name_or_path when set (continued pretraining), else fresh from the config."""
    if recipe.model.name_or_path:
        try:
            model = auto_cls.from_pretrained(recipe.model.name_or_path)
        except (OSError, ValueError) as exc:
            raise LmforgeError(f"model.name_or_path: cannot load '{recipe.model.name_or_path}' as "
                               f"{auto_cls.__name__}: {one_line(exc)}") from None
    else:
        model = auto_cls.from_config(build_config(recipe, tokenizer, **fixed))
    check_vocab(model, tokenizer, f"recipe '{recipe.name}'")
    check_positions(model, recipe)
    return model


def check_vocab(model, tokenizer, where: str):
    """The embedding table must cover every id the tokenizer can produce."""
    n_emb = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > n_emb:
        raise LmforgeError(f"{where}: tokenizer has {len(tokenizer)} tokens but the model's embedding "
                           f"table has {n_emb}: tokenizer and model do not match")


def position_offset(model) -> int:
    """Position ids a model uses up before the first token. RoBERTa-style embeddings (a padding_idx on
    the position table: RoBERTa, XLM-R, CamemBERT, ...) number positions from padding_idx + 1, so
    RoBERTa needs max_seq_length + 2 positions (514 for 512). Read off the model, not the family name."""
    table = getattr(getattr(model.base_model, "embeddings", None), "position_embeddings", None)
    pad = getattr(table, "padding_idx", None)
    return 0 if pad is None else pad + 1


def check_positions(model, recipe: Recipe):
    positions = getattr(model.config, "max_position_embeddings", None)
    need = recipe.data.max_seq_length + position_offset(model)
    if positions and need > positions:
        why = "" if need == recipe.data.max_seq_length else \
            f" ({type(model).__name__} numbers positions from padding_idx + 1 = {position_offset(model)})"
        raise LmforgeError(f"recipe '{recipe.name}': data.max_seq_length {recipe.data.max_seq_length} needs "
                           f"model.config.max_position_embeddings >= {need}{why}, got {positions}")

"""Helpers every task shares: the tokenizer for a recipe, tokenized documents, padding."""

from __future__ import annotations

from pathlib import Path

import torch

from pipelines.config import Recipe
from pipelines.errors import LmforgeError


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
                               f"{' '.join(str(exc).split())[:200]}") from None
    else:
        from pipelines.data import load_documents

        out_dir = Path(recipe.training.output_dir) / "tokenizer"
        if (out_dir / "tokenizer.json").exists():  # resumed runs reuse the tokenizer they trained
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(out_dir)
        else:
            docs = load_documents(recipe.data)
            texts = (s for d in docs for s in d)
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


def tokenize_documents(docs: list[list[str]], tokenizer, batch_size: int = 4096,
                       word_ids: bool = False) -> list[list[list]]:
    """Documents of sentences -> documents of token-id lists (no special tokens). One batched
    call into the Rust tokenizer per chunk: ~1-2 s for the default corpus.

    word_ids=True (word-level masking) makes every token a (token_id, word_id) pair instead. Word
    ids come from the fast tokenizer's pre-tokenizer (encoding.word_ids(): WordPiece, byte-level BPE
    and Unigram alike) and are numbered through the whole document (masking.concat_word_ids), so
    neighbouring words differ in any slice of it. Pair builders and truncation only slice and
    concatenate tokens, so the word ids travel with them; split_word_ids separates them again.
    """
    from tasks.masking import concat_word_ids

    flat = [s for d in docs for s in d]
    ids: list[list[int]] = []
    words: list[list] = []
    for i in range(0, len(flat), batch_size):
        # verbose=False: long sentences are fine here (they are cut later), no length warning
        enc = tokenizer(flat[i:i + batch_size], add_special_tokens=False, verbose=False)
        ids.extend(enc["input_ids"])
        if word_ids:
            words.extend(enc.word_ids(j) for j in range(len(enc["input_ids"])))
    out, k = [], 0
    for d in docs:
        keep = [j for j in range(k, k + len(d)) if ids[j]]
        k += len(d)
        if not keep:
            continue
        if not word_ids:
            out.append([ids[j] for j in keep])
            continue
        numbered, pos, sents = concat_word_ids([words[j] for j in keep]), 0, []
        for j in keep:
            sents.append(list(zip(ids[j], numbered[pos:pos + len(ids[j])])))
            pos += len(ids[j])
        out.append(sents)
    return out


def split_word_ids(tokens: list) -> tuple[list[int], list[int]]:
    """(token ids, word ids) of a list of (token_id, word_id) pairs."""
    return [t for t, _ in tokens], [w for _, w in tokens]


def pad_stack(rows: list[list[int]], pad_value: int, length: int | None = None) -> torch.Tensor:
    """Right-pad lists of ints into a LongTensor (to `length` or the longest row)."""
    width = length or max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad_value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.as_tensor(r[:width], dtype=torch.long)
    return out


def check_vocab(model, tokenizer, where: str):
    """The embedding table must cover every id the tokenizer can produce."""
    n_emb = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > n_emb:
        raise LmforgeError(f"{where}: tokenizer has {len(tokenizer)} tokens but the model's embedding "
                           f"table has {n_emb}: tokenizer and model do not match")


def token_ce_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy over positions whose label is not -100 (fp32 for stable sums)."""
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=-100, reduction="sum")


def build_config(recipe: Recipe, tokenizer, **fixed):
    """The family's transformers Config from recipe.model.config; unknown keys are user errors
    (transformers configs silently accept any kwarg, so a typo would otherwise be ignored)."""
    from transformers import AutoConfig

    family = recipe.model.family
    try:
        defaults = AutoConfig.for_model(family)
    except ValueError:
        raise LmforgeError(f"recipe '{recipe.name}', model.family: unknown family '{family}'") from None
    for key in recipe.model.config:
        if not hasattr(defaults, key):
            raise LmforgeError(f"recipe '{recipe.name}', model.config.{key}: not a field of "
                               f"{type(defaults).__name__}")
    kwargs = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id, **fixed, **recipe.model.config}
    return AutoConfig.for_model(family, **kwargs)


def init_model(auto_cls, recipe: Recipe, tokenizer, **fixed):
    """From recipe.model.name_or_path when set (continued pretraining), else fresh from the config."""
    if recipe.model.name_or_path:
        try:
            model = auto_cls.from_pretrained(recipe.model.name_or_path)
        except (OSError, ValueError) as exc:
            raise LmforgeError(f"model.name_or_path: cannot load '{recipe.model.name_or_path}' as "
                               f"{auto_cls.__name__}: {' '.join(str(exc).split())[:200]}") from None
    else:
        model = auto_cls.from_config(build_config(recipe, tokenizer, **fixed))
    check_vocab(model, tokenizer, f"recipe '{recipe.name}'")
    check_positions(model, recipe)
    return model


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


def special_mask(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """True at special-token and padding positions (never masked, never a loss target)."""
    ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=input_ids.dtype)
    return torch.isin(input_ids, ids)


def _locate(seq: list[int], part: list[int], start: int = 0) -> int:
    for i in range(start, len(seq) - len(part) + 1):
        if seq[i:i + len(part)] == part:
            return i
    raise ValueError("segment not found in the tokenizer's template output")


def special_template(tokenizer) -> dict:
    """The tokenizer's own post-processing template (prefix / middle / suffix special ids and
    their token types), read off by encoding two probe words once. transformers 5 removed
    build_inputs_with_special_tokens from fast tokenizers, and pairs built from token ids
    (NSP/SOP, packing) must use exactly the template the tokenizer applies at fine-tuning time."""
    cached = getattr(tokenizer, "_lmforge_template", None)
    if cached is not None:
        return cached
    a = tokenizer("hello", add_special_tokens=False)["input_ids"]
    b = tokenizer("world", add_special_tokens=False)["input_ids"]
    single = tokenizer("hello")["input_ids"]
    pair = tokenizer("hello", "world", return_token_type_ids=True)
    ids, types = pair["input_ids"], pair["token_type_ids"]
    i = _locate(single, a)
    j = _locate(ids, a)
    k = _locate(ids, b, j + len(a))
    t = {"single": (single[:i], single[i + len(a):]),
         "pair": (ids[:j], ids[j + len(a):k], ids[k + len(b):]),
         "types": (types[j], types[k])}
    tokenizer._lmforge_template = t
    return t


def with_special_tokens(tokenizer, a: list[int], b: list[int] | None = None) -> tuple[list[int], list[int]]:
    """(input_ids, token_type_ids) of ids a [and b] wrapped in the tokenizer's template, e.g.
    [CLS] A [SEP] B [SEP] with types 0..0 1..1 for BERT, <s> A </s></s> B </s> for RoBERTa."""
    t = special_template(tokenizer)
    if b is None:
        pre, post = t["single"]
        ids = pre + list(a) + post
        return ids, [0] * len(ids)
    pre, mid, post = t["pair"]
    ta, tb = t["types"]
    first = pre + list(a) + mid
    second = list(b) + post
    return first + second, [ta] * len(first) + [tb] * len(second)


def template_example(tokenizer, a: list, b: list | None = None) -> dict[str, list[int]]:
    """{"input_ids", "token_type_ids"} of segment a [and b] in the tokenizer's template. Segments of
    (token_id, word_id) pairs (tokenize_documents(word_ids=True)) also give "word_ids", -1 at the
    template's special tokens (masking.word_index ignores specials; -1 also ends a word)."""
    if not (a and isinstance(a[0], tuple)):
        ids, types = with_special_tokens(tokenizer, a, b)
        return {"input_ids": ids, "token_type_ids": types}
    a, wa = split_word_ids(a)
    b, wb = split_word_ids(b) if b is not None else (None, None)
    ids, types = with_special_tokens(tokenizer, a, b)
    t = special_template(tokenizer)
    if b is None:
        pre, post = t["single"]
        words = [-1] * len(pre) + wa + [-1] * len(post)
    else:
        pre, mid, post = t["pair"]
        words = [-1] * len(pre) + wa + [-1] * len(mid) + wb + [-1] * len(post)
    return {"input_ids": ids, "token_type_ids": types, "word_ids": words}

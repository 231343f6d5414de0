"""The tokenizer's own special-token template, for inputs built from token ids (pairs, packed
blocks): exactly what the same tokenizer produces at fine-tuning time."""

from __future__ import annotations

from tasks.shared.batching import split_word_ids


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

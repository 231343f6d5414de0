"""Tokenizing documents of sentences."""

from __future__ import annotations


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
    from tasks.shared.masking import concat_word_ids

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


def documents_for(recipe, tokenizer, word_ids: bool = False):
    """(train, eval) documents of token ids (or (id, word id) pairs): whole documents held out for evaluation."""
    from pipelines.data.sources import load_documents, split_documents

    docs = load_documents(recipe.data)
    train, held = split_documents(docs, recipe.data.validation_fraction, recipe.training.seed)
    return tuple(tokenize_documents(part, tokenizer, word_ids=word_ids) for part in (train, held))

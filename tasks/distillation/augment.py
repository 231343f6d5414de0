"""TinyBERT's data augmentation (Jiao et al. 2020, Alg. 1), for task-specific distillation: each training
example yields `copies` new ones in which every replaceable word is swapped, with probability p, for one
of its K nearest words; the teacher labels them (soft targets only), so the student sees the teacher's
function on many more inputs than the task has.

Neighbours: TinyBERT asks BERT's MLM for single-piece words and GloVe for the others. Neither is at hand
for every teacher (all-MiniLM-L6-v2 has no MLM head, and GloVe is a download), so a word's neighbours
here are the K word-start tokens closest (cosine) to it in the teacher's own input embedding table, for
words that are one token; longer words stay as they are. Recipe switch: objective.augment_copies.
"""

from __future__ import annotations

import numpy as np
import torch


def word_start_candidates(tokenizer) -> tuple[np.ndarray, list[str]]:
    """Token ids (and their text) that are whole alphabetic words: WordPiece tokens without the ## prefix,
    byte-level BPE tokens that decode to a space + letters, Unigram tokens with the word-start mark."""
    ids, words = [], []
    specials = set(tokenizer.all_special_ids)
    for token, i in tokenizer.get_vocab().items():
        if i in specials or token.startswith("##"):
            continue
        text = tokenizer.convert_tokens_to_string([token])
        word = text.strip()
        if word.isalpha() and len(word) > 1 and (text == word or text.startswith(" ")):
            ids.append(i)
            words.append(word)
    return np.asarray(ids), words


def neighbours(tokenizer, embeddings: torch.Tensor, words: set[str], k: int) -> dict[str, list[str]]:
    """word -> its k nearest candidate words (cosine in the embedding table), for the single-token words."""
    cand_ids, cand_words = word_start_candidates(tokenizer)
    table = torch.nn.functional.normalize(embeddings.float()[torch.as_tensor(cand_ids)], dim=-1)
    single = {}
    for w in words:
        ids = tokenizer(w, add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and w.isalpha():
            single[w] = ids[0]
    out: dict[str, list[str]] = {}
    names = list(single)
    for start in range(0, len(names), 1024):
        chunk = names[start:start + 1024]
        query = torch.nn.functional.normalize(embeddings.float()[torch.as_tensor([single[w] for w in chunk])], dim=-1)
        top = (query @ table.T).topk(k + 1, dim=-1).indices  # + 1: the word itself is its own nearest
        for w, row in zip(chunk, top.tolist()):
            out[w] = [cand_words[j] for j in row if cand_words[j].lower() != w.lower()][:k]
    return out


def augment_texts(texts: list[str], near: dict[str, list[str]], copies: int, p: float,
                  rng: np.random.Generator) -> list[list[str]]:
    """`copies` variants of each text: each word with neighbours replaced with probability p."""
    out = []
    for text in texts:
        words = text.split()
        variants = []
        for _ in range(copies):
            new = [near[w][rng.integers(len(near[w]))] if w in near and near[w] and rng.random() < p else w
                   for w in words]
            variants.append(" ".join(new))
        out.append(variants)
    return out

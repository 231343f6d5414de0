"""Documents of sentences -> token ids with sentence and word boundaries.

Each document is tokenized as its RUNNING TEXT (sentences joined by one space), and the tokens
are then assigned to sentences by their character offsets. Tokenizing sentence by sentence would
drop the space before every sentence but the first for byte-level BPE (GPT-2, RoBERTa, BART:
"...Black Sea .It is..."): the pretraining stream must be exactly what the same tokenizer produces
on the text. Word starts come from the pre-tokenizer's word ids (WordPiece, byte-level BPE and
Unigram alike), for whole-word / n-gram / span masking.

The Rust tokenizer encodes a batch on all cores (tokenizers' own thread pool); the Python side
is a few numpy calls per document.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager

import numpy as np

from pipelines.data.shards import EncodedDocuments


@contextmanager
def tokenizer_threads():
    """tokenizers' thread pool on for the duration (the Makefile and tests turn it off so forked
    DataLoader workers do not warn); restored afterwards."""
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        os.environ["TOKENIZERS_PARALLELISM"] = old if old is not None else "false"


def encode_documents(tokenizer, documents: list[list[str]]) -> EncodedDocuments:
    """Tokenize documents (lists of sentences) as running text; empty sentences and documents are
    dropped. No special tokens: objectives add them from the tokenizer's template."""
    texts, char_starts = [], []
    for doc in documents:
        starts = np.cumsum([0] + [len(s) + 1 for s in doc[:-1]])
        texts.append(" ".join(doc))
        char_starts.append(starts)
    encodings = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
    tokens, words, sentence_lengths, document_sizes = [], [], [], []
    for enc, starts in zip(encodings, char_starts):
        ids = np.asarray(enc.ids, dtype=np.int64)
        if not len(ids):
            continue
        token_starts = np.fromiter((o[0] for o in enc.offsets), dtype=np.int64, count=len(ids))
        # a token belongs to the sentence whose start (or the space before it) it is at or after
        bounds = np.searchsorted(token_starts, np.maximum(starts[1:] - 1, 0), side="left")
        lengths = np.diff(np.concatenate([[0], bounds, [len(ids)]]))
        lengths = lengths[lengths > 0]
        word_ids = np.fromiter((-1 if w is None else w for w in enc.word_ids), dtype=np.int64, count=len(ids))
        starts_word = np.ones(len(ids), np.uint8)
        starts_word[1:] = (word_ids[1:] != word_ids[:-1]) | (word_ids[1:] < 0)
        tokens.append(ids)
        words.append(starts_word)
        sentence_lengths.append(lengths)
        document_sizes.append(len(lengths))
    if not tokens:
        return EncodedDocuments(np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.int64),
                                np.zeros(0, np.int64))
    return EncodedDocuments(np.concatenate(tokens), np.concatenate(words), np.concatenate(sentence_lengths),
                            np.asarray(document_sizes, np.int64))


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of everything that decides the ids: the serialized tokenizer pipeline and vocabulary."""
    state = tokenizer.backend_tokenizer.to_str()
    specials = json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str)
    return hashlib.sha256((state + specials).encode()).hexdigest()[:16]


def tokenize_documents(docs: list[list[str]], tokenizer, word_ids: bool = False) -> list[list[list]]:
    """In-memory form for small inputs and tests: documents of sentences of token ids, or of
    (token id, word id) pairs with word ids numbered through the document."""
    enc = encode_documents(tokenizer, docs)
    out, t, s = [], 0, 0
    for size in enc.document_sizes:
        lengths = enc.sentence_lengths[s:s + size]
        n = int(lengths.sum())
        ids = enc.tokens[t:t + n].tolist()
        words = (np.cumsum(enc.word_starts[t:t + n]) - 1).tolist()
        doc, k = [], 0
        for length in lengths.tolist():
            doc.append(list(zip(ids[k:k + length], words[k:k + length])) if word_ids else ids[k:k + length])
            k += length
        out.append(doc)
        t, s = t + n, s + size
    return out

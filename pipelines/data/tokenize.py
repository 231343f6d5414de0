"""Documents of sentences -> token ids with sentence and word boundaries.

Each document is tokenized as its RUNNING TEXT (sentences joined by one space), and the tokens
are then assigned to sentences by their character offsets. Tokenizing sentence by sentence would
drop the space before every sentence but the first for byte-level BPE (GPT-2, RoBERTa, BART:
"...Black Sea .It is..."): the pretraining stream must be exactly what the same tokenizer produces
on the text. Word starts come from the pre-tokenizer's word ids (WordPiece, byte-level BPE and
Unigram alike), for whole-word / n-gram / span masking.

The Rust tokenizer encodes a batch on all cores (tokenizers' own thread pool), or single-threaded in
each of prepare's worker processes (data.num_proc: start_worker, encode_in_worker); the Python side
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


def encode_texts(tokenizer, documents: list[list[str]]):
    """(Rust encodings of the documents' running texts, each document's sentence start characters).
    Releases the GIL: prepare overlaps it with the numpy work of the previous batch."""
    texts = [" ".join(doc) for doc in documents]
    starts = [np.cumsum([0] + [len(s) + 1 for s in doc[:-1]]).tolist() for doc in documents]
    return tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False), starts


def _sentence_bounds(enc, char_starts: list[int], n_tokens: int) -> list[int]:
    """Token index where each sentence after the first starts: the first token that starts at or
    after the space before the sentence (byte-level BPE's "ĠIt", or a lone space token)."""
    bounds, last = [], 0
    for c in char_starts[1:]:
        t, k = None, c
        while t is None and k <= char_starts[-1]:  # a character the normalizer dropped: look further
            t = enc.char_to_token(k)
            k += 1
        t = n_tokens if t is None else t
        while t > last and (span := enc.token_to_chars(t - 1)) is not None and span[0] >= c - 1:
            t -= 1
        bounds.append(t)
        last = t
    return bounds


def encode_documents(tokenizer, documents: list[list[str]], encoded=None) -> EncodedDocuments:
    """Tokenize documents (lists of sentences) as running text; empty sentences and documents are
    dropped. No special tokens: objectives add them from the tokenizer's template. `encoded` is
    encode_texts' result when the caller ran it already."""
    encodings, char_starts = encoded or encode_texts(tokenizer, documents)
    tokens, words, sentence_lengths, document_sizes = [], [], [], []
    for enc, starts in zip(encodings, char_starts):
        ids = np.asarray(enc.ids, dtype=np.int64)
        if not len(ids):
            continue
        bounds = np.maximum.accumulate(np.asarray(_sentence_bounds(enc, starts, len(ids)), np.int64)) \
            if len(starts) > 1 else np.zeros(0, np.int64)
        lengths = np.diff(np.concatenate([[0], bounds, [len(ids)]]))
        lengths = lengths[lengths > 0]
        word_ids = np.array(enc.word_ids, dtype=float)  # None -> nan: never equal, so a word start
        starts_word = np.ones(len(ids), np.uint8)
        starts_word[1:] = word_ids[1:] != word_ids[:-1]
        tokens.append(ids)
        words.append(starts_word)
        sentence_lengths.append(lengths)
        document_sizes.append(len(lengths))
    if not tokens:
        return EncodedDocuments(np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.int64),
                                np.zeros(0, np.int64))
    return EncodedDocuments(np.concatenate(tokens), np.concatenate(words), np.concatenate(sentence_lengths),
                            np.asarray(document_sizes, np.int64))


# --- worker processes (prepare's data.num_proc) -----------------------------------------------------
_WORKER_TOKENIZER = None


def start_worker(tokenizer_json: str):
    """Initializer of an encoding process: the tokenizer rebuilt from its serialized pipeline (the
    same string the cache key hashes, so the same ids), single-threaded: the processes are the
    parallelism, and a Rust thread pool in each would only oversubscribe the cores."""
    global _WORKER_TOKENIZER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from types import SimpleNamespace

    from tokenizers import Tokenizer

    _WORKER_TOKENIZER = SimpleNamespace(backend_tokenizer=Tokenizer.from_str(tokenizer_json))


def encode_in_worker(documents: list[list[str]]) -> EncodedDocuments:
    """encode_documents in an encoding process (start_worker ran there)."""
    return encode_documents(_WORKER_TOKENIZER, documents)


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

"""Token shards: a tokenized corpus written once and memory-mapped by every run, rank and resume.

A shard set is a folder:

    meta.json                  written LAST: a folder with meta.json is complete
    shard-00000.tokens.bin     token ids, raw uint16 (vocabulary <= 65,536) or uint32
    shard-00000.words.bin      uint8 per token: 1 where a word starts (word-level masking)
    shard-00000.sentences.npy  int64 [n_sentences + 1]: token offset of each sentence start
    shard-00000.documents.npy  int64 [n_documents + 1]: sentence index of each document start
    shard-00000.doc_tokens.npy int64 [n_documents + 1]: token offset of each document start

Offsets are local to their shard; a document never crosses shards. Readers address tokens,
sentences and documents by GLOBAL index (shard bases are a few ints), so an example index stores
token offsets and nothing else. Nothing but those small bases is held in memory: token arrays
are np.memmap, offset arrays np.load(mmap_mode="r").

The layout is nanoGPT's raw token file plus Megatron's document index, in numpy; hand-written
because none of the libraries writes sentence boundaries (NSP/SOP/ELECTRA/BART need them).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.errors import LmforgeError

META = "meta.json"
FORMAT_VERSION = 2


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


@dataclass
class EncodedDocuments:
    """A batch of tokenized documents, flat: what the tokenizing step hands to a writer."""

    tokens: np.ndarray  # [n_tokens] int
    word_starts: np.ndarray  # [n_tokens] uint8
    sentence_lengths: np.ndarray  # [n_sentences] int64, every one > 0
    document_sizes: np.ndarray  # [n_documents] int64: sentences per document, every one > 0


def _starts(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def _split(batch: EncodedDocuments, n_docs: int) -> tuple[EncodedDocuments, EncodedDocuments]:
    """The first n_docs documents of a batch, and the rest."""
    n_sent = int(batch.document_sizes[:n_docs].sum())
    n_tok = int(batch.sentence_lengths[:n_sent].sum())
    return (EncodedDocuments(batch.tokens[:n_tok], batch.word_starts[:n_tok], batch.sentence_lengths[:n_sent],
                             batch.document_sizes[:n_docs]),
            EncodedDocuments(batch.tokens[n_tok:], batch.word_starts[n_tok:], batch.sentence_lengths[n_sent:],
                             batch.document_sizes[n_docs:]))


class ShardWriter:
    """Appends encoded documents to shard files, starting a new shard past `shard_tokens` tokens.
    `prefix` names the shards (datatrove tasks each write their own prefix into one folder)."""

    def __init__(self, folder: Path, dtype: np.dtype, shard_tokens: int = 2**28, prefix: str = "shard"):
        self.folder, self.dtype, self.shard_tokens, self.prefix = Path(folder), np.dtype(dtype), shard_tokens, prefix
        self.folder.mkdir(parents=True, exist_ok=True)
        self.written: list[dict] = []
        self._open = None

    def _start(self):
        name = f"{self.prefix}-{len(self.written):05d}"
        self._open = {"name": name, "tokens": open(self.folder / f"{name}.tokens.bin", "wb"),
                      "words": open(self.folder / f"{name}.words.bin", "wb"),
                      "sentences": [np.zeros(1, np.int64)], "documents": [np.zeros(1, np.int64)],
                      "n_tokens": 0, "n_sentences": 0}

    def add(self, batch: EncodedDocuments):
        """Append documents; a shard closes at the first document boundary past shard_tokens."""
        while len(batch.document_sizes):
            if self._open is None:
                self._start()
            room = self.shard_tokens - self._open["n_tokens"]
            doc_tokens = np.cumsum(np.add.reduceat(batch.sentence_lengths, _starts(batch.document_sizes)))
            take = min(int(np.searchsorted(doc_tokens, room, side="left")) + 1, len(doc_tokens))
            head, batch = _split(batch, take)
            self._append(head)
            if self._open["n_tokens"] >= self.shard_tokens:
                self._finish_shard()

    def _append(self, batch: EncodedDocuments):
        s = self._open
        if batch.tokens.max(initial=0) > np.iinfo(self.dtype).max:
            raise LmforgeError(f"token id {int(batch.tokens.max())} does not fit the shard dtype {self.dtype}")
        s["tokens"].write(batch.tokens.astype(self.dtype, copy=False).tobytes())
        s["words"].write(batch.word_starts.astype(np.uint8, copy=False).tobytes())
        s["sentences"].append(s["n_tokens"] + np.cumsum(batch.sentence_lengths))
        s["documents"].append(s["n_sentences"] + np.cumsum(batch.document_sizes))
        s["n_tokens"] += int(batch.sentence_lengths.sum())
        s["n_sentences"] += len(batch.sentence_lengths)

    def _finish_shard(self):
        s, self._open = self._open, None
        s["tokens"].close()
        s["words"].close()
        sentences, documents = np.concatenate(s["sentences"]), np.concatenate(s["documents"])
        np.save(self.folder / f"{s['name']}.sentences.npy", sentences)
        np.save(self.folder / f"{s['name']}.documents.npy", documents)
        # per-document token offsets on their own: document lengths without touching every page of
        # the (much larger) sentence array
        np.save(self.folder / f"{s['name']}.doc_tokens.npy", sentences[documents])
        self.written.append({"name": s["name"], "tokens": int(sentences[-1]), "sentences": len(sentences) - 1,
                             "documents": len(documents) - 1})

    def close(self) -> list[dict]:
        """Finish the open shard; returns the shards written (name and counts) for meta.json."""
        if self._open is not None:
            self._finish_shard()
        return self.written


def write_meta(folder: Path, shards: list[dict], dtype: np.dtype, info: dict):
    """The completeness marker, written last (atomically)."""
    meta = {"format": FORMAT_VERSION, "dtype": np.dtype(dtype).name, "shards": shards,
            "tokens": sum(s["tokens"] for s in shards), "documents": sum(s["documents"] for s in shards),
            "sentences": sum(s["sentences"] for s in shards), **info}
    tmp = Path(folder) / f".{META}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, Path(folder) / META)


def publish(tmp: Path, final: Path):
    """Rename a finished temp folder to its final name; a concurrent identical preparation that got
    there first wins (its content is the same: same fingerprint)."""
    try:
        os.replace(tmp, final)
    except OSError:
        if not (final / META).exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


class ShardSet:
    """Read side: global documents, sentences and tokens over memory-mapped shards."""

    def __init__(self, shards: list[dict], folder: Path | None = None):
        """shards: dicts with arrays 'tokens', 'words', 'sentences', 'documents' (see open / in_memory)."""
        self.folder = folder
        self._tokens = [s["tokens"] for s in shards]
        self._words = [s["words"] for s in shards]
        self._sentences = [s["sentences"] for s in shards]
        self._documents = [s["documents"] for s in shards]
        self._doc_tokens = [s["doc_tokens"] for s in shards]
        self.doc_base = np.concatenate([[0], np.cumsum([len(d) - 1 for d in self._documents])]).astype(np.int64)
        self.sent_base = np.concatenate([[0], np.cumsum([len(s) - 1 for s in self._sentences])]).astype(np.int64)
        self.token_base = np.concatenate([[0], np.cumsum([int(s[-1]) for s in self._sentences])]).astype(np.int64)
        self.n_documents = int(self.doc_base[-1])
        self.n_tokens = int(self.token_base[-1])

    @classmethod
    def open(cls, folder: Path) -> ShardSet:
        folder = Path(folder)
        try:
            meta = json.loads((folder / META).read_text())
        except (OSError, ValueError):
            raise LmforgeError(f"prepared data {folder}: no readable {META} (incomplete preparation?)") from None
        if meta.get("format") != FORMAT_VERSION:
            raise LmforgeError(f"prepared data {folder}: format {meta.get('format')}, this lmforge reads "
                               f"{FORMAT_VERSION}; prepare it again")
        dtype = np.dtype(meta["dtype"])
        shards = []
        for s in meta["shards"]:
            base = folder / s["name"]
            n = s["tokens"]

            def mapped(suffix, kind, n=n, base=base):  # np.memmap refuses empty files
                return np.memmap(f"{base}.{suffix}", dtype=kind, mode="r", shape=(n,)) if n else np.zeros(0, kind)

            shards.append({
                "tokens": mapped("tokens.bin", dtype), "words": mapped("words.bin", np.uint8),
                "sentences": np.load(f"{base}.sentences.npy", mmap_mode="r"),
                "documents": np.load(f"{base}.documents.npy", mmap_mode="r"),
                "doc_tokens": np.load(f"{base}.doc_tokens.npy", mmap_mode="r")})
        out = cls(shards, folder)
        out.meta = meta
        return out

    @classmethod
    def in_memory(cls, documents: list[list[list[int]]], word_starts: list[list[list[int]]] | None = None) -> ShardSet:
        """One in-RAM shard from documents of sentences of token ids (tests, small adapters).
        Empty sentences and documents are dropped, as the tokenizing step does."""
        docs = [[list(s) for s in d if len(s)] for d in documents]
        docs = [d for d in docs if d]
        flat = [t for d in docs for s in d for t in s]
        lengths = np.array([len(s) for d in docs for s in d], np.int64)
        words = np.ones(len(flat), np.uint8) if word_starts is None else \
            np.array([w for d in word_starts for s in d if len(s) for w in s], np.uint8)
        sentences = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        documents = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
        shard = {"tokens": np.array(flat, np.int64), "words": words, "sentences": sentences,
                 "documents": documents, "doc_tokens": sentences[documents]}
        out = cls([shard])
        out.meta = {}
        return out

    # --- lookups ------------------------------------------------------------------------
    def _shard_of_doc(self, doc: int) -> int:
        return int(np.searchsorted(self.doc_base, doc, side="right")) - 1

    def _shard_of_token(self, pos: int) -> int:
        return int(np.searchsorted(self.token_base, pos, side="right")) - 1

    def sentence_bounds(self, doc: int) -> np.ndarray:
        """Global token offsets of the document's sentence starts plus its end: [n_sentences + 1]."""
        k = self._shard_of_doc(doc)
        local = doc - self.doc_base[k]
        s0, s1 = self._documents[k][local], self._documents[k][local + 1]
        return np.asarray(self._sentences[k][s0:s1 + 1], dtype=np.int64) + self.token_base[k]

    def document_lengths(self) -> np.ndarray:
        """Tokens per document, [n_documents] int64 (vectorised over the offset arrays)."""
        return np.concatenate([np.diff(np.asarray(d)) for d in self._doc_tokens]) if self._doc_tokens \
            else np.zeros(0, np.int64)

    def bounds_of(self, doc_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bounds, first): sentence_bounds of every document in `doc_ids`, end to end, in one
        vectorised read: document i's are bounds[first[i]:first[i + 1]]. int64; the example-index
        builders walk these instead of asking for one document at a time."""
        doc_ids = np.asarray(doc_ids, np.int64)
        starts = [np.asarray(s[:-1]) + b for s, b in zip(self._sentences, self.token_base)]
        offsets = np.concatenate([*starts, [self.n_tokens]]).astype(np.int64)  # global sentence starts + end
        docs = [np.asarray(d[:-1]) + b for d, b in zip(self._documents, self.sent_base)]
        doc_sentence = np.concatenate([*docs, [self.sent_base[-1]]]).astype(np.int64)
        lo, hi = doc_sentence[doc_ids], doc_sentence[doc_ids + 1]
        first = np.concatenate([[0], np.cumsum(hi - lo + 1)]).astype(np.int64)
        take = np.arange(first[-1], dtype=np.int64) + np.repeat(lo - first[:-1], hi - lo + 1)
        return offsets[take], first

    def sentences_per_document(self) -> np.ndarray:
        return np.concatenate([np.diff(np.asarray(d)) for d in self._documents]) if self._documents \
            else np.zeros(0, np.int64)

    def document_starts(self) -> np.ndarray:
        """Global token offset of every document's first token, [n_documents] int64."""
        return np.concatenate([np.asarray(d[:-1]) + b for d, b in zip(self._doc_tokens, self.token_base)]) \
            if self._doc_tokens else np.zeros(0, np.int64)

    def tokens(self, start: int, end: int) -> np.ndarray:
        """Token ids [start, end) in global coordinates, as int64 (the range may span shards)."""
        return self._read(self._tokens, start, end, np.int64)

    def word_starts(self, start: int, end: int) -> np.ndarray:
        return self._read(self._words, start, end, np.uint8)

    def _read(self, arrays, start: int, end: int, dtype) -> np.ndarray:
        if start >= end:
            return np.zeros(0, dtype)
        k = self._shard_of_token(start)
        base = int(self.token_base[k])
        if end <= self.token_base[k + 1]:
            return np.asarray(arrays[k][start - base:end - base], dtype=dtype)
        parts = []
        while start < end:
            k = self._shard_of_token(start)
            stop = min(end, int(self.token_base[k + 1]))
            parts.append(np.asarray(arrays[k][start - int(self.token_base[k]):stop - int(self.token_base[k])]))
            start = stop
        return np.concatenate(parts).astype(dtype)


def split_documents(n_documents: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, eval) document indices, both sorted: whole documents held out for evaluation, a seeded
    random `fraction` of them (at least one when fraction > 0 and there are two or more)."""
    n_eval = max(1, round(n_documents * fraction)) if fraction > 0 and n_documents > 1 else 0
    held = np.zeros(n_documents, bool)
    if n_eval:
        held[np.random.default_rng(seed).choice(n_documents, n_eval, replace=False)] = True
    return np.flatnonzero(~held).astype(np.int64), np.flatnonzero(held).astype(np.int64)

"""Training examples as offsets into the shards: nothing is copied until an example is read.

- PackedBlocks: one stream of the split's documents, a separator between documents, cut into
  blocks of exactly block_size that cross document boundaries (RoBERTa's FULL-SENTENCES, GPT-2's
  <|endoftext|>, T5's concatenated C4 stream). Pure offset arithmetic over three int64 arrays of
  one entry per document; block i is positions [i * block_size, (i + 1) * block_size).
- SentenceRuns: whole sentences of ONE document grouped into examples of at most max_tokens
  (fairseq's `complete_doc`, used by BART so sentence permutation has sentences to permute); a
  sentence longer than max_tokens is cut into max_tokens pieces. Index: (document, start, end).
- pack_contiguous / pack_sentences: the same on in-memory lists (tests, small inputs).

Hand-written: transformers' run_mlm/run_clm `group_texts` materialises every block and has no
separator; Megatron's index builder is C++ inside Megatron.
"""

from __future__ import annotations

import numpy as np

from pipelines.data.examples import RowBuffer
from pipelines.data.shards import ShardSet
from pipelines.errors import LmforgeError


def words_from_starts(word_starts: np.ndarray, specials: np.ndarray | None = None) -> np.ndarray:
    """Word ids (0, 1, ...) from word-start flags; -1 where `specials` is True. Ids only have to
    differ between neighbouring words (tasks/shared/masking.word_index)."""
    ids = np.cumsum(word_starts.astype(np.int64)) - 1
    ids = np.maximum(ids, 0)  # a range that starts mid-word: that piece is word 0
    if specials is not None:
        ids[specials] = -1
    return ids


class PackedBlocks:
    """Blocks of block_size ids from the documents `doc_ids` of `store`, joined by `separator`
    (None: nothing between documents). drop_last drops the final short block."""

    def __init__(self, store: ShardSet, doc_ids: np.ndarray, block_size: int, separator: int | None,
                 drop_last: bool = True):
        if block_size < 1:
            raise LmforgeError(f"packing: block_size must be >= 1, got {block_size}")
        self.store, self.block_size, self.separator = store, block_size, separator
        lengths = store.document_lengths()[doc_ids]
        keep = lengths > 0
        self.lengths = lengths[keep]
        self.starts = store.document_starts()[doc_ids][keep]
        gap = 0 if separator is None else 1
        # position of each document in the virtual stream (documents + separators between them)
        self.virtual = np.concatenate([[0], np.cumsum(self.lengths + gap)[:-1]]).astype(np.int64)
        self.total = int(self.lengths.sum()) + gap * max(len(self.lengths) - 1, 0)
        self.n = self.total // block_size
        if not drop_last and self.total > self.n * block_size:
            self.n += 1

    def __len__(self) -> int:
        return self.n

    def read(self, i: int, words: bool = False):
        """Block i: ids (int64), and with words=True also word ids (-1 at separators)."""
        if not 0 <= i < self.n:
            raise IndexError(i)
        a = i * self.block_size
        b = min(a + self.block_size, self.total)
        ids, starts, seps = [], [], []
        j = int(np.searchsorted(self.virtual, a, side="right")) - 1
        while j < len(self.lengths) and self.virtual[j] < b:
            v, n = int(self.virtual[j]), int(self.lengths[j])
            lo, hi = max(a, v), min(b, v + n)
            if lo < hi:
                src = int(self.starts[j]) + lo - v
                ids.append(self.store.tokens(src, src + hi - lo))
                if words:
                    starts.append(self.store.word_starts(src, src + hi - lo))
                    seps.append(np.zeros(hi - lo, bool))
            if self.separator is not None and j < len(self.lengths) - 1 and a <= v + n < b:
                ids.append(np.array([self.separator], np.int64))
                if words:
                    starts.append(np.ones(1, np.uint8))
                    seps.append(np.ones(1, bool))
            j += 1
        block = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        if not words:
            return block
        return block, words_from_starts(np.concatenate(starts), np.concatenate(seps))


class SentenceRuns:
    """Examples of consecutive whole sentences (or max_tokens pieces of a long one) of one document,
    at most max_tokens ids each; read(i) gives the list of sentence arrays."""

    def __init__(self, store: ShardSet, doc_ids: np.ndarray, max_tokens: int, index: np.ndarray | None = None):
        if max_tokens < 1:
            raise LmforgeError(f"packing: max_tokens must be >= 1, got {max_tokens}")
        self.store, self.max_tokens = store, max_tokens
        self.index = build_sentence_runs(store, doc_ids, max_tokens) if index is None else index

    def __len__(self) -> int:
        return len(self.index)

    def read(self, i: int) -> list[np.ndarray]:
        doc, start, end = (int(x) for x in self.index[i])
        bounds = self.store.sentence_bounds(doc)
        cuts = [p for s, e in zip(bounds[:-1], bounds[1:]) for p in range(int(s), int(e), self.max_tokens)
                if start <= p < end]
        tokens = self.store.tokens(start, end)
        return [tokens[c - start:d - start] for c, d in zip(cuts, cuts[1:] + [end])]


def build_sentence_runs(store: ShardSet, doc_ids: np.ndarray, max_tokens: int) -> np.ndarray:
    """int64 [n, 3] (document, start token, end token): pieces are whole sentences, or max_tokens
    cuts of a longer one; consecutive pieces are grouped while they fit in max_tokens."""
    rows = RowBuffer(3)
    for doc in doc_ids:
        bounds = store.sentence_bounds(int(doc))
        run_start, size = int(bounds[0]), 0
        for s, e in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            for p in range(s, e, max_tokens):
                piece = min(e, p + max_tokens) - p
                if size + piece > max_tokens and size:
                    rows.append((doc, run_start, p))
                    run_start, size = p, 0
                size += piece
        if size:
            rows.append((doc, run_start, int(bounds[-1])))
    return rows.array()


def pack_contiguous(documents: list[list[int]], block_size: int, separator_id: int | None,
                    drop_last: bool = True) -> list[list[int]]:
    """PackedBlocks over in-memory documents of ids (each document one sentence)."""
    store = ShardSet.in_memory([[d] for d in documents])
    blocks = PackedBlocks(store, np.arange(store.n_documents), block_size, separator_id, drop_last)
    return [blocks.read(i).tolist() for i in range(len(blocks))]


def pack_sentences(documents: list[list[list[int]]], max_tokens: int) -> list[list[list[int]]]:
    """SentenceRuns over in-memory documents of sentences of ids."""
    store = ShardSet.in_memory(documents)
    runs = SentenceRuns(store, np.arange(store.n_documents), max_tokens)
    return [[s.tolist() for s in runs.read(i)] for i in range(len(runs))]

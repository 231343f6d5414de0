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


def build_sentence_runs(store: ShardSet, doc_ids: np.ndarray, max_tokens: int,
                        group_sentences: int = 1 << 20) -> np.ndarray:
    """int64 [n, 3] (document, start token, end token): pieces are whole sentences, or max_tokens
    cuts of a longer one; consecutive pieces of a document are grouped while they fit in max_tokens.

    Vectorised (issue #22), no step per sentence: documents are taken in groups of about
    `group_sentences` sentences (memory stays a few arrays of that size) and each group's runs come
    from _runs. tests/data/test_sentence_runs_index.py pins the array to the per-sentence loop this
    replaced."""
    doc_ids = np.asarray(doc_ids, np.int64)
    bounds, first = store.bounds_of(doc_ids)
    cuts = np.searchsorted(first, np.arange(0, first[-1], group_sentences), side="right") - 1
    cuts = np.unique(np.concatenate([cuts, [len(doc_ids)]]))
    parts = [np.zeros((0, 3), np.int64)]
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        rows = _runs(bounds[first[lo]:first[hi]], first[lo:hi + 1] - first[lo], max_tokens)
        rows[:, 0] = doc_ids[lo:hi][rows[:, 0]]
        parts.append(rows)
    return np.concatenate(parts)


def _runs(bounds: np.ndarray, first: np.ndarray, max_tokens: int) -> np.ndarray:
    """(position in the group, start, end) of the sentence runs of documents laid end to end
    (document i's sentence bounds are bounds[first[i]:first[i + 1]])."""
    start, end, doc = _pieces(bounds, first, max_tokens)
    jump = _jumps(bounds, first, start, end, doc, max_tokens)
    sink = len(start)
    heads = np.searchsorted(doc, np.arange(len(first) - 1))
    x = _reached(jump, heads[heads < sink])
    doc_end = bounds[first[1:] - 1]
    stop = np.where(jump[x] == sink, doc_end[doc[x]], start[np.minimum(jump[x], sink - 1)])
    return np.stack([doc[x], start[x], stop], axis=1).astype(np.int64)


def _pieces(bounds: np.ndarray, first: np.ndarray, max_tokens: int):
    """(start, end, document) of every piece: each sentence cut into max_tokens pieces."""
    is_end = np.zeros(len(bounds), bool)
    is_end[first[1:] - 1] = True  # each document's last bound is its end, not a sentence start
    s_start, s_end = bounds[~is_end], bounds[np.flatnonzero(~is_end) + 1]
    per_sentence = -(-(s_end - s_start) // max_tokens)
    k = np.arange(per_sentence.sum()) - np.repeat(np.cumsum(per_sentence) - per_sentence, per_sentence)
    start = np.repeat(s_start, per_sentence) + k * max_tokens
    end = np.minimum(start + max_tokens, np.repeat(s_end, per_sentence))
    doc = np.repeat(np.repeat(np.arange(len(first) - 1), np.diff(first) - 1), per_sentence)
    return start, end, doc


def _jumps(bounds, first, start, end, doc, max_tokens: int) -> np.ndarray:
    """Greedy grouping as a jump: the run that starts at piece x ends before the first piece q whose
    end is more than max_tokens past x's start; len(start) (the sink) when that is past x's document."""
    # each document on its own stretch of one increasing axis, so a search never runs into the next one
    span = bounds[first[1:] - 1] - bounds[first[:-1]]
    shift = (np.concatenate([[0], np.cumsum(span + max_tokens + 1)[:-1]]) - bounds[first[:-1]])[doc]
    jump = np.searchsorted(end + shift, start + shift + max_tokens, side="right")
    past_document = np.searchsorted(doc, np.arange(len(first) - 1), side="right")[doc]
    jump[jump >= past_document] = len(start)
    return jump


def _reached(jump: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """The pieces reached from `heads` by jumps (sorted), by pointer doubling: after round r every
    piece up to 2**r jumps from a head is marked, so O(pieces x log(runs per document)) in all."""
    sink = len(jump)
    reached = np.zeros(sink + 1, bool)
    reached[heads] = True
    hop = np.append(jump, sink)  # jump applied 2**r times; the sink jumps to itself
    while True:
        landed = hop[np.flatnonzero(reached[:sink])]
        landed = landed[landed != sink]
        if not len(landed):  # every marked piece's next 2**r jumps leave its document: all found
            return np.flatnonzero(reached[:sink])
        reached[landed] = True
        hop = hop[hop]


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

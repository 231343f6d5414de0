"""The vectorised NSP / SOP / ELECTRA index builders give the SAME arrays as the loops they replaced.

The reference functions below are the builders as they were before issue #22 (numpy draw per
random number, a Python step per sentence), copied unchanged; the new ones (tasks/shared/
sentence_pairs.py nsp_ranges / sop_ranges, tasks/objectives/electra_rtd.py electra_ranges) must
return identical int64 arrays for the same corpus, seed and settings, and leave the Generator in
the same state. Only sentence lengths and document boundaries matter to the builders, so the
corpus is the default corpus's text with every word one token, laid out over several shards.
"""

import numpy as np
import pytest

from pipelines.data.default_corpus import default_corpus_path
from pipelines.data.examples import RowBuffer
from pipelines.data.shards import ShardSet, split_documents
from pipelines.data.sources import read_sentence_file
from pipelines.errors import LmforgeError
from tasks.objectives.albert_sop import sop_ranges
from tasks.objectives.bert_mlm_nsp import nsp_ranges
from tasks.objectives.electra_rtd import electra_ranges
from tasks.shared.sentence_pairs import DocumentBounds, pair_index

# --- the builders before issue #22, verbatim ------------------------------------------------------


def ref_truncate_range_pair(a, b, max_tokens, rng):
    (a_lo, a_hi), (b_lo, b_hi) = a, b
    excess = (a_hi - a_lo) + (b_hi - b_lo) - max_tokens
    for front in (rng.random(excess) < 0.5 if excess > 0 else ()):
        if a_hi - a_lo > b_hi - b_lo:
            a_lo, a_hi = (a_lo + 1, a_hi) if front else (a_lo, a_hi - 1)
        else:
            b_lo, b_hi = (b_lo + 1, b_hi) if front else (b_lo, b_hi - 1)
    return (a_lo, a_hi), (b_lo, b_hi)


def ref_target_length(max_tokens, short_seq_prob, rng):
    if rng.random() < short_seq_prob:
        return int(rng.integers(2, max_tokens + 1))
    return max_tokens


def ref_chunks(bounds, target, emit):
    sizes = np.diff(bounds).tolist()
    last = len(sizes) - 1
    start, length, i = 0, 0, 0
    while i <= last:
        length += sizes[i]
        if i == last or (length >= target and start < i < last - 1):
            start = emit(start, i + 1)
            i, length = start, 0
        else:
            i += 1


def ref_random_segment(docs, avoid, target, rng):
    other = int(rng.integers(len(docs) - 1))
    other += other >= avoid
    bounds = docs[other]
    start = int(rng.integers(len(bounds) - 1))
    end = start + 1
    while end < len(bounds) - 1 and bounds[end] - bounds[start] < target:
        end += 1
    return int(bounds[start]), int(bounds[end])


def ref_nsp_ranges(docs, max_tokens, rng, short_seq_prob=0.1):
    if len(docs) < 2:
        raise LmforgeError("NSP needs at least 2 documents (random-next segments come from another document)")
    pairs = RowBuffer(5)
    for d in range(len(docs)):
        bounds = docs[d]
        if len(bounds) < 3:
            continue
        target = ref_target_length(max_tokens, short_seq_prob, rng)

        def emit(start, end, bounds=bounds, d=d, target=target):
            n = end - start
            a_end = int(rng.integers(1, n)) if n >= 2 else 1
            a = (int(bounds[start]), int(bounds[start + a_end]))
            is_random = n == 1 or rng.random() < 0.5
            if is_random:
                b = ref_random_segment(docs, d, target - (a[1] - a[0]), rng)
                end = start + a_end
                if end == len(bounds) - 2:
                    end = len(bounds) - 1
            else:
                b = (a[1], int(bounds[end]))
            a, b = ref_truncate_range_pair(a, b, max_tokens, rng)
            pairs.append((*a, *b, is_random))
            return end

        ref_chunks(bounds, target, emit)
    return pairs.array()


def ref_sop_ranges(docs, max_tokens, rng, short_seq_prob=0.1):
    pairs = RowBuffer(5)
    for d in range(len(docs)):
        bounds = docs[d]
        target = ref_target_length(max_tokens, short_seq_prob, rng)

        def emit(start, end, bounds=bounds):
            if end - start >= 2:
                a_end = start + int(rng.integers(1, end - start))
                a, b = ref_truncate_range_pair((int(bounds[start]), int(bounds[a_end])),
                                               (int(bounds[a_end]), int(bounds[end])), max_tokens, rng)
                swapped = bool(rng.random() < 0.5)
                pairs.append((*b, *a, True) if swapped else (*a, *b, False))
            return end

        ref_chunks(bounds, target, emit)
    return pairs.array()


def ref_electra_ranges(docs, max_length, rng, single_segment_prob=0.1, short_seq_prob=0.05):
    out = RowBuffer(4)
    target = max_length
    for d in range(len(docs)):
        bounds = docs[d].tolist()
        c0 = 0
        for i in range(len(bounds) - 1):
            if bounds[i + 1] - bounds[c0] >= target or i == len(bounds) - 2:
                first_target = 100_000 if rng.random() < single_segment_prob else (target - 3) // 2
                k = c0
                for j in range(c0, i + 1):
                    first, size = bounds[k] - bounds[c0], bounds[j + 1] - bounds[j]
                    if k == j and (k == c0 or first + size < first_target
                                   or (first < first_target and rng.random() < 0.5)):
                        k = j + 1
                a0, a1 = bounds[c0], min(bounds[k], bounds[c0] + max_length - 2)
                b0 = bounds[k]
                b1 = min(bounds[i + 1], b0 + max(0, max_length - (a1 - a0) - 3))
                out.append((a0, a1, b0, b1))
                c0 = i + 1
                target = int(rng.integers(5, max_length + 1)) if rng.random() < short_seq_prob else max_length
    return out.array()


def ref_pair_index(builder, store, doc_ids, max_tokens, passes, seed, **kw):
    rng = np.random.default_rng(seed)
    docs = DocumentBounds(store, doc_ids)
    return np.concatenate([builder(docs, max_tokens, rng, **kw) for _ in range(passes)]).reshape(-1, 5)


# --- corpora ---------------------------------------------------------------------------------------


def store_of(documents: list[list[int]], n_shards: int = 3) -> ShardSet:
    """Documents given as sentence lengths -> a ShardSet of `n_shards` in-memory shards (documents
    never cross shards, as prepare writes them)."""
    parts = np.array_split(np.arange(len(documents)), n_shards)
    shards, base = [], 0
    for part in parts:
        lengths = np.array([n for d in part for n in documents[d]], np.int64)
        sentences = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        documents_ = np.concatenate([[0], np.cumsum([len(documents[d]) for d in part])]).astype(np.int64)
        n = int(sentences[-1])
        shards.append({"tokens": np.arange(base, base + n, dtype=np.int64), "words": np.ones(n, np.uint8),
                       "sentences": sentences,
                       "documents": documents_, "doc_tokens": sentences[documents_]})
        base += n
    return ShardSet(shards)


@pytest.fixture(scope="module")
def corpus():
    """The default corpus (a few hundred documents), one token per word."""
    docs = [[len(s.split()) for s in doc if s.split()] for doc in read_sentence_file(default_corpus_path())]
    docs = [d for d in docs if d]
    assert len(docs) > 300
    return docs


@pytest.fixture(scope="module")
def edgy(corpus):
    """Few documents with every edge: one-sentence documents, a sentence far longer than any target,
    a document longer than max_tokens made of one sentence, two-sentence documents."""
    rng = np.random.default_rng(5)
    docs = [d[:int(rng.integers(1, 6))] for d in corpus[:60]]
    docs += [[3], [400], [200, 1], [1, 1], [1, 300, 2], [2] * 50, [130, 130, 130], [1]]
    order = rng.permutation(len(docs))
    return [docs[i] for i in order]


def same(new, ref):
    assert new.dtype == ref.dtype == np.int64 and new.shape == ref.shape
    assert np.array_equal(new, ref)


# --- NSP / SOP --------------------------------------------------------------------------------------


@pytest.mark.parametrize("builder, ref", [(nsp_ranges, ref_nsp_ranges), (sop_ranges, ref_sop_ranges)])
@pytest.mark.parametrize("max_tokens, short_seq_prob", [(125, 0.1), (61, 0.5), (2, 0.1), (509, 0.0)])
def test_pairs_equal_the_loop_on_the_default_corpus(corpus, builder, ref, max_tokens, short_seq_prob):
    store = store_of(corpus)
    ids = np.arange(store.n_documents)
    rng_new, rng_ref = np.random.default_rng(7), np.random.default_rng(7)
    new = builder(DocumentBounds(store, ids), max_tokens, rng_new, short_seq_prob=short_seq_prob)
    old = ref(DocumentBounds(store, ids), max_tokens, rng_ref, short_seq_prob=short_seq_prob)
    assert len(old) > 500
    same(new, old)
    assert rng_new.bit_generator.state == rng_ref.bit_generator.state  # the caller's rng goes on alike


@pytest.mark.parametrize("builder, ref", [(nsp_ranges, ref_nsp_ranges), (sop_ranges, ref_sop_ranges)])
def test_pair_index_equals_the_loop_over_passes_and_a_split(corpus, builder, ref):
    store = store_of(corpus)
    train, held = split_documents(store.n_documents, 0.1, 3)
    for ids, passes in ((train, 3), (held, 1), (train[::-7], 2)):  # dupe_factor 3, held-out docs, any order
        same(pair_index(builder, store, ids, 125, passes, 11, short_seq_prob=0.1),
             ref_pair_index(ref, store, ids, 125, passes, 11, short_seq_prob=0.1))


@pytest.mark.parametrize("builder, ref", [(nsp_ranges, ref_nsp_ranges), (sop_ranges, ref_sop_ranges)])
@pytest.mark.parametrize("max_tokens", [2, 3, 8, 125])
def test_pairs_equal_the_loop_on_edge_documents(edgy, builder, ref, max_tokens):
    store = store_of(edgy, n_shards=2)
    for seed in range(3):
        same(pair_index(builder, store, np.arange(store.n_documents), max_tokens, 2, seed, short_seq_prob=0.3),
             ref_pair_index(ref, store, np.arange(store.n_documents), max_tokens, 2, seed, short_seq_prob=0.3))


def test_nsp_with_two_documents_and_empty_splits(edgy):
    store = store_of([[4, 5, 6], [7]], n_shards=1)  # one other document: no draw picks it
    same(pair_index(nsp_ranges, store, np.arange(2), 8, 3, 0), ref_pair_index(ref_nsp_ranges, store, np.arange(2),
                                                                              8, 3, 0))
    empty = np.zeros(0, np.int64)
    store = store_of(edgy)
    same(pair_index(sop_ranges, store, empty, 125, 1, 0), ref_pair_index(ref_sop_ranges, store, empty, 125, 1, 0))
    for ids in (empty, np.arange(1)):
        with pytest.raises(LmforgeError, match="2 documents"):
            pair_index(nsp_ranges, store, ids, 125, 1, 0)


# --- ELECTRA ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_length, single, short", [(128, 0.1, 0.05), (32, 0.5, 0.5), (8, 1.0, 0.0),
                                                        (512, 0.0, 1.0)])
def test_electra_ranges_equal_the_loop(corpus, edgy, max_length, single, short):
    for docs in (corpus, edgy):
        store = store_of(docs)
        for ids in (np.arange(store.n_documents), split_documents(store.n_documents, 0.2, 1)[1]):
            rng_new, rng_ref = np.random.default_rng(3), np.random.default_rng(3)
            same(electra_ranges(DocumentBounds(store, ids), max_length, rng_new, single, short),
                 ref_electra_ranges(DocumentBounds(store, ids), max_length, rng_ref, single, short))
            assert rng_new.bit_generator.state == rng_ref.bit_generator.state


def test_electra_ranges_of_no_documents():
    store = store_of([[3, 4]], n_shards=1)
    empty = DocumentBounds(store, np.zeros(0, np.int64))
    same(electra_ranges(empty, 128, np.random.default_rng(0)), ref_electra_ranges(empty, 128, np.random.default_rng(0)))


def test_truncation_counts_equal_the_token_loop():
    """_truncated (which segment loses each token follows from the lengths; only the front draws are
    counted) against truncate_range_pair's step per token, on random pairs, over one stream."""
    from pipelines.data.draws import replay
    from tasks.shared.sentence_pairs import truncate_range_pair
    from tasks.shared.sentence_pairs import truncated as _truncated

    shapes = np.random.default_rng(0).integers(0, 300, size=(3000, 3))
    ref, new = np.random.default_rng(1), np.random.default_rng(1)
    with replay(new) as draws:
        for la, lb, max_tokens in shapes.tolist():
            a, b = truncate_range_pair((10, 10 + la), (500, 500 + lb), max_tokens + 2, ref)
            assert _truncated(10, 10 + la, 500, 500 + lb, max_tokens + 2, draws) == (*a, *b)
    assert new.bit_generator.state == ref.bit_generator.state

"""The vectorised BART sentence-run index (pipelines/data/packing.py build_sentence_runs) gives the
SAME array as the per-sentence loop it replaced (ref_build_sentence_runs: that loop, unchanged),
on the default corpus's text (one token per word) over several shards, and on edge documents."""

import numpy as np
import pytest

from pipelines.data.default_corpus import default_corpus_path
from pipelines.data.examples import RowBuffer
from pipelines.data.packing import SentenceRuns, build_sentence_runs
from pipelines.data.shards import ShardSet, split_documents
from pipelines.data.sources import read_sentence_file


def ref_build_sentence_runs(store, doc_ids, max_tokens):
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


def store_of(documents: list[list[int]], n_shards: int = 3) -> ShardSet:
    """Documents as sentence lengths -> `n_shards` in-memory shards."""
    shards, base = [], 0
    for part in np.array_split(np.arange(len(documents)), n_shards):
        lengths = np.array([n for d in part for n in documents[d]], np.int64)
        sentences = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        docs = np.concatenate([[0], np.cumsum([len(documents[d]) for d in part])]).astype(np.int64)
        n = int(sentences[-1])
        shards.append({"tokens": np.arange(base, base + n, dtype=np.int64), "words": np.ones(n, np.uint8),
                       "sentences": sentences, "documents": docs, "doc_tokens": sentences[docs]})
        base += n
    return ShardSet(shards)


@pytest.fixture(scope="module")
def corpus():
    docs = [[len(s.split()) for s in doc if s.split()] for doc in read_sentence_file(default_corpus_path())]
    return [d for d in docs if d]


@pytest.mark.parametrize("max_tokens", [1, 5, 62, 126, 510, 100_000])
def test_runs_equal_the_loop_on_the_default_corpus(corpus, max_tokens):
    store = store_of(corpus)
    train, held = split_documents(store.n_documents, 0.1, 0)
    for ids in (np.arange(store.n_documents), train, held, train[::-5]):
        new, old = build_sentence_runs(store, ids, max_tokens), ref_build_sentence_runs(store, ids, max_tokens)
        assert new.dtype == old.dtype == np.int64 and new.shape == old.shape
        assert np.array_equal(new, old)
        assert np.array_equal(build_sentence_runs(store, ids, max_tokens, group_sentences=300), old)  # in groups


@pytest.mark.parametrize("max_tokens", [1, 2, 3, 64, 128])
def test_runs_equal_the_loop_on_edge_documents(max_tokens):
    docs = [[3], [400], [200, 1], [1, 1], [1, 300, 2], [2] * 50, [128, 128, 128], [1], [64, 64], [63, 1, 64]]
    store = store_of(docs, n_shards=2)
    for ids in (np.arange(len(docs)), np.zeros(0, np.int64), np.array([6, 1, 1, 0])):
        new, old = build_sentence_runs(store, ids, max_tokens), ref_build_sentence_runs(store, ids, max_tokens)
        assert new.shape == old.shape == (len(old), 3) and np.array_equal(new, old)


def test_runs_read_whole_sentences_in_order(corpus):
    store = store_of(corpus[:50])
    runs = SentenceRuns(store, np.arange(store.n_documents), 62)
    text = np.concatenate([np.concatenate(runs.read(i)) for i in range(len(runs))])
    assert np.array_equal(text, np.arange(store.n_tokens))  # every token once, in order

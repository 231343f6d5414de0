"""Packing: contiguous blocks across documents (round trip, separators, no waste) and
sentence blocks within documents."""

import numpy as np
import pytest

from pipelines.data.packing import pack_contiguous, pack_sentences
from pipelines.errors import LmforgeError

SEP = 2


def _documents(seed=0, count=400):
    rng = np.random.default_rng(seed)
    # ids >= 10 never equal SEP; some empty and some longer-than-a-block documents
    return [rng.integers(10, 30_000, size=int(n)).tolist() for n in rng.integers(0, 700, size=count)]


def _joined(docs, sep):
    out = []
    for d in (d for d in docs if d):
        if out and sep is not None:
            out.append(sep)
        out.extend(d)
    return out


@pytest.mark.parametrize("block_size", [1, 7, 128, 512])
def test_round_trip_keep_last(block_size):
    docs = _documents()
    blocks = pack_contiguous(docs, block_size, SEP, drop_last=False)
    stream = _joined(docs, SEP)
    assert len(stream) > 100_000
    assert [t for b in blocks for t in b] == stream
    assert all(len(b) == block_size for b in blocks[:-1]) and 0 < len(blocks[-1]) <= block_size


def test_drop_last_wastes_only_the_tail():
    docs = _documents(1)
    stream = _joined(docs, SEP)
    blocks = pack_contiguous(docs, 512, SEP)
    assert all(len(b) == 512 for b in blocks)
    assert len(blocks) == len(stream) // 512
    assert [t for b in blocks for t in b] == stream[: len(blocks) * 512]


def test_separators_sit_exactly_between_documents():
    docs = _documents(2)
    flat = [t for b in pack_contiguous(docs, 100, SEP, drop_last=False) for t in b]
    nonempty = [d for d in docs if d]
    sep_at = [i for i, t in enumerate(flat) if t == SEP]
    assert len(sep_at) == len(nonempty) - 1
    bounds = np.cumsum([len(d) + 1 for d in nonempty])[:-1] - 1  # position after each document
    assert sep_at == bounds.tolist()
    pieces = np.split(np.asarray(flat), sep_at)
    assert [p[p != SEP].tolist() if i else p.tolist() for i, p in enumerate(pieces)] == nonempty


def test_no_separator_and_edge_cases():
    docs = [[10, 11], [], [12], [13, 14, 15]]
    assert pack_contiguous(docs, 3, None, drop_last=False) == [[10, 11, 12], [13, 14, 15]]
    assert pack_contiguous(docs, 4, SEP) == [[10, 11, SEP, 12], [SEP, 13, 14, 15]]
    assert pack_contiguous(docs, 5, SEP) == [[10, 11, SEP, 12, SEP]]  # short tail dropped
    assert pack_contiguous([[], []], 4, SEP) == []
    with pytest.raises(LmforgeError, match="block_size"):
        pack_contiguous(docs, 0, SEP)


def test_pack_sentences_keeps_whole_sentences_in_one_document():
    rng = np.random.default_rng(3)
    docs = [[rng.integers(10, 1000, size=int(n)).tolist() for n in rng.integers(1, 80, size=int(k))]
            for k in rng.integers(1, 40, size=200)]
    docs[0].append(list(range(10, 10 + 300)))  # longer than a block: cut into pieces
    examples = pack_sentences(docs, 128)
    assert all(sum(map(len, ex)) <= 128 for ex in examples)
    # concatenating the examples in order gives back the documents' sentences (the long one in pieces)
    flat_sents = [s for ex in examples for s in ex]
    expected = [s[k:k + 128] for d in docs for s in d for k in range(0, len(s), 128)]
    assert flat_sents == expected
    # no example spans two documents, and within a document packing is greedy: the next
    # example's first sentence would not have fitted in the previous one
    doc_of = []
    for j, d in enumerate(docs):
        pieces = sum((len(s) + 127) // 128 for s in d)
        while pieces > 0:
            pieces -= len(examples[len(doc_of)])
            doc_of.append(j)
        assert pieces == 0
    assert len(doc_of) == len(examples)
    for j in range(len(examples) - 1):
        if doc_of[j] == doc_of[j + 1]:
            assert sum(map(len, examples[j])) + len(examples[j + 1][0]) > 128

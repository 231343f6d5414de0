"""Statistical tests of the NSP and SOP pair builders (tasks/objectives/bert_mlm_nsp.py, albert_sop.py).

Pairs depend only on sentence lengths and document boundaries, not on token identity, so the
corpus is pre-tokenized into words (tokenizers' BertPreTokenizer) and each word gets a unique,
increasing id: every token in a pair then says which document and position it came from.
"""

import bisect

import numpy as np
import pytest
import torch
from tokenizers import pre_tokenizers

from pipelines.data.default_corpus import default_corpus_path
from pipelines.data.sources import read_sentence_file
from pipelines.errors import LmforgeError
from tasks.objectives.albert_sop import sop_ranges
from tasks.objectives.bert_mlm_nsp import nsp_ranges
from tasks.shared.sentence_pairs import pairs_from_lists, truncate_seq_pair

MAX_TOKENS = 125  # max_seq_length 128 - [CLS] - 2 x [SEP]


def nsp_pairs(documents, max_tokens, generator, **kw):
    """The NSP builder on in-memory token lists: (tokens_a, tokens_b, is_random_next)."""
    return pairs_from_lists(nsp_ranges, documents, max_tokens, generator, "NSP", **kw)


def sop_pairs(documents, max_tokens, generator, **kw):
    return pairs_from_lists(sop_ranges, documents, max_tokens, generator, "SOP", **kw)


@pytest.fixture(scope="module")
def corpus():
    """(documents of unique-id sentences, first id of each document, set of sentence-start ids)."""
    pre = pre_tokenizers.BertPreTokenizer()
    docs, doc_starts, sent_starts, next_id = [], [], set(), 0
    for doc in read_sentence_file(default_corpus_path()):
        doc_starts.append(next_id)
        sentences = []
        for s in doc:
            n = len(pre.pre_tokenize_str(s))
            sent_starts.add(next_id)
            sentences.append(list(range(next_id, next_id + n)))
            next_id += n
        docs.append(sentences)
    assert next_id >= 100_000
    return docs, doc_starts, sent_starts


def doc_of(token, doc_starts):
    return bisect.bisect_right(doc_starts, token) - 1


def is_contiguous(tokens):
    return tokens == list(range(tokens[0], tokens[0] + len(tokens)))


def in_order(first, second, doc_starts, sent_starts, max_tokens):
    """`first` then `second` are consecutive text of one document: each contiguous, second after
    first, and any gap between them or cut sentence start only where truncation removed tokens."""
    docs = {doc_of(first[0], doc_starts), doc_of(second[-1], doc_starts)}
    truncated = len(first) + len(second) == max_tokens
    exact = second[0] == first[-1] + 1 and first[0] in sent_starts and second[0] in sent_starts
    return (len(docs) == 1 and is_contiguous(first) and is_contiguous(second) and second[0] > first[-1]
            and (truncated or exact))


def many(builder, docs, seeds=range(4), **kw):
    return [p for s in seeds for p in builder(docs, MAX_TOKENS, torch.Generator().manual_seed(s), **kw)]


def test_nsp_balance_provenance_and_length(corpus):
    docs, doc_starts, sent_starts = corpus
    pairs = many(nsp_pairs, docs)
    assert len(pairs) > 10_000
    assert np.mean([r for _, _, r in pairs]) == pytest.approx(0.5, abs=0.03)
    for a, b, is_random in pairs:
        assert 1 <= len(a) and 1 <= len(b) and len(a) + len(b) <= MAX_TOKENS
        if is_random:  # B: contiguous text of ANOTHER document
            assert doc_of(b[0], doc_starts) != doc_of(a[0], doc_starts)
            assert is_contiguous(a) and is_contiguous(b)
            assert doc_of(b[0], doc_starts) == doc_of(b[-1], doc_starts)
        else:
            assert in_order(a, b, doc_starts, sent_starts, MAX_TOKENS)
    # short_seq_prob = 0.1: some pairs are much shorter than the target (BERT's short inputs)
    short = np.mean([len(a) + len(b) < MAX_TOKENS // 2 for a, b, _ in pairs])
    long_only = many(nsp_pairs, docs, seeds=[0], short_seq_prob=0.0)
    assert short > 1.5 * np.mean([len(a) + len(b) < MAX_TOKENS // 2 for a, b, _ in long_only])


def test_nsp_is_reproducible(corpus):
    docs = corpus[0][:50]
    def build(seed):
        return nsp_pairs(docs, 60, torch.Generator().manual_seed(seed))

    assert build(1) == build(1) and build(1) != build(2)


def test_nsp_single_sentence_documents_only_give_random_segments(corpus):
    docs, doc_starts, _ = corpus
    singles = [[s] for d in docs[:200] for s in d[:1]]  # 200 one-sentence documents
    mixed = docs[200:] + singles
    pairs = many(nsp_pairs, mixed)
    single_docs = {doc_of(d[0][0], doc_starts) for d in docs[:200]}
    assert not any(doc_of(a[0], doc_starts) in single_docs for a, _, _ in pairs)
    assert any(doc_of(b[0], doc_starts) in single_docs for _, b, _ in pairs)
    assert np.mean([r for _, _, r in pairs]) == pytest.approx(0.5, abs=0.03)


def test_sop_balance_and_swapped_segments(corpus):
    docs, doc_starts, sent_starts = corpus
    pairs = many(sop_pairs, docs)
    assert len(pairs) > 10_000
    assert np.mean([s for _, _, s in pairs]) == pytest.approx(0.5, abs=0.03)
    for a, b, swapped in pairs:
        assert 1 <= len(a) and 1 <= len(b) and len(a) + len(b) <= MAX_TOKENS
        first, second = (b, a) if swapped else (a, b)  # a negative is an in-order pair reversed
        assert in_order(first, second, doc_starts, sent_starts, MAX_TOKENS)
    # only the order differs: segment lengths have the same distribution in both classes
    len_first_pos = np.mean([len(a) for a, _, s in pairs if not s])
    len_first_neg = np.mean([len(b) for _, b, s in pairs if s])
    assert len_first_pos == pytest.approx(len_first_neg, rel=0.05)


def test_truncate_seq_pair_trims_the_longer_from_both_ends():
    rng = np.random.default_rng(0)
    fronts = 0
    for _ in range(2000):
        a, b = truncate_seq_pair(list(range(100)), list(range(100, 160)), 50, rng)
        assert len(a) + len(b) == 50 and abs(len(a) - len(b)) <= 1
        assert is_contiguous(a) and is_contiguous(b)
        fronts += a[0]
    assert fronts / 2000 == pytest.approx(37.5, rel=0.05)  # a loses 75 of its 100 tokens, half from the front
    assert truncate_seq_pair([1, 2], [3], 5, rng) == ([1, 2], [3])


@pytest.mark.parametrize("builder", [nsp_pairs, sop_pairs])
def test_corpus_without_multi_sentence_documents_is_a_user_error(builder):
    g = torch.Generator().manual_seed(0)
    with pytest.raises(LmforgeError, match="at least 2 sentences"):
        builder([[[1, 2, 3]], [[4, 5]], [[], [6]]], 32, g)
    with pytest.raises(LmforgeError, match="max_tokens"):
        builder([[[1, 2], [3]]], 1, g)


def test_nsp_needs_two_documents():
    with pytest.raises(LmforgeError, match="2 documents"):
        nsp_pairs([[[1, 2], [3, 4]]], 32, torch.Generator().manual_seed(0))

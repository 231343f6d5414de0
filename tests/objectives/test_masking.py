"""Statistical tests of tasks/masking.py on ~150k real tokens: the default corpus, tokenized by a
WordPiece tokenizer trained here (tokenizers library), packed into [CLS] A [SEP] B [SEP] [PAD]... rows."""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from pipelines.data.default_corpus import default_corpus_path
from pipelines.data.sources import read_sentence_file
from pipelines.errors import LmforgeError
from tasks.shared.masking import (
    IGNORE_INDEX,
    albert_ngram_probs,
    concat_word_ids,
    mask_tokens,
    select_ngrams,
    select_spans,
    select_tokens,
    select_whole_words,
    selection_budget,
    spanbert_length_probs,
    special_positions,
    word_index,
    word_span_ids,
)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)
T = 128


@pytest.fixture(scope="module")
def batch():
    """(input_ids, word_ids, special_mask, vocab_size) of >= 100k non-special tokens."""
    sentences = [s for d in read_sentence_file(default_corpus_path()) for s in d]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(sentences, trainers.WordPieceTrainer(vocab_size=4000, special_tokens=SPECIALS))
    rows, words, cur = [], [], []
    for enc in tok.encode_batch(sentences[:9000], add_special_tokens=False):
        if cur and sum(len(e.ids) for e in cur) + len(enc.ids) > T - 3:
            rows.append([CLS, *cur[0].ids, SEP, *(t for e in cur[1:] for t in e.ids), SEP])
            words.append([-1, *concat_word_ids([cur[0].word_ids]), -1,
                          *concat_word_ids([e.word_ids for e in cur[1:]]), -1])
            cur = []
        if len(enc.ids) <= T - 3:
            cur.append(enc)
    ids = torch.full((len(rows), T), PAD)
    wids = torch.full((len(rows), T), -1)
    for i, (r, w) in enumerate(zip(rows, words)):
        ids[i, :len(r)], wids[i, :len(w)] = torch.tensor(r), torch.tensor(w)
    special = special_positions(ids, range(len(SPECIALS)))
    assert (~special).sum() >= 100_000 and (ids == PAD).any()
    return ids, wids, special, tok.get_vocab_size()


def gen(seed):
    return torch.Generator().manual_seed(seed)


def unit_stats(span_ids, special, wids):
    """Per selected unit: (number of words, number of tokens, contiguous?)."""
    widx = word_index(special, wids)
    starts = torch.ones_like(widx, dtype=torch.bool)
    starts[:, 1:] = widx[:, 1:] != widx[:, :-1]
    key = (torch.arange(span_ids.shape[0])[:, None] * (T + 1) + span_ids)[span_ids > 0]
    _, inv = key.unique(return_inverse=True)
    pos = torch.arange(T).expand_as(span_ids)[span_ids > 0]
    n_tok = torch.bincount(inv)
    n_words = torch.bincount(inv, weights=starts[span_ids > 0].double()).long()
    lo = torch.full_like(n_tok, T).scatter_reduce(0, inv, pos, "amin")
    hi = torch.zeros_like(n_tok).scatter_reduce(0, inv, pos, "amax")
    return n_words, n_tok, hi - lo + 1 == n_tok


def assert_whole_words(selected, special, wids):
    widx = word_index(special, wids)
    key = (torch.arange(selected.shape[0])[:, None] * T + widx)[widx >= 0]
    _, inv = key.unique(return_inverse=True)
    hit = torch.bincount(inv, weights=selected[widx >= 0].double())
    size = torch.bincount(inv).double()
    assert ((hit == 0) | (hit == size)).all(), "a word was split"


def test_select_tokens_exact_budget_never_special(batch):
    ids, _, special, _ = batch
    sel = select_tokens(ids, special, gen(0))
    assert not (sel & special).any()
    assert torch.equal(sel.sum(1), selection_budget(special, 0.15))
    assert sel.sum() / (~special).sum() == pytest.approx(0.15, abs=0.005)
    assert torch.equal(sel, select_tokens(ids, special, gen(0)))
    assert not torch.equal(sel, select_tokens(ids, special, gen(1)))


def test_budget_edge_rows():
    special = torch.tensor([[True, True, True], [True, False, True], [False] * 3])
    assert selection_budget(special, 0.15).tolist() == [0, 1, 1]  # BERT's max(1, round(.)) if any candidate
    ids, wids = torch.full((3, 3), 7), torch.tensor([[-1, -1, -1], [-1, 0, -1], [0, 1, 1]])
    assert not word_span_ids(ids[:1], special[:1], gen(0), word_ids=wids[:1], length_probs=[1.0]).any()
    # word-level budgets hold in expectation: a 1-token budget over words of 1 and 2 tokens
    rows = 20_000
    spans = word_span_ids(ids[2:].expand(rows, 3), special[2:].expand(rows, 3), gen(0),
                          word_ids=wids[2:].expand(rows, 3), length_probs=spanbert_length_probs())
    assert (spans > 0).sum(1).double().mean().item() == pytest.approx(1.0, abs=0.03)
    assert (spans[:, 1] == spans[:, 2]).all()  # the 2-token word is never split
    with pytest.raises(LmforgeError, match="rate"):
        selection_budget(special, 0.0)


def test_mask_tokens_80_10_10(batch):
    ids, _, special, vocab = batch
    sel = select_tokens(ids, special, gen(2))
    out, labels = mask_tokens(ids, sel, MASK, vocab, gen(3), special_ids=range(5))
    assert torch.equal(labels[sel], ids[sel]) and (labels[~sel] == IGNORE_INDEX).all()
    assert torch.equal(out[~sel], ids[~sel])
    n = sel.sum().item()
    masked = (out[sel] == MASK).sum().item() / n
    changed = ((out[sel] != MASK) & (out[sel] != ids[sel])).sum().item() / n
    assert (masked, changed, 1 - masked - changed) == pytest.approx((0.8, 0.1, 0.1), abs=0.02)
    # the only special tokens in the output are the template's and the [MASK]s
    assert torch.equal(special_positions(out, [PAD, UNK, CLS, SEP]), special)


def test_random_replacement_uniform_over_non_special():
    ids = torch.randint(5, 20, (4000, 50), generator=gen(4))
    out, _ = mask_tokens(ids, torch.ones_like(ids, dtype=torch.bool), MASK, 20, gen(5), range(5),
                         mask_prob=0.0, random_prob=1.0)
    counts = torch.bincount(out.flatten(), minlength=20)
    assert counts[:5].sum() == 0
    assert chisquare(counts[5:].numpy()).pvalue > 1e-3


def test_mask_tokens_rejects_bad_probabilities(batch):
    ids, _, special, vocab = batch
    with pytest.raises(LmforgeError, match="mask_prob"):
        mask_tokens(ids[:2], special[:2], MASK, vocab, gen(0), range(5), mask_prob=0.9, random_prob=0.2)


def test_whole_word_masking_never_splits_a_word(batch):
    ids, wids, special, _ = batch
    sel = select_whole_words(ids, special, gen(6), word_ids=wids)
    assert not (sel & special).any()
    assert_whole_words(sel, special, wids)
    assert sel.sum() / (~special).sum() == pytest.approx(0.15, abs=0.005)
    # multi-piece words are selected as often as their share of words (no bias to short words)
    widx = word_index(special, wids)
    edge = torch.ones(len(ids), 1, dtype=torch.bool)
    first = (widx >= 0) & torch.cat([edge, widx[:, 1:] != widx[:, :-1]], 1)
    long_word = first & torch.cat([widx[:, 1:] == widx[:, :-1], ~edge], 1)
    rate_long = (sel & long_word).sum() / long_word.sum()
    rate_all = (sel & first).sum() / first.sum()
    assert rate_long == pytest.approx(rate_all.item(), rel=0.1)


def test_ngram_lengths_follow_one_over_n(batch):
    ids, wids, special, _ = batch
    spans = word_span_ids(ids, special, gen(7), word_ids=wids, length_probs=albert_ngram_probs(3))
    n_words, _, contiguous = unit_stats(spans, special, wids)
    assert contiguous.all()
    assert_whole_words(spans > 0, special, wids)
    freq = torch.bincount(n_words, minlength=4)[1:].double()
    assert len(n_words) > 10_000
    assert (freq / freq.sum()).tolist() == pytest.approx([6 / 11, 3 / 11, 2 / 11], abs=0.02)
    assert chisquare(freq.numpy(), freq.sum().item() * albert_ngram_probs(3)).pvalue > 1e-3
    assert (spans > 0).sum() / (~special).sum() == pytest.approx(0.15, abs=0.005)
    assert torch.equal(spans > 0, select_ngrams(ids, special, gen(7), word_ids=wids))


def test_span_lengths_truncated_geometric(batch):
    ids, wids, special, _ = batch
    spans = [word_span_ids(ids, special, g, word_ids=wids, length_probs=spanbert_length_probs())
             for g in (gen(8), gen(9))]
    lengths = torch.cat([unit_stats(s, special, wids)[0] for s in spans]).double()
    probs = spanbert_length_probs(0.2, 10)
    expected_mean = float((np.arange(1, 11) * probs).sum())
    assert expected_mean == pytest.approx(3.80, abs=0.01)  # SpanBERT paper: mean span 3.8 words
    assert lengths.max() <= 10 and len(lengths) > 8_000
    assert lengths.mean().item() == pytest.approx(expected_mean, abs=0.08)
    assert (lengths == 1).double().mean().item() == pytest.approx(probs[0], abs=0.02)
    for s in spans:
        assert_whole_words(s > 0, special, wids)
        assert (s > 0).sum() / (~special).sum() == pytest.approx(0.15, abs=0.005)
    assert torch.equal(spans[0] > 0, select_spans(ids, special, gen(8), word_ids=wids))


def test_span_level_replacement(batch):
    ids, wids, special, vocab = batch
    spans = word_span_ids(ids, special, gen(10), word_ids=wids, length_probs=spanbert_length_probs())
    out, labels = mask_tokens(ids, spans > 0, MASK, vocab, gen(11), range(5), span_ids=spans)
    assert torch.equal(labels != IGNORE_INDEX, spans > 0)
    key = (torch.arange(len(ids))[:, None] * (T + 1) + spans)[spans > 0]
    _, inv = key.unique(return_inverse=True)
    size = torch.bincount(inv)
    n_mask = torch.bincount(inv, weights=(out[spans > 0] == MASK).double())
    n_changed = torch.bincount(inv, weights=(out[spans > 0] != ids[spans > 0]).double())
    assert ((n_mask == 0) | (n_mask == size)).all(), "a span is partly [MASK]"
    masked = (n_mask == size).double().mean().item()
    randomized = ((n_mask == 0) & (n_changed > 0)).double().mean().item()
    assert (masked, randomized, 1 - masked - randomized) == pytest.approx((0.8, 0.1, 0.1), abs=0.02)
    assert not special_positions(out[(spans > 0) & (out != MASK)], range(5)).any()


def test_word_ids_from_packed_sentences():
    assert concat_word_ids([[None, 0, 0, 1, None], [0, 1, 1], []]) == [-1, 0, 0, 1, -1, 2, 3, 3]
    special = torch.tensor([[True, False, False, True, False, False, True]])
    wids = torch.tensor([[-1, 0, 0, -1, 0, 1, -1]])  # a special token always ends a word
    assert word_index(special, wids).tolist() == [[-1, 0, 0, -1, 1, 2, -1]]

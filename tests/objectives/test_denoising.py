"""BART noising: statistics on > 100k tokens and exact undo of every noise from its record."""

import math

import numpy as np
import pytest
import torch

from pipelines.data.packing import pack_sentences
from pipelines.errors import LmforgeError
from tasks.objectives.bart_denoising import BartNoise, bart_denoising_batch, bart_noise

BOS, PAD, EOS, MASK = 0, 1, 2, 4
MAX_LEN = 512


@pytest.fixture(scope="module")
def examples():
    """~270k tokens: documents of 20-60 sentences of 5-40 ids, packed as BART blocks."""
    rng = np.random.default_rng(0)
    docs = [[rng.integers(10, 50_000, size=int(n)).tolist() for n in rng.integers(5, 41, size=int(k))]
            for k in rng.integers(20, 61, size=300)]
    out = pack_sentences(docs, MAX_LEN - 2)
    assert sum(len(s) for ex in out for s in ex) > 100_000
    return out


def _noise_all(examples, noise, seed=0):
    rng = np.random.default_rng(seed)
    return [bart_noise(ex, BOS, EOS, MASK, rng, noise, MAX_LEN) for ex in examples]


def _undo(source, record, sentences):
    """The text after deletion, rebuilt from the input and the record; asserts one <mask> per span."""
    text = np.concatenate([sentences[i] for i in record.order])
    text = np.delete(text, record.deleted)
    body = source[1:-1]
    r = record.rotation
    infilled = np.concatenate([body[len(body) - r:], body[: len(body) - r]]) if r else body
    mask_at = np.flatnonzero(infilled == MASK)
    assert len(mask_at) == len(record.spans)  # exactly one <mask> per span, inserts included
    out, prev = [], 0
    for pos, (start, length) in zip(mask_at, record.spans):
        out.extend(infilled[prev:pos])
        out.extend(text[start:start + length])
        prev = pos + 1
    out.extend(infilled[prev:])
    return text, np.asarray(out)


def test_infilling_statistics_and_one_mask_per_span(examples):
    results = _noise_all(examples, BartNoise())
    lengths, masked, total = [], 0, 0
    for ex, (source, target, record) in zip(examples, results):
        assert target.tolist() == [BOS, *[t for s in ex for t in s], EOS]
        assert source[0] == BOS and source[-1] == EOS and len(source) <= len(target) <= MAX_LEN
        text, rebuilt = _undo(source, record, ex)
        assert np.array_equal(rebuilt, text)
        starts, lens = record.spans[:, 0], record.spans[:, 1]
        assert (starts[1:] >= starts[:-1] + lens[:-1]).all()  # no overlap, left to right
        lengths.extend(lens)
        masked += lens.sum()
        total += len(text)
    lengths = np.asarray(lengths)
    assert abs(masked / total - 0.30) < 0.01
    assert abs(lengths.mean() - 3.0) < 0.15
    assert abs(lengths.var() - 3.0) < 0.3  # Poisson: variance = mean
    assert abs((lengths == 0).mean() - math.exp(-3)) < 0.01  # zero-length spans = inserted <mask>


def test_sentence_permutation_is_a_permutation_at_the_expected_rate(examples):
    for ratio in (1.0, 0.5):
        results = _noise_all(examples, BartNoise(mask_ratio=0.0, permute_sentence_ratio=ratio), seed=1)
        excess_fixed = []
        for ex, (source, _, record) in zip(examples, results):
            k = len(ex)
            assert sorted(record.order) == list(range(k))
            assert source[1:-1].tolist() == [t for i in record.order for t in ex[i]]
            assert sorted(map(tuple, ex)) == sorted(tuple(ex[i]) for i in record.order)
            fixed = int((record.order == np.arange(k)).sum())
            # ceil(k * ratio) sentences are shuffled uniformly: on average one of them stays put
            excess_fixed.append(fixed - (k - math.ceil(k * ratio)))
        assert abs(np.mean(excess_fixed) - 1.0) < 0.15, ratio


def test_token_deletion_rate(examples):
    results = _noise_all(examples, BartNoise(mask_ratio=0.0, permute_sentence_ratio=0.0, deletion_ratio=0.1))
    deleted, total, where = 0, 0, []
    for ex, (source, _, record) in zip(examples, results):
        text = np.concatenate(ex)
        assert np.array_equal(source[1:-1], np.delete(text, record.deleted))
        deleted += len(record.deleted)
        total += len(text)
        where.extend(record.deleted / len(text))
    assert abs(deleted / total - 0.1) < 0.01
    assert abs(np.mean(where) - 0.5) < 0.02  # uniform over the text


def test_rotation_preserves_the_multiset(examples):
    noise = BartNoise(mask_ratio=0.0, permute_sentence_ratio=0.0, rotate_ratio=0.5)
    results = _noise_all(examples, noise, seed=2)
    rotated, offsets = 0, []
    for ex, (source, _, record) in zip(examples, results):
        text, body = np.concatenate(ex), source[1:-1]
        assert np.array_equal(np.sort(body), np.sort(text))
        assert np.array_equal(body, np.roll(text, -record.rotation))
        if record.rotation:
            rotated += 1
            offsets.append(record.rotation / len(text))
    assert abs(rotated / len(examples) - 0.5) < 0.07
    assert abs(np.mean(offsets) - 0.5) < 0.05


def test_all_noises_together_undo_exactly(examples):
    noise = BartNoise(deletion_ratio=0.05, rotate_ratio=1.0)
    for ex, (source, _, record) in zip(examples, _noise_all(examples, noise, seed=3)):
        text, rebuilt = _undo(source, record, ex)
        assert np.array_equal(rebuilt, text)


def test_short_examples_never_grow_and_long_ones_are_cut():
    rng = np.random.default_rng(4)
    noise = BartNoise(poisson_lambda=0.3)  # mostly zero-length spans: inserts only
    for n in range(1, 40):
        source, target, _ = bart_noise([list(range(10, 10 + n))], BOS, EOS, MASK, rng, noise, 16)
        assert len(source) <= len(target) == min(n, 14) + 2
    with pytest.raises(LmforgeError):
        bart_noise([[]], BOS, EOS, MASK, rng, noise, 16)


def test_batch_tensors(examples):
    def make(seed):
        gen = torch.Generator().manual_seed(seed)
        return bart_denoising_batch(examples[:32], BOS, EOS, MASK, PAD, MAX_LEN, gen)

    batch, again = make(5), make(5)
    assert not torch.equal(batch["input_ids"], make(6)["input_ids"])
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    inp, att, lab = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert inp.dtype == lab.dtype == torch.long and inp.shape[1] <= MAX_LEN and lab.shape[1] <= MAX_LEN
    for i, ex in enumerate(examples[:32]):
        n = int(att[i].sum())
        assert inp[i, 0] == BOS and inp[i, n - 1] == EOS and (inp[i, n:] == PAD).all()
        body = [t for s in ex for t in s]
        assert lab[i, : len(body) + 2].tolist() == [BOS, *body, EOS]
        assert (lab[i, len(body) + 2:] == -100).all()


def test_bad_ratios_are_user_errors():
    with pytest.raises(LmforgeError, match="mask_ratio"):
        BartNoise(mask_ratio=1.5).check()
    with pytest.raises(LmforgeError, match="deletion_ratio"):
        BartNoise(mask_ratio=0.6, deletion_ratio=0.6).check()

"""T5 span corruption: lengths, mask statistics on > 100k tokens, exact round trip."""

from math import comb

import numpy as np
import pytest
import torch

from pipelines.data.packing import pack_contiguous
from pipelines.errors import LmforgeError
from tasks.objectives.t5_span_corruption import (
    compute_t5_input_and_target_lengths,
    corrupt,
    random_spans_noise_mask,
    t5_span_corruption_batch,
)

EOS, PAD = 1, 0
VOCAB = 32100
SENTINELS = [VOCAB - 1 - i for i in range(100)]  # <extra_id_0> is the highest id, as in T5


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _restore(input_ids, labels):
    """Original block from (input, labels): every sentinel in the input replaced by its span."""
    assert input_ids[-1] == EOS and labels[-1] == EOS
    spans, current = {}, None
    for tok in labels[:-1]:
        if tok in SENTINELS:
            current = tok
            spans[current] = []
        else:
            spans[current].append(tok)
    out = []
    for tok in input_ids[:-1]:
        out.extend(spans.pop(tok) if tok in SENTINELS else [tok])
    assert not spans, "a sentinel in the labels has no place in the input"
    return out


def test_lengths_match_t5_and_hf():
    assert compute_t5_input_and_target_lengths(512) == (568, 114)  # run_t5_mlm_flax / T5 defaults
    assert compute_t5_input_and_target_lengths(512, 0.5) == (766, 512)  # T5's density-0.5 hack


@pytest.mark.parametrize("inputs_length", [16, 64, 128, 200, 256, 512, 1000])
def test_lengths_by_brute_force(inputs_length):
    """Corrupt real blocks of every candidate length: tokens_length is the longest whose input fits,
    and that input is exactly inputs_length long."""
    rng = np.random.default_rng(inputs_length)
    fits = []
    for tokens_length in range(inputs_length, 2 * inputs_length):
        mask = random_spans_noise_mask(tokens_length, 0.15, 3.0, rng)
        inp, lab = corrupt(np.arange(tokens_length) + 2, mask, SENTINELS, EOS)
        if len(inp) <= inputs_length:
            fits.append((tokens_length, len(inp), len(lab)))
    tokens_length, input_len, target_len = fits[-1]
    assert compute_t5_input_and_target_lengths(inputs_length) == (tokens_length, target_len)
    assert input_len == inputs_length


def test_mask_statistics_over_many_tokens():
    rng = np.random.default_rng(0)
    rows = 2000
    mask = random_spans_noise_mask(568, 0.15, 3.0, rng, num_rows=rows)  # 1.1M tokens
    assert mask.shape == (rows, 568)
    assert abs(mask.mean() - 0.15) < 0.01
    assert not mask[:, 0].any() and mask[:, -1].all()  # starts with non-noise, ends with noise
    starts = mask & ~np.pad(mask, ((0, 0), (1, 0)))[:, :-1]
    assert (starts.sum(1) == 28).all()  # round(round(568 * .15) / 3) spans in every row
    lengths = np.diff(np.flatnonzero(np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8).ravel())))[::2]
    assert len(lengths) == rows * 28
    assert abs(lengths.mean() - 3.0) < 0.3
    # Where the spans fall is uniform: every 50-token window away from the ends is noised ~15 %.
    per_position = mask.mean(0)
    for lo in range(50, 500, 50):
        assert abs(per_position[lo:lo + 50].mean() - 0.15) < 0.02, lo
    # Span lengths follow a uniformly random composition of 85 noise tokens into 28 spans.
    for k in range(1, 7):
        expected = comb(85 - k - 1, 28 - 2) / comb(85 - 1, 28 - 1)
        assert abs((lengths == k).mean() - expected) < 0.01, k


def test_mask_statistics_over_varied_lengths():
    rng = np.random.default_rng(1)
    lengths_seen, noise, spans = 0, 0, 0
    for length in rng.integers(20, 1500, size=300):
        m = random_spans_noise_mask(int(length), 0.15, 3.0, rng)
        lengths_seen += len(m)
        noise += m.sum()
        spans += (m & ~np.concatenate([[False], m[:-1]])).sum()
    assert lengths_seen > 100_000
    assert abs(noise / lengths_seen - 0.15) < 0.01
    assert abs(noise / spans - 3.0) < 0.3


def test_batch_round_trip_and_exact_lengths():
    tokens_length, targets_length = compute_t5_input_and_target_lengths(512)
    rng = np.random.default_rng(2)
    docs = [rng.integers(2, 32000, size=int(n)).tolist() for n in rng.integers(10, 900, size=500)]
    blocks = pack_contiguous(docs, tokens_length, separator_id=EOS)
    assert len(blocks) * tokens_length > 100_000
    g = _gen(3)
    for i in range(0, len(blocks), 32):
        chunk = blocks[i:i + 32]
        batch = t5_span_corruption_batch(chunk, SENTINELS, EOS, PAD, g)
        assert batch["input_ids"].shape == (len(chunk), 512)
        assert batch["labels"].shape == (len(chunk), targets_length)
        assert batch["attention_mask"].all()
        assert batch["input_ids"].dtype == batch["labels"].dtype == torch.long
        for block, inp, lab in zip(chunk, batch["input_ids"].tolist(), batch["labels"].tolist()):
            used = [t for t in inp if t in SENTINELS]
            assert used == SENTINELS[: len(used)]  # extra_id_0, extra_id_1, ... in order
            assert _restore(inp, lab) == block


def test_batch_pads_mixed_lengths_with_minus_100():
    blocks = [list(range(2, 570)), list(range(2, 102))]
    batch = t5_span_corruption_batch(blocks, SENTINELS, EOS, PAD, _gen())
    inp, att, lab = batch["input_ids"], batch["attention_mask"], batch["labels"]
    short_in = int(att[1].sum())
    assert (inp[1, short_in:] == PAD).all() and (inp[1, :short_in] != PAD).all()
    short_lab = int((lab[1] != -100).sum())
    row = lab[1, :short_lab].tolist()
    assert (lab[1, short_lab:] == -100).all() and row[-1] == EOS
    assert _restore(inp[1, :short_in].tolist(), row) == blocks[1]


def test_reproducible_from_the_generator():
    blocks = [list(range(2, 570))] * 4
    a = t5_span_corruption_batch(blocks, SENTINELS, EOS, PAD, _gen(7))
    b = t5_span_corruption_batch(blocks, SENTINELS, EOS, PAD, _gen(7))
    c = t5_span_corruption_batch(blocks, SENTINELS, EOS, PAD, _gen(8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["input_ids"], c["input_ids"])
    assert not torch.equal(a["input_ids"][0], a["input_ids"][1])  # rows get different masks


def test_paper_figure_2():
    words = "Thank you for inviting me to your party last week .".split()
    mask = [0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0]
    names = {900: "<X>", 901: "<Y>", 902: "<Z>", EOS: "</s>", **{i + 10: w for i, w in enumerate(words)}}
    inp, lab = corrupt(np.arange(len(words)) + 10, mask, [900, 901, 902], EOS)
    assert " ".join(names[t] for t in inp) == "Thank you <X> me to your party <Y> week . </s>"
    assert " ".join(names[t] for t in lab) == "<X> for inviting <Y> last <Z> </s>"


def test_too_few_sentinels_is_a_user_error():
    mask = random_spans_noise_mask(568, 0.15, 3.0, _gen())
    with pytest.raises(LmforgeError, match="sentinel"):
        corrupt(np.arange(568), mask, SENTINELS[:10], EOS)

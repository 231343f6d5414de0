"""Which positions an encoder objective predicts, and how they are corrupted.

Selection strategies (each returns a [B, T] BoolTensor that never touches special or padding
positions), all with BERT's per-sequence budget of round(rate x candidate tokens):
  select_tokens       i.i.d. token positions (BERT, RoBERTa, ELECTRA's generator input)
  select_whole_words  whole-word masking (BERT-wwm)
  select_ngrams       ALBERT n-gram masking: n <= 3 words with p(n) proportional to 1/n
  select_spans        SpanBERT: span length in words ~ Geometric(0.2) truncated at 10
and `mask_tokens`, BERT's 80/10/10 replacement of the selected positions (per token, or per
span as in SpanBERT when `span_ids` is given).

Hand-written because no library has them as batch functions: transformers'
DataCollatorForLanguageModeling does Bernoulli token / whole-word selection only, inside a
collator class, and has no n-gram or span masking. All randomness comes from the generator
passed in (torch draws for the vectorised token-level functions, a numpy Generator seeded from
it for the per-sequence word-level loop; see tasks/rng.py).
"""

from __future__ import annotations

import numpy as np
import torch

from pipelines.errors import LmforgeError
from tasks.shared.rng import numpy_rng

IGNORE_INDEX = -100  # label of positions that are not predicted (CrossEntropyLoss ignore_index)


def special_positions(input_ids: torch.Tensor, special_ids) -> torch.Tensor:
    """BoolTensor [B, T]: True where the token is special ([CLS], [SEP], [PAD], [MASK], ...)."""
    ids = torch.as_tensor(list(special_ids), dtype=input_ids.dtype, device=input_ids.device)
    return torch.isin(input_ids, ids)


def _check_rate(rate: float):
    if not 0.0 < rate <= 1.0:
        raise LmforgeError(f"objective: masking rate must be in (0, 1], got {rate}")


def selection_budget(special_mask: torch.Tensor, rate: float) -> torch.Tensor:
    """Tokens to select per sequence: max(1, round(rate x candidates)), 0 for rows with no candidate.

    The budget of Google's create_pretraining_data.py (num_to_predict), counted over candidate
    (non-special) tokens rather than all tokens, so that the rate is the rate of real text. An
    exact per-sequence count rather than HF's Bernoulli(rate) per token: every sequence gets the
    same share of predictions and the batch statistics are tight. The max(1, .) keeps every
    non-empty row contributing a prediction, as in BERT.
    """
    _check_rate(rate)
    n = (~special_mask).sum(dim=1)
    k = torch.floor(n.double() * rate + 0.5).long().clamp(min=1)
    return torch.minimum(k, n)


def _rand(shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def select_tokens(input_ids: torch.Tensor, special_mask: torch.Tensor, generator: torch.Generator,
                  rate: float = 0.15) -> torch.Tensor:
    """Exactly selection_budget() random candidate positions per row (vectorised: the k smallest of
    uniform keys, with special positions keyed above every candidate)."""
    keys = _rand(input_ids.shape, generator, input_ids.device).masked_fill(special_mask, 2.0)
    rank = keys.argsort(dim=1).argsort(dim=1)
    return rank < selection_budget(special_mask, rate)[:, None]


# --- word-level selection -----------------------------------------------------------------

def concat_word_ids(word_id_lists) -> list[int]:
    """Word ids of sentences packed into one sequence, offset so neighbouring words always differ.

    Takes `encoding.word_ids()` of each sentence (None -> -1). Fast tokenizers number words from 0
    in every call, so two packed sentences would otherwise reuse ids; this works for WordPiece,
    byte-level BPE and Unigram alike because word_ids() comes from the pre-tokenizer.
    """
    out, offset = [], 0
    for ids in word_id_lists:
        present = [w for w in ids if w is not None]
        out.extend(-1 if w is None else w + offset for w in ids)
        offset += (max(present) + 1) if present else 0
    return out


def word_index(special_mask: torch.Tensor, word_ids: torch.Tensor) -> torch.Tensor:
    """LongTensor [B, T]: 0-based index of the word each candidate token belongs to, -1 on specials.

    A word is a maximal run of candidate positions with equal word id, so ids only need to differ
    between neighbouring words, and a special token always ends a word.
    """
    cand = ~special_mask
    prev_cand = torch.nn.functional.pad(cand[:, :-1], (1, 0), value=False)
    prev_word = torch.nn.functional.pad(word_ids[:, :-1], (1, 0), value=-1)
    starts = cand & (~prev_cand | (word_ids != prev_word))
    return (starts.long().cumsum(dim=1) - 1).masked_fill(~cand, -1)


def albert_ngram_probs(max_n: int = 3) -> np.ndarray:
    """p(n) proportional to 1/n for n = 1..max_n (ALBERT §4.1; favor_shorter_ngram in its
    create_pretraining_data.py): 6/11, 3/11, 2/11 for max_n = 3."""
    p = 1.0 / np.arange(1, max_n + 1)
    return p / p.sum()


def spanbert_length_probs(p: float = 0.2, max_len: int = 10) -> np.ndarray:
    """Geometric(p) on 1..max_len, renormalised (SpanBERT's PairWithSpanMaskingScheme.len_distrib).

    SpanBERT "clips" at 10 by truncating and renormalising, not by piling the tail on 10
    (min(L, 10) would have mean 4.46 and 13 % of spans of length 10); this gives the paper's mean
    span length of 3.8 words.
    """
    lengths = np.arange(1, max_len + 1)
    w = p * (1 - p) ** (lengths - 1)
    return w / w.sum()


def _place_units(sizes: np.ndarray, gaps: np.ndarray, budget: int, probs: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Unit id (1, 2, ...) of each word of one sequence, 0 if unselected. `sizes`: tokens per word;
    `gaps`: True where a special token ([SEP]) separates a word from the previous one.

    Each unit: draw n ~ probs (in words), place it uniformly among the runs of n free consecutive
    words of one segment (n shrinks to the longest free run). Placing among free runs, rather
    than ALBERT's "drop the candidate if it overlaps", keeps long n-grams from being rejected
    more often than short ones. Whether to place another unit is decided BEFORE its length is
    drawn, so the budget never filters lengths and realised lengths follow probs exactly (Wald's
    identity); continuing with probability left / E[max(size, left)] makes the expected token
    count exactly the budget. A rule that looks at the size of the unit that would overshoot
    (Google's code skips it, ALBERT's first retries shorter n, "keep it with probability
    left / size") biases towards short units: with the last one, the mean SpanBERT span on the
    default corpus at T=128 was 3.55 words instead of 3.80.
    """
    n_words = len(sizes)
    tok_cum = np.concatenate([[0], np.cumsum(sizes)])
    gap_cum = np.concatenate([[0], np.cumsum(gaps)])
    # windows[n - 1, a]: the n words starting at word a (token size, still selectable)
    first = np.arange(n_words)[None, :]
    end = first + np.arange(1, min(len(probs), n_words) + 1)[:, None]
    end_c = np.minimum(end, n_words)
    size = tok_cum[end_c] - tok_cum[first]
    valid = (end <= n_words) & (gap_cum[end_c] == gap_cum[np.minimum(first + 1, n_words)])
    units = np.zeros(n_words, dtype=np.int64)
    taken = 0
    for unit, (u_stop, u_len, u_pos) in enumerate(rng.random((budget, 3)), start=1):
        counts = valid.sum(axis=1)
        m = int((counts > 0).sum())  # a free run of n + 1 words contains one of n
        left = budget - taken
        if m == 0 or left <= 0:
            break
        p = probs[:m].copy()
        p[-1] += probs[m:].sum()  # lengths without a free run shrink to the longest one
        expected = (p * np.where(valid[:m], np.maximum(size[:m], left), 0).sum(axis=1) / counts[:m]).sum()
        if u_stop * expected >= left:
            break
        n = min(int(np.searchsorted(np.cumsum(p), u_len * p.sum(), side="right")), m - 1)
        starts = np.flatnonzero(valid[n])
        a = starts[int(u_pos * starts.size)]
        units[a:a + n + 1] = unit
        taken += int(size[n, a])
        valid &= (end <= a) | (first > a + n)
    return units


def word_span_ids(input_ids: torch.Tensor, special_mask: torch.Tensor, generator, rate: float = 0.15, *,
                  word_ids: torch.Tensor, length_probs) -> torch.Tensor:
    """LongTensor [B, T]: id (1, 2, ... within its row) of the selected unit of whole words each
    token belongs to, 0 where not selected. `length_probs[n - 1]` is p(unit of n words).

    Loops over sequences in Python/numpy (units are placed one after another): about 2k (whole
    words), 3k (n-grams), 5k (spans) sequences/s at batch 32 x 128 on one CPU core.
    """
    budget = selection_budget(special_mask, rate).tolist()
    probs = np.asarray(length_probs, dtype=np.float64)
    probs = probs / probs.sum()
    rng = numpy_rng(generator)
    widx = word_index(special_mask, word_ids.to(special_mask.device)).cpu()
    n_words = (widx.max(dim=1).values + 1).tolist()
    width = max(n_words) + 1
    unit_of_word = np.zeros((len(n_words), width), dtype=np.int64)  # last column: specials -> 0
    widx_np = widx.numpy()
    for b, w in enumerate(n_words):
        if w > 0 and budget[b] > 0:
            row = widx_np[b]
            sizes = np.bincount(row[row >= 0], minlength=w)
            starts = np.flatnonzero((row >= 0) & (np.diff(row, prepend=-1) != 0))
            gaps = np.concatenate([[False], starts[1:] != starts[:-1] + sizes[:-1]])
            unit_of_word[b, :w] = _place_units(sizes, gaps, budget[b], probs, rng)
    gather_at = widx.masked_fill(widx < 0, width - 1)
    return torch.from_numpy(unit_of_word).gather(1, gather_at).to(input_ids.device)


def select_whole_words(input_ids, special_mask, generator, rate: float = 0.15, *, word_ids) -> torch.Tensor:
    """Whole-word masking: whole words only, about rate x candidate tokens per sequence."""
    return word_span_ids(input_ids, special_mask, generator, rate, word_ids=word_ids, length_probs=[1.0]) > 0


def select_ngrams(input_ids, special_mask, generator, rate: float = 0.15, *, word_ids,
                  max_n: int = 3) -> torch.Tensor:
    """ALBERT n-gram masking: n-grams of whole words, n <= max_n with p(n) proportional to 1/n."""
    return word_span_ids(input_ids, special_mask, generator, rate, word_ids=word_ids,
                         length_probs=albert_ngram_probs(max_n)) > 0


def select_spans(input_ids, special_mask, generator, rate: float = 0.15, *, word_ids, p: float = 0.2,
                 max_len: int = 10) -> torch.Tensor:
    """SpanBERT span masking: spans of whole words, length ~ Geometric(p) truncated at max_len.
    For SpanBERT's span-level 80/10/10, call word_span_ids(..., length_probs=spanbert_length_probs())
    and pass the ids to mask_tokens(span_ids=...)."""
    return word_span_ids(input_ids, special_mask, generator, rate, word_ids=word_ids,
                         length_probs=spanbert_length_probs(p, max_len)) > 0


# --- replacement ---------------------------------------------------------------------------

def replacement_pool(vocab_size: int, special_ids) -> torch.Tensor:
    """Ids a "random token" may take: the vocabulary without special tokens.

    BERT (vocab_words) and transformers' collator (torch.randint(len(tokenizer))) draw from the
    whole vocabulary. We exclude specials: a random [MASK] turns part of the 10 % "random" branch
    into masking, a random [SEP]/[CLS] plants a fake segment boundary the NSP/SOP head reads,
    and [PAD] at an attended position is an input the model never sees otherwise. None of them
    ever occurs at fine-tuning time, so drawing them only adds noise.
    """
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    ids = torch.as_tensor([i for i in special_ids if 0 <= i < vocab_size], dtype=torch.long)
    allowed[ids] = False
    pool = allowed.nonzero().squeeze(1)
    if pool.numel() == 0:
        raise LmforgeError(f"vocabulary of {vocab_size} ids has no non-special token to sample")
    return pool


def mask_tokens(input_ids: torch.Tensor, selected: torch.Tensor, mask_id: int, vocab_size: int,
                generator: torch.Generator, special_ids, mask_prob: float = 0.8, random_prob: float = 0.1,
                span_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption of the selected positions -> (corrupted_ids, labels).

    Each selected position becomes mask_id with probability mask_prob, a random non-special token
    with probability random_prob, and stays itself otherwise; labels hold the original id at
    selected positions and -100 elsewhere. With `span_ids` ([B, T], 0 = none) the branch is drawn
    once per span, as SpanBERT does (replacement="span"): a span is all [MASK], all random
    tokens or all kept, so the model cannot read the span's extent off a partial corruption.
    """
    if mask_prob < 0 or random_prob < 0 or mask_prob + random_prob > 1:
        raise LmforgeError(f"objective: mask_prob ({mask_prob}) and random_prob ({random_prob}) must be "
                           "non-negative with a sum <= 1")
    special_ids = [*special_ids, mask_id]
    if span_ids is None:
        u = _rand(input_ids.shape, generator, input_ids.device)
    else:
        per_span = _rand((input_ids.shape[0], int(span_ids.max()) + 1), generator, input_ids.device)
        u = per_span.gather(1, span_ids)
    to_mask = selected & (u < mask_prob)
    to_random = selected & (u >= mask_prob) & (u < mask_prob + random_prob)
    pool = replacement_pool(vocab_size, special_ids)
    draws = torch.randint(pool.numel(), input_ids.shape, generator=generator, device=generator.device)
    random_tokens = pool.to(draws.device)[draws].to(input_ids.device)
    corrupted = input_ids.masked_fill(to_mask, mask_id)
    corrupted = torch.where(to_random, random_tokens, corrupted)
    labels = input_ids.masked_fill(~selected, IGNORE_INDEX)
    return corrupted, labels


def special_mask(input_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """True at special-token and padding positions (never masked, never a loss target)."""
    ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=input_ids.dtype)
    return torch.isin(input_ids, ids)

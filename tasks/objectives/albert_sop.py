"""ALBERT pretraining: masked LM with n-gram masking + sentence-order prediction (Lan et al. 2020)
on AlbertForPreTraining.

What makes ALBERT ALBERT lives in three places:
- the model (AlbertConfig, from the recipe): factorized embeddings (embedding_size E=128 projected
  to the hidden size) and cross-layer sharing (num_hidden_groups 1: one layer's weights, used
  num_hidden_layers times);
- the objective (here): SOP instead of NSP. Both segments come from ONE document, consecutive,
  and half of the pairs are swapped (sop_ranges below), so topic cues cannot solve it; MLM targets
  are chosen as n-grams of whole words, n <= 3 with p(n) proportional to 1/n (§4.1,
  tasks/shared/masking.py), from the word starts stored with the shards;
- the tokenizer: a SentencePiece Unigram vocabulary of 30k (tokenizer/unigram.py).
Input: [CLS] A [SEP] B [SEP], token_type_ids 0 / 1. sentence_order_label: 0 = A then B is the
document's order, 1 = swapped (AlbertForPreTraining's convention; the pair flag True = swapped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.data.examples import RowBuffer
from tasks.base import register
from tasks.shared.masked_lm import MlmParams
from tasks.shared.sentence_pairs import (
    DocumentBounds,
    PairTask,
    chunks,
    target_length,
    truncate_range_pair,
)


def sop_ranges(docs: DocumentBounds, max_tokens: int, rng: np.random.Generator,
               short_seq_prob: float = 0.1) -> np.ndarray:
    """ALBERT SOP pairs (a_start, a_end, b_start, b_end, is_swapped) with len(a) + len(b) <= max_tokens:
    two consecutive segments of one document, swapped with probability 1/2.

    The pair is truncated before the coin flip, so a swapped pair is exactly an in-order pair
    reversed and only the order tells them apart. ALBERT's code turns a one-sentence chunk into a
    random-document pair (an NSP negative); here it is skipped, since SOP pairs must come from
    one document.
    """
    pairs = RowBuffer(5)
    for d in range(len(docs)):
        bounds = docs[d]
        target = target_length(max_tokens, short_seq_prob, rng)

        def emit(start, end, bounds=bounds):
            if end - start >= 2:
                a_end = start + int(rng.integers(1, end - start))
                a, b = truncate_range_pair((int(bounds[start]), int(bounds[a_end])),
                                           (int(bounds[a_end]), int(bounds[end])), max_tokens, rng)
                swapped = bool(rng.random() < 0.5)
                pairs.append((*b, *a, True) if swapped else (*a, *b, False))
            return end

        chunks(bounds, target, emit)
    return pairs.array()


@dataclass
class AlbertParams(MlmParams):
    masking: str = "ngram"  # ALBERT's n-gram masking (max n = 3); token | whole_word | span also work
    short_seq_prob: float = 0.1  # as BERT: 10 % of pairs use a shorter random target length


@register("albert-mlm-sop")
class AlbertMlmSop(PairTask):
    Params = AlbertParams
    tokenizer_kinds = ("unigram",)
    pair_term = "sop"
    loss_weights = {"mlm": 1.0, "sop": 1.0}
    pair_builder = staticmethod(sop_ranges)

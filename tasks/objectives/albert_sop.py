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

from array import array
from dataclasses import dataclass

import numpy as np

from pipelines.data.draws import replay
from tasks.base import register
from tasks.shared.masked_lm import MlmParams
from tasks.shared.sentence_pairs import DocumentBounds, PairTask, chunk_end, draw_target, pair_rows, truncated


def sop_ranges(docs: DocumentBounds, max_tokens: int, rng: np.random.Generator,
               short_seq_prob: float = 0.1) -> np.ndarray:
    """ALBERT SOP pairs (a_start, a_end, b_start, b_end, is_swapped), as ALBERT's
    create_instances_from_document builds them (two consecutive segments of one document,
    truncated, then swapped with probability 1/2). Vectorised (the shared pieces:
    tasks/shared/sentence_pairs.py); tests/objectives/test_index_builders.py pins the arrays to the
    per-sentence loop it replaced."""
    bounds, first, count = docs.flat()
    out = array("q")
    with replay(rng) as draws:
        for d in range(len(first)):
            target = draw_target(max_tokens, short_seq_prob, draws)
            s, end = first[d], first[d] + count[d]
            while s < end:
                p = chunk_end(bounds, s, end, target)
                if p - s >= 2:
                    cut = s + draws.integers(1, p - s)
                    a0, a1, b0, b1 = truncated(bounds[s], bounds[cut], bounds[cut], bounds[p], max_tokens, draws)
                    out.extend((b0, b1, a0, a1, 1) if draws.random() < 0.5 else (a0, a1, b0, b1, 0))
                s = p
    return pair_rows(out, 5)


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

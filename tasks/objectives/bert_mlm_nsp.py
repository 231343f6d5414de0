"""BERT pretraining: masked LM + next sentence prediction (Devlin et al. 2019) on BertForPreTraining.

Pairs are built once per corpus pass as in BERT's create_pretraining_data.py (segment A from a
document, B its true continuation or, half the time, text from another document; dupe_factor
passes with different pairings) and kept as a cached index of token ranges into the prepared
shards (tasks/shared/sentence_pairs.py); masking stays dynamic, fresh for every batch
(tasks/shared/masking.py: 15 %, 80/10/10).
Input: [CLS] A [SEP] B [SEP], token_type_ids 0 for A and its [SEP], 1 for B and the final [SEP].
next_sentence_label: 0 = B continues A, 1 = B is random (transformers' convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.data.examples import RowBuffer
from pipelines.errors import LmforgeError
from tasks.base import register
from tasks.shared.masked_lm import MlmParams
from tasks.shared.sentence_pairs import (
    DocumentBounds,
    PairTask,
    chunks,
    target_length,
    truncate_range_pair,
)


def random_segment(docs: DocumentBounds, avoid: int, target: int, rng: np.random.Generator) -> tuple[int, int]:
    """Sentences from a random position of a random OTHER document, up to `target` tokens.
    (BERT retries 10 times to avoid the current document and may still return it.)"""
    other = int(rng.integers(len(docs) - 1))
    other += other >= avoid
    bounds = docs[other]
    start = int(rng.integers(len(bounds) - 1))
    end = start + 1
    while end < len(bounds) - 1 and bounds[end] - bounds[start] < target:
        end += 1
    return int(bounds[start]), int(bounds[end])


def nsp_ranges(docs: DocumentBounds, max_tokens: int, rng: np.random.Generator,
               short_seq_prob: float = 0.1) -> np.ndarray:
    """BERT NSP pairs (a_start, a_end, b_start, b_end, is_random_next) with len(a) + len(b) <=
    max_tokens (pass max_seq_length - 3 for [CLS] A [SEP] B [SEP]). B is the true continuation with
    probability 1/2, else a span of another document; in document order, shuffled by the sampler."""
    if len(docs) < 2:
        raise LmforgeError("NSP needs at least 2 documents (random-next segments come from another document)")
    pairs = RowBuffer(5)
    for d in range(len(docs)):
        bounds = docs[d]
        if len(bounds) < 3:  # one sentence: could only make random-next pairs; still a source of random Bs
            continue
        target = target_length(max_tokens, short_seq_prob, rng)

        def emit(start, end, bounds=bounds, d=d, target=target):
            n = end - start
            a_end = int(rng.integers(1, n)) if n >= 2 else 1
            a = (int(bounds[start]), int(bounds[start + a_end]))
            is_random = n == 1 or rng.random() < 0.5
            if is_random:
                b = random_segment(docs, d, target - (a[1] - a[0]), rng)
                end = start + a_end  # the unused sentences start the next chunk, as in BERT,
                if end == len(bounds) - 2:  # unless only a lone last sentence would be left
                    end = len(bounds) - 1
            else:
                b = (a[1], int(bounds[end]))
            a, b = truncate_range_pair(a, b, max_tokens, rng)
            pairs.append((*a, *b, is_random))
            return end

        chunks(bounds, target, emit)
    return pairs.array()


@dataclass
class BertParams(MlmParams):
    """MLM (mlm_probability 0.15, 80/10/10; tasks/shared/masking.py) plus the pair builder's setting."""

    short_seq_prob: float = 0.1  # BERT: 10 % of pairs use a shorter random target length


@register("bert-mlm-nsp")
class BertMlmNsp(PairTask):
    Params = BertParams
    tokenizer_kinds = ("wordpiece",)
    pair_term = "nsp"
    loss_weights = {"mlm": 1.0, "nsp": 1.0}
    pair_builder = staticmethod(nsp_ranges)

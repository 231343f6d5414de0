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

from array import array
from bisect import bisect_left
from dataclasses import dataclass

import numpy as np

from pipelines.data.draws import Draws, replay
from pipelines.errors import LmforgeError
from tasks.base import register
from tasks.shared.masked_lm import MlmParams
from tasks.shared.sentence_pairs import DocumentBounds, PairTask, chunk_end, draw_target, pair_rows, truncated


def random_segment(bounds, first: list, count: list, avoid: int, target: int, draws: Draws) -> tuple[int, int]:
    """Sentences from a random sentence of a random OTHER document, up to `target` tokens (at least one
    sentence). (BERT retries 10 times to avoid the current document and may still return it.)"""
    other = draws.integers(0, len(first) - 1)
    other += other >= avoid
    s = first[other] + draws.integers(0, count[other])
    return bounds[s], bounds[bisect_left(bounds, bounds[s] + target, s + 1, first[other] + count[other])]


def nsp_ranges(docs: DocumentBounds, max_tokens: int, rng: np.random.Generator,
               short_seq_prob: float = 0.1) -> np.ndarray:
    """BERT NSP pairs (a_start, a_end, b_start, b_end, is_random_next) with len(a) + len(b) <=
    max_tokens (pass max_seq_length - 3 for [CLS] A [SEP] B [SEP]), as BERT's
    create_instances_from_document builds them: B is the true continuation with probability 1/2, else
    a span of another document; in document order, shuffled by the sampler. Vectorised (the shared
    pieces: tasks/shared/sentence_pairs.py); tests/objectives/test_index_builders.py pins the arrays
    to the per-sentence loop it replaced."""
    if len(docs) < 2:
        raise LmforgeError("NSP needs at least 2 documents (random-next segments come from another document)")
    bounds, first, count = docs.flat()
    out = array("q")
    with replay(rng) as draws:
        for d in range(len(first)):
            if count[d] >= 2:  # one sentence: could only make random-next pairs; still a source of random Bs
                _nsp_document(bounds, first, count, d, max_tokens, short_seq_prob, draws, out)
    return pair_rows(out, 5)


def _nsp_document(bounds, first, count, d, max_tokens, short_seq_prob, draws, out):
    target = draw_target(max_tokens, short_seq_prob, draws)
    s, end = first[d], first[d] + count[d]
    while s < end:
        p = chunk_end(bounds, s, end, target)
        cut = s + (draws.integers(1, p - s) if p - s >= 2 else 1)
        a0, a1 = bounds[s], bounds[cut]
        if p - s == 1 or draws.random() < 0.5:
            b0, b1 = random_segment(bounds, first, count, d, target - (a1 - a0), draws)
            flag, p = 1, (end if cut == end - 1 else cut)  # B's sentences start the next chunk, unless one is left
        else:
            b0, b1, flag = a1, bounds[p], 0
        out.extend((*truncated(a0, a1, b0, b1, max_tokens, draws), flag))
        s = p


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

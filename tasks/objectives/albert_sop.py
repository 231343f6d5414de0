"""ALBERT pretraining: masked LM with n-gram masking + sentence-order prediction (Lan et al. 2020)
on AlbertForPreTraining.

What makes ALBERT ALBERT lives in three places:
- the model (AlbertConfig, from the recipe): factorized embeddings (embedding_size E=128 projected
  to the hidden size) and cross-layer sharing (num_hidden_groups 1: one layer's weights, used
  num_hidden_layers times);
- the objective (here): SOP instead of NSP. Both segments come from ONE document, consecutive,
  and half of the pairs are swapped (tasks/pairs.py sop_pairs), so topic cues cannot solve it;
  MLM targets are chosen as n-grams of whole words, n <= 3 with p(n) proportional to 1/n (§4.1),
  which needs per-token word ids (tokenize_documents(word_ids=True));
- the tokenizer: a SentencePiece Unigram vocabulary of 30k (tokenizer/unigram.py).
Input: [CLS] A [SEP] B [SEP], token_type_ids 0 / 1. sentence_order_label: 0 = A then B is the
document's order, 1 = swapped (AlbertForPreTraining's convention; pairs.py flags True = swapped).
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.base import register
from tasks.objectives.bert_mlm_nsp import MlmNspParams, PairTask


@dataclass
class AlbertParams(MlmNspParams):
    masking: str = "ngram"  # ALBERT's n-gram masking (max n = 3); token | whole_word | span also work


@register("albert-mlm-sop")
class AlbertMlmSop(PairTask):
    Params = AlbertParams
    tokenizer_kinds = ("unigram",)
    pair_term = "sop"
    loss_weights = {"mlm": 1.0, "sop": 1.0}

    def pair_fn(self):
        from tasks.shared.sentence_pairs import sop_pairs

        return sop_pairs

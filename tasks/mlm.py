"""Masked language modelling (Devlin et al. 2019; RoBERTa, Liu et al. 2019).

Dynamic masking: the collator picks fresh positions every time a sequence is seen (RoBERTa's
"dynamic masking"). Selection strategy (single tokens, whole words, SpanBERT spans, ALBERT
n-grams) and the 80/10/10 replacement are in tasks/masking.py and shared by every MLM family.
Plain MLM packs FULL-SENTENCES (RoBERTa): contiguous text up to max length, crossing document
boundaries with a separator token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.data import load_documents, split_documents
from pipelines.errors import LmforgeError
from tasks.base import Task, register
from tasks.common import (init_model, pad_stack, special_mask, token_ce_sum, tokenize_documents,
                          with_special_tokens)


@dataclass
class MlmParams:
    mlm_probability: float = 0.15
    mask_replace_prob: float = 0.8  # of the selected positions -> [MASK]
    random_replace_prob: float = 0.1  # -> a random (non-special) token; the rest stay unchanged
    masking: str = "token"  # token | whole_word | span | ngram


def _whole_words():
    import numpy as np

    return np.array([1.0])  # one word at a time


def _ngrams():
    from tasks.masking import albert_ngram_probs

    return albert_ngram_probs(3)


def _spans():
    from tasks.masking import spanbert_length_probs

    return spanbert_length_probs(0.2, 10)


# strategy -> distribution of unit lengths in words (index 0 = length 1)
_WORD_STRATEGIES = {"whole_word": _whole_words, "ngram": _ngrams, "span": _spans}


class MaskingMixin:
    """The MLM half of a collator: select positions, replace 80/10/10, labels at selected only."""

    def mask_batch(self, input_ids: torch.Tensor, generator: torch.Generator, word_ids=None):
        """(corrupted input_ids, labels) for one batch with the recipe's masking strategy."""
        from tasks import masking

        p, tok = self.params, self.tokenizer
        specials = special_mask(input_ids, tok)
        span_ids = None
        if p.masking == "token":
            selected = masking.select_tokens(input_ids, specials, generator, p.mlm_probability)
        elif p.masking in _WORD_STRATEGIES:
            if word_ids is None:
                raise LmforgeError(f"objective.masking '{p.masking}' needs word ids, which task "
                                   f"'{self.recipe.task}' does not provide")
            span_ids = masking.word_span_ids(input_ids, specials, generator, p.mlm_probability, word_ids=word_ids,
                                             length_probs=_WORD_STRATEGIES[p.masking]())
            selected = span_ids > 0
            span_ids = span_ids if p.masking == "span" else None  # SpanBERT corrupts whole spans alike
        else:
            raise LmforgeError(f"objective.masking: '{p.masking}' is not one of token, "
                               f"{', '.join(_WORD_STRATEGIES)}")
        return masking.mask_tokens(input_ids, selected, tok.mask_token_id, len(tok), generator,
                                   tok.all_special_ids, p.mask_replace_prob, p.random_replace_prob, span_ids)


def documents_for(recipe, tokenizer):
    """(train, eval) documents of token ids: whole documents held out for evaluation."""
    docs = load_documents(recipe.data)
    train, held = split_documents(docs, recipe.data.validation_fraction, recipe.training.seed)
    return tokenize_documents(train, tokenizer), tokenize_documents(held, tokenizer)


@register("mlm")
class MaskedLM(MaskingMixin, Task):
    """RoBERTa-style MLM on AutoModelForMaskedLM (any encoder family)."""

    Params = MlmParams
    loss_weights = {"mlm": 1.0}

    def prepare(self, tokenizer):
        from tasks.packing import pack_contiguous

        self.tokenizer = tokenizer
        width = self.recipe.data.max_seq_length - 2  # room for <s> ... </s>
        sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        out = []
        for docs in documents_for(self.recipe, tokenizer):
            flat = [[t for s in d for t in s] for d in docs]
            out.append([{"input_ids": with_special_tokens(tokenizer, block)[0]}
                        for block in pack_contiguous(flat, width, sep)])
        return out[0], out[1]

    def collate(self, examples, generator):
        input_ids = pad_stack([e["input_ids"] for e in examples], self.tokenizer.pad_token_id)
        attention_mask = (input_ids != self.tokenizer.pad_token_id).long()
        corrupted, labels = self.mask_batch(input_ids, generator)
        return {"input_ids": corrupted, "attention_mask": attention_mask, "labels": labels}

    def build_model(self, tokenizer):
        from transformers import AutoModelForMaskedLM

        self.tokenizer = tokenizer
        return init_model(AutoModelForMaskedLM, self.recipe, tokenizer)

    def loss_counts(self, batch):
        return {"mlm": (batch["labels"] != -100).sum()}

    def loss(self, model, batch):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return {"mlm": token_ce_sum(out.logits, batch["labels"])}

    def eval_metrics(self, model, batches):
        return {"mlm_accuracy": masked_accuracy(model, batches, "logits")}


@torch.no_grad()
def masked_accuracy(model, batches, logits_name: str) -> float:
    """Share of masked positions whose argmax prediction is the original token."""
    right = total = 0
    for b in batches:
        inputs = {k: v for k, v in b.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        logits = getattr(model(**inputs), logits_name)
        sel = b["labels"] != -100
        right += int((logits.argmax(-1)[sel] == b["labels"][sel]).sum())
        total += int(sel.sum())
    return right / max(total, 1)

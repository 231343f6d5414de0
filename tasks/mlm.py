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
from tasks.common import (
    init_model,
    pad_stack,
    special_mask,
    special_template,
    split_word_ids,
    template_example,
    token_ce_sum,
    tokenize_documents,
)


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

    def load_tokenizer(self):
        """Pretraining ties the tokenizer to the family: a WordPiece vocabulary for RoBERTa is an error."""
        from tasks.common import load_or_build_tokenizer

        return load_or_build_tokenizer(self.recipe, self.tokenizer_kinds, match_family=True)

    @property
    def needs_word_ids(self) -> bool:
        """Word-level strategies need per-token word ids; examples carry them only then (memory)."""
        return self.params.masking != "token"

    def masked(self, input_ids: torch.Tensor, examples: list[dict], generator: torch.Generator):
        """mask_batch with the examples' word ids (padded with -1) when they carry them."""
        words = pad_stack([e["word_ids"] for e in examples], -1, input_ids.size(1)) if "word_ids" in examples[0] \
            else None
        return self.mask_batch(input_ids, generator, word_ids=words)

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


def documents_for(recipe, tokenizer, word_ids: bool = False):
    """(train, eval) documents of token ids (or (id, word id) pairs): whole documents held out for evaluation."""
    docs = load_documents(recipe.data)
    train, held = split_documents(docs, recipe.data.validation_fraction, recipe.training.seed)
    return tuple(tokenize_documents(part, tokenizer, word_ids=word_ids) for part in (train, held))


@register("mlm")
class MaskedLM(MaskingMixin, Task):
    """RoBERTa-style MLM on AutoModelForMaskedLM (any encoder family)."""

    Params = MlmParams
    loss_weights = {"mlm": 1.0}

    def prepare(self, tokenizer):
        from tasks.packing import pack_contiguous

        self.tokenizer = tokenizer
        pre, post = special_template(tokenizer)["single"]
        width = self.recipe.data.max_seq_length - len(pre) - len(post)  # room for <s> ... </s>
        sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        out = []
        for docs in documents_for(self.recipe, tokenizer, word_ids=self.needs_word_ids):
            flat = [[t for s in d for t in s] for d in docs]
            if self.needs_word_ids:  # the word ids are packed the same way: the blocks line up
                ids, words = zip(*(split_word_ids(d) for d in flat)) if flat else ((), ())
                blocks = [list(zip(b, w)) for b, w in zip(pack_contiguous(ids, width, sep),
                                                          pack_contiguous(words, width, -1))]
            else:
                blocks = pack_contiguous(flat, width, sep)
            examples = [template_example(tokenizer, block) for block in blocks]
            out.append([{k: e[k] for k in ("input_ids", "word_ids") if k in e} for e in examples])
        return out[0], out[1]

    def collate(self, examples, generator):
        input_ids = pad_stack([e["input_ids"] for e in examples], self.tokenizer.pad_token_id)
        attention_mask = (input_ids != self.tokenizer.pad_token_id).long()
        corrupted, labels = self.masked(input_ids, examples, generator)
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

"""The MLM side of an encoder objective: its parameters (objective.mlm_probability, the 80/10/10
split, the masking strategy) and the mixin that masks a collated batch with them, plus masked-token
accuracy. The selection and replacement functions themselves are in masking.py."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.errors import LmforgeError
from tasks.shared import masking
from tasks.shared.batching import pad_stack
from tasks.shared.masking import IGNORE_INDEX


@dataclass
class MlmParams:
    mlm_probability: float = 0.15
    mask_replace_prob: float = 0.8  # of the selected positions -> [MASK]
    random_replace_prob: float = 0.1  # -> a random (non-special) token; the rest stay unchanged
    masking: str = "token"  # token | whole_word | span | ngram
    sparse_prediction: bool = True  # the output layer only at masked positions (tasks/shared/sparse_head.py)

    def check(self, where: str):
        """Ranges, checked when the recipe loads (pipelines.config.validate_params)."""
        from pipelines.config import check_probability

        for name in vars(self):  # every probability, also those of subclasses (short_seq_prob, ...)
            if name.endswith(("_prob", "_probability")):
                check_probability(where, name, getattr(self, name))
        if self.mask_replace_prob + self.random_replace_prob > 1:
            raise LmforgeError(f"{where}: mask_replace_prob + random_replace_prob must be <= 1, got "
                               f"{self.mask_replace_prob} + {self.random_replace_prob}")
        if self.masking not in ("token", *_WORD_STRATEGIES):
            raise LmforgeError(f"{where}: masking '{self.masking}' is not one of token, {', '.join(_WORD_STRATEGIES)}")


def _whole_words():
    import numpy as np

    return np.array([1.0])  # one word at a time


def _ngrams():
    return masking.albert_ngram_probs(3)


def _spans():
    return masking.spanbert_length_probs(0.2, 10)


_WORD_STRATEGIES = {"whole_word": _whole_words, "ngram": _ngrams, "span": _spans}


class MaskingMixin:
    """The MLM half of a collator: select positions, replace 80/10/10, labels at selected only."""

    def load_tokenizer(self):
        """Pretraining ties the tokenizer to the family: a WordPiece vocabulary for RoBERTa is an error."""
        from tasks.shared.tokenizer import load_or_build_tokenizer

        return load_or_build_tokenizer(self.recipe, self.tokenizer_kinds, match_family=True)

    def segments_example(self, store, a: tuple[int, int], b: tuple[int, int] | None = None) -> dict:
        """{"input_ids", "token_type_ids"[, "word_ids"]} of token ranges a [and b] of the shards in the
        tokenizer's template; word ids (from the stored word starts) only when the strategy needs them,
        B's numbered after A's so the two never share a word."""
        from tasks.shared.template import template_example

        has_b = b is not None and b[1] > b[0]
        ids_a = store.tokens(*a).tolist()
        ids_b = store.tokens(*b).tolist() if has_b else None
        if not self.needs_word_ids:
            return template_example(self.tokenizer, ids_a, ids_b)
        from pipelines.data.packing import words_from_starts

        wa = words_from_starts(store.word_starts(*a))
        seg_a = list(zip(ids_a, wa.tolist()))
        seg_b = None
        if has_b:
            wb = words_from_starts(store.word_starts(*b)) + (int(wa.max()) + 1 if len(wa) else 0)
            seg_b = list(zip(ids_b, wb.tolist()))
        return template_example(self.tokenizer, seg_a, seg_b)

    def mlm_output(self, model, batch: dict, **inputs):
        """model(**inputs), with sparse prediction when the recipe asks for it: then the MLM logits are
        [n_masked, vocab] in the order of selected_labels(batch["labels"], True)."""
        from tasks.shared.sparse_head import predict_only

        selected = None
        if self.params.sparse_prediction:
            selected = batch["mlm_positions"] if "mlm_positions" in batch else batch["labels"] != IGNORE_INDEX
        with predict_only(model, selected):
            return model(**inputs)

    def mlm_loss(self, logits: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor | None = None):
        """Summed cross-entropy of the MLM logits (sparse or dense) against the batch's labels
        (`positions`: the batch's "mlm_positions", which the sparse logits follow)."""
        from tasks.shared.losses import token_ce_sum
        from tasks.shared.sparse_head import selected_labels

        return token_ce_sum(logits, selected_labels(labels, self.params.sparse_prediction, positions))

    def full_sentence_splits(self, tokenizer):
        """(train, eval) views of RoBERTa's FULL-SENTENCES rows: the documents as one stream with the
        separator between them, cut into blocks of max_seq_length less the template's specials, each
        wrapped in the single-sequence template ({"input_ids"[, "word_ids"]})."""
        from pipelines.data.examples import ExampleView
        from pipelines.data.packing import PackedBlocks
        from pipelines.data.prepare import splits
        from tasks.shared.template import special_template, template_example

        self.setup_once(tokenizer)
        pre, post = special_template(tokenizer)["single"]
        width = self.recipe.data.max_seq_length - len(pre) - len(post)  # room for <s> ... </s>
        sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id

        def example(blocks, i: int) -> dict:
            if not self.needs_word_ids:
                return {"input_ids": template_example(tokenizer, blocks.read(i).tolist())["input_ids"]}
            ids, words = blocks.read(i, words=True)
            e = template_example(tokenizer, list(zip(ids.tolist(), words.tolist())))
            return {"input_ids": e["input_ids"], "word_ids": e["word_ids"]}

        def view(store, ids, split):
            blocks = PackedBlocks(store, ids, width, sep)
            return ExampleView(len(blocks), lambda i: example(blocks, i))

        return splits(self.recipe, tokenizer, view)

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
        p, tok = self.params, self.tokenizer
        specials = masking.special_mask(input_ids, tok)
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


@torch.no_grad()
def masked_accuracy(task, model, batches, logits_name: str) -> float:
    """Share of masked positions whose argmax prediction is the original token."""
    right = total = 0
    for b in batches:
        inputs = {k: v for k, v in b.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hits, n = masked_hits(getattr(task.mlm_output(model, b, **inputs), logits_name), b["labels"])
        right, total = right + hits, total + n
    return right / max(total, 1)


def masked_hits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(argmax hits, masked positions) of dense [B, T, V] or sparse [n_masked, V] MLM logits."""
    from tasks.shared.sparse_head import selected_labels

    sel = labels != -100
    predicted = logits.argmax(-1)[sel] if logits.dim() == 3 else logits.argmax(-1)
    return int((predicted == selected_labels(labels, True)).sum()), int(sel.sum())

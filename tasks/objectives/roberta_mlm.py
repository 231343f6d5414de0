"""Masked language modelling, RoBERTa style (Liu et al. 2019; Devlin et al. 2019) on
AutoModelForMaskedLM (any encoder family).

FULL-SENTENCES packing: the corpus's documents form one stream with </s> between documents, cut
into full blocks of max_seq_length - 2 that cross document boundaries (pipelines/data/packing.py
PackedBlocks: offsets into the prepared shards), each wrapped as <s> block </s> by the tokenizer's
template. Dynamic masking: the collator picks fresh positions every time a sequence is seen.
Selection strategy (single tokens, whole words, SpanBERT spans, ALBERT n-grams) and the 80/10/10
replacement live in tasks/shared/masking.py, shared by every MLM family.
"""

from __future__ import annotations

from tasks.base import Task, register
from tasks.shared.batching import has_padding, model_attention_mask, pad_stack
from tasks.shared.masked_lm import MaskingMixin, MlmParams, masked_accuracy
from tasks.shared.modeling import init_model
from tasks.shared.sparse_head import mlm_positions


@register("mlm")
class MaskedLM(MaskingMixin, Task):
    """RoBERTa-style MLM on AutoModelForMaskedLM (any encoder family)."""

    Params = MlmParams
    loss_weights = {"mlm": 1.0}

    def prepare(self, tokenizer):
        return self.full_sentence_splits(tokenizer)  # FULL-SENTENCES rows (tasks/shared/masked_lm.py)

    def collate(self, examples, generator):
        input_ids = pad_stack([e["input_ids"] for e in examples], self.tokenizer.pad_token_id)
        attention_mask = (input_ids != self.tokenizer.pad_token_id).long()
        corrupted, labels = self.masked(input_ids, examples, generator)
        return {"input_ids": corrupted, "attention_mask": attention_mask, "labels": labels,
                "mlm_positions": mlm_positions(labels), "padded": has_padding(attention_mask)}

    def build_model(self, tokenizer):
        from transformers import AutoModelForMaskedLM

        self.setup_once(tokenizer)
        return init_model(AutoModelForMaskedLM, self.recipe, tokenizer)

    def loss_counts(self, batch):
        return {"mlm": (batch["labels"] != -100).sum()}

    def loss(self, model, batch):
        out = self.mlm_output(model, batch, input_ids=batch["input_ids"], attention_mask=model_attention_mask(batch))
        return {"mlm": self.mlm_loss(out.logits, batch["labels"], batch.get("mlm_positions"))}

    def eval_metrics(self, model, batches):
        return {"mlm_accuracy": masked_accuracy(self, model, batches, "logits")}

    def flops_per_token(self, model):
        """Hand count (pipelines/engine/flops.py): the vocabulary projection at the masked share of positions
        with sparse prediction, at all of them without (mlm_probability slightly overstates the share:
        special tokens are never masked)."""
        from pipelines.engine.flops import mlm_flops_per_token

        p = self.params
        return mlm_flops_per_token(model, self.max_length, p.mlm_probability if p.sparse_prediction else 1.0)



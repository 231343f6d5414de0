"""Masked language modelling (Devlin et al. 2019; RoBERTa, Liu et al. 2019).

Dynamic masking: the collator picks fresh positions every time a sequence is seen (RoBERTa's
"dynamic masking"). Selection strategy (single tokens, whole words, SpanBERT spans, ALBERT
n-grams) and the 80/10/10 replacement are in tasks/masking.py and shared by every MLM family.
Plain MLM packs FULL-SENTENCES (RoBERTa): contiguous text up to max length, crossing document
boundaries with a separator token.
"""

from __future__ import annotations

from pipelines.data.tokenize import documents_for
from tasks.base import Task, register
from tasks.shared.batching import pad_stack, split_word_ids
from tasks.shared.losses import token_ce_sum
from tasks.shared.masking import MaskingMixin, MlmParams, masked_accuracy
from tasks.shared.modeling import init_model
from tasks.shared.template import special_template, template_example

# strategy -> distribution of unit lengths in words (index 0 = length 1)






@register("mlm")
class MaskedLM(MaskingMixin, Task):
    """RoBERTa-style MLM on AutoModelForMaskedLM (any encoder family)."""

    Params = MlmParams
    loss_weights = {"mlm": 1.0}

    def prepare(self, tokenizer):
        from tasks.shared.packing import pack_contiguous

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



"""BERT pretraining: masked LM + next sentence prediction (Devlin et al. 2019) on BertForPreTraining.

Pairs are built once per corpus pass as in BERT's create_pretraining_data.py (segment A from a
document, B its true continuation or, half the time, text from another document; dupe_factor
passes with different pairings); masking stays dynamic, fresh for every batch.
Input: [CLS] A [SEP] B [SEP], token_type_ids 0 for A and its [SEP], 1 for B and the final [SEP].
next_sentence_label: 0 = B continues A, 1 = B is random (transformers' convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipelines.data.tokenize import documents_for
from tasks.base import Task, register
from tasks.shared.batching import pad_stack
from tasks.shared.masking import MaskingMixin, MlmParams, masked_accuracy
from tasks.shared.modeling import init_model
from tasks.shared.template import template_example


@dataclass
class MlmNspParams(MlmParams):
    short_seq_prob: float = 0.1  # BERT: 10 % of pairs use a shorter random target length


def pair_examples(documents, tokenizer, max_seq_length: int, passes: int, seed: int, pair_fn, **kw) -> list[dict]:
    """[CLS] A [SEP] B [SEP] examples with token_type_ids and the pair label, `passes` times over
    (and word_ids when the documents' tokens are (id, word id) pairs: pair_fn only slices them)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(passes):
        for a, b, label in pair_fn(documents, max_seq_length - 3, rng, **kw):
            out.append({**template_example(tokenizer, a, b), "pair_label": int(label)})
    return out


class PairTask(MaskingMixin, Task):
    """MLM plus a sentence-pair classification head (NSP here, SOP for ALBERT)."""

    Params = MlmNspParams
    pair_term = "nsp"  # the name of the pair loss in logs: nsp | sop

    def pair_fn(self):
        raise NotImplementedError

    def prepare(self, tokenizer):
        self.tokenizer = tokenizer
        d, t = self.recipe.data, self.recipe.training
        train_docs, eval_docs = documents_for(self.recipe, tokenizer, word_ids=self.needs_word_ids)
        kw = {"short_seq_prob": self.params.short_seq_prob}
        train = pair_examples(train_docs, tokenizer, d.max_seq_length, d.dupe_factor, t.seed, self.pair_fn(), **kw)
        held = pair_examples(eval_docs, tokenizer, d.max_seq_length, 1, t.seed + 1, self.pair_fn(), **kw) \
            if len(eval_docs) > 1 else []
        return train, held

    def collate(self, examples, generator):
        pad = self.tokenizer.pad_token_id
        input_ids = pad_stack([e["input_ids"] for e in examples], pad)
        corrupted, labels = self.masked(input_ids, examples, generator)
        return {"input_ids": corrupted, "attention_mask": (input_ids != pad).long(),
                "token_type_ids": pad_stack([e["token_type_ids"] for e in examples], 0),
                "labels": labels, "pair_label": torch.tensor([e["pair_label"] for e in examples])}

    def build_model(self, tokenizer):
        from transformers import AutoModelForPreTraining

        self.tokenizer = tokenizer
        return init_model(AutoModelForPreTraining, self.recipe, tokenizer, type_vocab_size=2)

    def loss_counts(self, batch):
        return {"mlm": (batch["labels"] != -100).sum(), self.pair_term: torch.tensor(batch["pair_label"].numel())}

    def loss(self, model, batch):
        from tasks.shared.losses import token_ce_sum

        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"])
        pair_logits = out.seq_relationship_logits if hasattr(out, "seq_relationship_logits") else out.sop_logits
        return {"mlm": token_ce_sum(out.prediction_logits, batch["labels"]),
                self.pair_term: token_ce_sum(pair_logits, batch["pair_label"])}

    @torch.no_grad()
    def eval_metrics(self, model, batches):
        right = total = 0
        for b in batches:
            out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                        token_type_ids=b["token_type_ids"])
            logits = out.seq_relationship_logits if hasattr(out, "seq_relationship_logits") else out.sop_logits
            right += int((logits.argmax(-1) == b["pair_label"]).sum())
            total += b["pair_label"].numel()
        return {"mlm_accuracy": masked_accuracy(model, batches, "prediction_logits"),
                f"{self.pair_term}_accuracy": right / max(total, 1)}


@register("bert-mlm-nsp")
class BertMlmNsp(PairTask):
    tokenizer_kinds = ("wordpiece",)
    pair_term = "nsp"
    loss_weights = {"mlm": 1.0, "nsp": 1.0}

    def pair_fn(self):
        from tasks.shared.sentence_pairs import nsp_pairs

        return nsp_pairs

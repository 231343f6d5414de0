"""Causal language modelling, GPT style (Radford et al. 2019) on AutoModelForCausalLM.

Documents are joined by the end-of-text token (GPT-2's <|endoftext|>) into one stream cut into
full blocks of data.max_seq_length (pipelines.data.packing.pack_contiguous): no position is padding
except in the one short block that ends each split. labels = input_ids; the prediction of
position t+1 from positions <= t is scored here (the shift is done on the logits rather than
inside the model) so the loss is an exact SUM with an exact count of predicted tokens.
"""

from __future__ import annotations

import math

import torch

from pipelines.errors import LmforgeError
from tasks.base import Task, register
from tasks.shared.batching import pad_stack
from tasks.shared.losses import token_ce_sum
from tasks.shared.modeling import init_model


def shifted_ce_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy: logits at t predict labels at t+1 (-100 is ignored).
    The labels shift, not the logits: slicing [B, T, V] logits copies them (and their gradient) every
    step, about 15 % of a gpt2-tiny step on the CPU; the last position gets label -100 instead."""
    targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)
    return token_ce_sum(logits, targets)


@register("clm")
class CausalLM(Task):
    """Next-token prediction on packed contiguous blocks; eval adds perplexity."""

    loss_weights = {"clm": 1.0}

    def _eos_pad(self, tokenizer) -> tuple[int, int]:
        """(eos, pad) ids. eos separates documents; a tokenizer without a pad token (the released
        GPT-2's) pads with eos: the attention mask, built from lengths, marks padding, never the id."""
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        if eos is None:
            raise LmforgeError(f"recipe '{self.recipe.name}': task 'clm' needs a tokenizer with an eos token "
                               "(the separator between documents)")
        return eos, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos

    def prepare(self, tokenizer):
        from pipelines.data.examples import ExampleView
        from pipelines.data.packing import PackedBlocks
        from pipelines.data.prepare import splits

        self.setup_once(tokenizer)
        sep, _ = self._eos_pad(tokenizer)

        def view(store, ids, split):
            # drop_last=False: the short tail is kept (padded in collate), so a small held-out set still
            # gives eval examples; every other block is full.
            blocks = PackedBlocks(store, ids, self.recipe.data.max_seq_length, sep, drop_last=False)
            return ExampleView(len(blocks), lambda i: {"input_ids": blocks.read(i).tolist()})

        return splits(self.recipe, tokenizer, view)

    def collate(self, examples, generator):
        rows = [e["input_ids"] for e in examples]
        input_ids = pad_stack(rows, self._eos_pad(self.tokenizer)[1])
        attention_mask = pad_stack([[1] * len(r) for r in rows], 0)
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def build_model(self, tokenizer):
        from transformers import AutoModelForCausalLM

        self.setup_once(tokenizer)
        eos, pad = self._eos_pad(tokenizer)
        model = init_model(AutoModelForCausalLM, self.recipe, tokenizer, bos_token_id=eos, eos_token_id=eos,
                           pad_token_id=pad)
        # generate() reads these from the generation config; set them so an export generates
        # without "Setting pad_token_id to eos_token_id" warnings.
        model.generation_config.update(bos_token_id=eos, eos_token_id=eos, pad_token_id=pad)
        return model

    def loss_counts(self, batch):
        return {"clm": (batch["labels"][:, 1:] != -100).sum()}

    def loss(self, model, batch):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return {"clm": shifted_ce_sum(out.logits, batch["labels"])}

    @torch.no_grad()
    def loss_metrics(self, means):
        """Perplexity = exp(mean next-token loss over every eval token of every rank)."""
        return {"perplexity": math.exp(min(means["clm"], 50.0))}

    def flops_per_token(self, model):
        """Hand count (pipelines/engine/flops.py): full-vocabulary head at every position."""
        from pipelines.engine.flops import clm_flops_per_token

        return clm_flops_per_token(model, self.max_length)

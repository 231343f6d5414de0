"""Encoder-decoder plumbing (AutoModelForSeq2SeqLM), shared by the T5 / BART pretraining objectives
and the text-to-text fine-tuning tasks.

A collator returns input_ids / attention_mask / labels (-100 on padding); add_decoder_inputs adds
decoder_input_ids = labels shifted right behind the decoder start token (transformers'
shift_tokens_right, exactly what the models do with `labels`). The model is then called WITHOUT
labels, so it does not compute its own mean loss next to the summed one here.
"""

from __future__ import annotations

import torch

from tasks.base import Task
from tasks.shared.losses import token_ce_sum
from tasks.shared.modeling import init_model


def add_decoder_inputs(batch: dict[str, torch.Tensor], tokenizer, start_id: int) -> dict[str, torch.Tensor]:
    """`batch` with decoder_input_ids: its labels shifted right behind `start_id` (-100 -> pad)."""
    from transformers.models.bart.modeling_bart import shift_tokens_right  # generic, not BART-specific

    batch["decoder_input_ids"] = shift_tokens_right(batch["labels"], tokenizer.pad_token_id, start_id)
    return batch


def seq2seq_special_ids(tokenizer, start_id: int) -> dict[str, int]:
    """The ids the forward and generate() read: pad, eos and the decoder start token."""
    return {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
            "decoder_start_token_id": start_id}


def build_seq2seq_model(recipe, tokenizer, start_id: int, generation: dict | None = None, **fixed):
    """AutoModelForSeq2SeqLM (fresh from model.config, or model.name_or_path) with the special ids
    from the tokenizer, in the model config (which the forward reads) and in the generation config
    (which generate() reads; transformers 5 drops generation-only keys such as forced_bos_token_id
    from model configs)."""
    from transformers import AutoModelForSeq2SeqLM

    ids = seq2seq_special_ids(tokenizer, start_id)
    model = init_model(AutoModelForSeq2SeqLM, recipe, tokenizer, **ids, **fixed)
    model.generation_config.update(**ids, **(generation or {}))
    return model


def target_token_count(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The units the seq2seq loss averages over: the target tokens (labels other than -100)."""
    return (batch["labels"] != -100).sum()


def seq2seq_loss_sum(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy SUMMED over the target tokens (the engine divides by the global count)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                decoder_input_ids=batch["decoder_input_ids"])
    return token_ce_sum(out.logits, batch["labels"])


class Seq2SeqPretraining(Task):
    """Base of the AutoModelForSeq2SeqLM pretraining objectives; one loss term over the target tokens."""

    loss_weights = {"seq2seq": 1.0}

    def decoder_start_id(self, tokenizer) -> int:
        """The first decoder input (T5: pad, BART: </s>)."""
        raise NotImplementedError

    @property
    def term(self) -> str:
        return next(iter(self.loss_weights))

    def with_decoder_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return add_decoder_inputs(batch, self.tokenizer, self.decoder_start_id(self.tokenizer))

    def build_seq2seq(self, tokenizer, generation: dict | None = None, **fixed):
        self.setup_once(tokenizer)
        return build_seq2seq_model(self.recipe, tokenizer, self.decoder_start_id(tokenizer), generation, **fixed)

    def loss_counts(self, batch):
        return {self.term: target_token_count(batch)}

    def loss(self, model, batch):
        return {self.term: seq2seq_loss_sum(model, batch)}

"""What the encoder-decoder pretraining objectives share (T5 span corruption, BART denoising).

The collator of each objective returns input_ids / attention_mask / labels (-100 on padding);
this base adds decoder_input_ids = labels shifted right behind the decoder start token
(transformers' shift_tokens_right, exactly what the models do with `labels`). The model is then
called WITHOUT labels, so it does not compute its own mean loss next to the summed one here.
"""

from __future__ import annotations

import torch

from tasks.base import Task
from tasks.shared.losses import token_ce_sum
from tasks.shared.modeling import init_model


class Seq2SeqPretraining(Task):
    """Base of the AutoModelForSeq2SeqLM objectives; one loss term over the target tokens."""

    loss_weights = {"seq2seq": 1.0}

    def decoder_start_id(self, tokenizer) -> int:
        """The first decoder input (T5: pad, BART: </s>)."""
        raise NotImplementedError

    @property
    def term(self) -> str:
        return next(iter(self.loss_weights))

    def with_decoder_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        from transformers.models.bart.modeling_bart import shift_tokens_right  # generic, not BART-specific

        start = self.decoder_start_id(self.tokenizer)
        batch["decoder_input_ids"] = shift_tokens_right(batch["labels"], self.tokenizer.pad_token_id, start)
        return batch

    def build_seq2seq(self, tokenizer, generation: dict | None = None, **fixed):
        """AutoModelForSeq2SeqLM with the special ids from the tokenizer, in the model config (which the
        forward reads) and in the generation config (which generate() reads; transformers 5 drops
        generation-only keys such as forced_bos_token_id from model configs)."""
        from transformers import AutoModelForSeq2SeqLM

        self.tokenizer = tokenizer
        ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
               "decoder_start_token_id": self.decoder_start_id(tokenizer)}
        model = init_model(AutoModelForSeq2SeqLM, self.recipe, tokenizer, **ids, **fixed)
        model.generation_config.update(**ids, **(generation or {}))
        return model

    def loss_counts(self, batch):
        return {self.term: (batch["labels"] != -100).sum()}

    def loss(self, model, batch):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    decoder_input_ids=batch["decoder_input_ids"])
        return {self.term: token_ce_sum(out.logits, batch["labels"])}

"""Fine-tuning an encoder-decoder checkpoint (T5, BART) on (source text, target text) pairs.

What T5-style GLUE (tasks/finetuning/glue_t5.py) and summarization / translation
(tasks/finetuning/summarization.py) share: the checkpoint is required, sources and targets are
tokenized with the checkpoint's tokenizer (its template adds </s>, and <s> for BART), the collator
adds decoder_input_ids (the labels shifted right behind the checkpoint's decoder start token), the
loss is the cross-entropy SUMMED over target tokens (the engine divides by the target tokens of
the global batch), and evaluation generates text from the (possibly DDP/DeepSpeed-wrapped) model.
"""

from __future__ import annotations

import torch

from pipelines.errors import LmforgeError, one_line
from tasks.base import Task
from tasks.finetuning.common import checkpoint_config, fit_max_length
from tasks.shared.batching import attention_mask, pad_stack
from tasks.shared.encoder_decoder import add_decoder_inputs, seq2seq_loss_sum, seq2seq_special_ids, target_token_count

_TOKEN_KEYS = ("input_ids", "labels")
_T5_TYPES = ("t5", "mt5", "umt5")


class TextToTextFinetune(Task):
    """Base of the seq2seq fine-tuning tasks; subclasses implement prepare() and eval_metrics() and
    set self.max_target_length (in __init__ or setup) before encode() runs."""

    loss_weights = {"loss": 1.0}
    tokenizer_kinds = ("unigram", "bpe", "wordpiece")  # whatever the checkpoint ships with

    def __init__(self, recipe):
        super().__init__(recipe)
        path = recipe.model.name_or_path
        if not path:
            raise LmforgeError(f"recipe '{recipe.name}': task '{self.name}' fine-tunes a checkpoint; "
                               "set model.name_or_path (--model)")
        self.config = checkpoint_config(path)
        if not self.config.is_encoder_decoder:
            raise LmforgeError(f"--model {path}: model_type '{self.config.model_type}' is not an encoder-decoder; "
                               f"task '{self.name}' needs a T5 or BART checkpoint")
        t = recipe.training
        if self.config.model_type in _T5_TYPES and t.mixed_precision == "fp16" and not t.allow_fp16:
            # the same overflow as in T5 pretraining (tasks/objectives/t5_span_corruption.py): fp16 turns T5's loss NaN
            raise LmforgeError(f"recipe '{recipe.name}', training.mixed_precision: fp16 is refused for T5 (its "
                               "activations overflow fp16); use bf16, or set training.allow_fp16=true")

    def setup(self, tokenizer):
        super().setup(tokenizer)
        self.max_length = fit_max_length(self.recipe, tokenizer, self.config)

    def decoder_start_id(self, tokenizer) -> int:
        """The checkpoint's own start token (T5: <pad>, BART: </s>); <pad> if it names none."""
        start = self.config.decoder_start_token_id
        return tokenizer.pad_token_id if start is None else start

    def decoder_length(self, wanted: int, start: int = 0) -> int:
        """`wanted` decoder positions, cut so that `start` + them fit the learned position table (BART:
        max_position_embeddings; T5's relative positions have no limit). An untrained BART that never
        emits </s> would otherwise generate past the table and fail with an index error."""
        limit = getattr(self.config, "max_position_embeddings", None)
        return wanted if not limit else min(wanted, limit - start)

    def encode(self, sources: list[str], targets: list[str], **columns) -> list[dict]:
        """Examples {input_ids, labels, **columns}: sources cut to self.max_length (data.max_seq_length
        within the checkpoint's limit), targets to self.max_target_length (the tokenizer's template
        keeps the final </s> when it cuts)."""
        tok = self.tokenizer
        src = tok(sources, truncation=True, max_length=self.max_length)["input_ids"]
        tgt = tok(text_target=targets, truncation=True,
                  max_length=self.decoder_length(self.max_target_length))["input_ids"]
        return [{"input_ids": s, "labels": t, **{k: v[i] for k, v in columns.items()}}
                for i, (s, t) in enumerate(zip(src, tgt))]

    def example_lengths(self, train_data):
        """Source lengths (training.group_by_length), as HF's group_by_length groups by input_ids."""
        return [len(e["input_ids"]) for e in train_data]

    def collate(self, examples, generator):
        input_ids = pad_stack([e["input_ids"] for e in examples], self.tokenizer.pad_token_id)
        lengths = torch.tensor([len(e["input_ids"]) for e in examples])
        batch = {"input_ids": input_ids,
                 "attention_mask": attention_mask(lengths, input_ids.size(1)),
                 "labels": pad_stack([e["labels"] for e in examples], -100)}
        # per-example bookkeeping for eval_metrics (split id, gold label, reference index)
        batch.update({k: torch.tensor([e[k] for e in examples]) for k in examples[0] if k not in _TOKEN_KEYS})
        return add_decoder_inputs(batch, self.tokenizer, self.decoder_start_id(self.tokenizer))

    def build_model(self, tokenizer):
        """The checkpoint's AutoModelForSeq2SeqLM; generate() gets the tokenizer's special ids."""
        from transformers import AutoModelForSeq2SeqLM

        from tasks.shared.modeling import check_vocab

        path = self.recipe.model.name_or_path
        try:
            model = AutoModelForSeq2SeqLM.from_pretrained(path, **self.recipe.model.config)  # as GlueTask's
        except (OSError, ValueError) as exc:
            raise LmforgeError(f"model.name_or_path: cannot load '{path}' as AutoModelForSeq2SeqLM: "
                               f"{one_line(exc)}") from None
        check_vocab(model, tokenizer, f"recipe '{self.recipe.name}'")
        model.generation_config.update(**seq2seq_special_ids(tokenizer, self.decoder_start_id(tokenizer)))
        return model

    def loss_counts(self, batch):
        return {"loss": target_token_count(batch)}

    def loss(self, model, batch):
        return {"loss": seq2seq_loss_sum(model, batch)}

    @torch.no_grad()
    def generate(self, model, batch: dict, **generation) -> tuple[list[str], list[int]]:
        """Decoded generations for a batch and their lengths in tokens (special tokens left out).
        generate() lives on the transformers model, not on its DDP / DeepSpeed wrapper;
        extract_model_from_parallel keeps accelerate's autocast wrapper, so generation runs in the
        training precision. ZeRO-3 needs every rank in generate(); transformers turns synced_gpus on
        by itself under ZeRO-3 with more than one process."""
        from accelerate.utils import extract_model_from_parallel

        net = extract_model_from_parallel(model)
        if generation.get("num_beams", 1) == 1:  # beam-only settings make generate() warn under greedy search
            generation = {k: v for k, v in generation.items() if k not in ("length_penalty", "early_stopping")}
        if "max_new_tokens" in generation:  # the decoder start token takes the first position
            generation["max_new_tokens"] = self.decoder_length(generation["max_new_tokens"], start=1)
        out = net.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], do_sample=False,
                           **generation)
        special = torch.tensor(sorted(set(self.tokenizer.all_special_ids)), device=out.device)
        lengths = (~torch.isin(out, special)).sum(1).tolist()
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)], lengths

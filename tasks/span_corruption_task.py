"""T5 span corruption pretraining (Raffel et al. 2020) on AutoModelForSeq2SeqLM (T5ForConditionalGeneration).

Documents are concatenated with no separator (T5's C4 stream) and cut into raw blocks of
`tokens_length` ids, the length whose corrupted encoder input is exactly data.max_seq_length
including the final </s> (compute_t5_input_and_target_lengths: 512 -> 568 raw tokens, 114
target tokens). The collator draws a fresh noise mask per batch (tasks/span_corruption.py).
The decoder starts from <pad> (T5's convention). The T5 v1.1 architecture (gated-GELU,
untied embeddings, no dropout in pretraining) is set in the recipes; untying needs help in
transformers 5 (untie_lm_head below).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.errors import LmforgeError
from tasks.base import register
from tasks.mlm import documents_for
from tasks.seq2seq_pretraining import Seq2SeqPretraining


@dataclass
class SpanCorruptionParams:
    noise_density: float = 0.15  # share of raw tokens that become targets
    mean_noise_span_length: float = 3.0  # mean length of a noise span


def sentinel_ids(tokenizer) -> list[int]:
    """Ids of <extra_id_0>, <extra_id_1>, ... as far as the tokenizer has them (T5: 100)."""
    vocab = tokenizer.get_vocab()
    out: list[int] = []
    while f"<extra_id_{len(out)}>" in vocab:
        out.append(vocab[f"<extra_id_{len(out)}>"])
    return out


@register("t5-span-corruption")
class T5SpanCorruption(Seq2SeqPretraining):
    Params = SpanCorruptionParams
    loss_weights = {"span_corruption": 1.0}
    tokenizer_kinds = ("unigram", "bpe", "wordpiece")  # any kind, as long as it has the sentinels

    def __init__(self, recipe):
        super().__init__(recipe)
        from tasks.span_corruption import compute_t5_input_and_target_lengths

        t = recipe.training
        if t.mixed_precision == "fp16" and not t.allow_fp16:
            # T5's feed-forward activations exceed fp16's range (65504): inf, then NaN losses. T5 was
            # trained in bfloat16 on TPUs; transformers' T5 even clamps infs when run in fp16.
            raise LmforgeError(f"recipe '{recipe.name}', training.mixed_precision: fp16 is refused for T5 (its "
                               "activations overflow fp16 and the loss turns NaN); use bf16, or set "
                               "training.allow_fp16=true to force it")
        p = self.params
        self.tokens_length, self.targets_length = compute_t5_input_and_target_lengths(
            recipe.data.max_seq_length, p.noise_density, p.mean_noise_span_length)
        # input = raw - noise + spans + 1 and target = noise + spans + 1, so spans follow from the lengths
        self.num_spans = (recipe.data.max_seq_length + self.targets_length - self.tokens_length - 2) // 2

    def decoder_start_id(self, tokenizer) -> int:
        return tokenizer.pad_token_id

    def prepare(self, tokenizer):
        from tasks.packing import pack_contiguous

        self.tokenizer = tokenizer
        self.sentinels = sentinel_ids(tokenizer)
        if len(self.sentinels) < self.num_spans or tokenizer.eos_token_id is None:
            raise LmforgeError(f"recipe '{self.recipe.name}': task 't5-span-corruption' needs an eos token and "
                               f"{self.num_spans} sentinels <extra_id_0>.. at data.max_seq_length "
                               f"{self.recipe.data.max_seq_length}; the tokenizer has {len(self.sentinels)}")
        out = []
        for split, docs in zip(("train", "eval"), documents_for(self.recipe, tokenizer)):
            flat = [[t for s in d for t in s] for d in docs]
            # train: only full blocks, so every encoder input is exactly max_seq_length; eval keeps the
            # short tail so a small held-out set still gives examples.
            blocks = pack_contiguous(flat, self.tokens_length, None, drop_last=split == "train")
            out.append([{"tokens": b} for b in blocks])
        return out[0], out[1]

    def collate(self, examples, generator):
        from tasks.span_corruption import t5_span_corruption_batch

        tok, p = self.tokenizer, self.params
        batch = t5_span_corruption_batch([e["tokens"] for e in examples], self.sentinels, tok.eos_token_id,
                                         tok.pad_token_id, generator, p.noise_density, p.mean_noise_span_length)
        return self.with_decoder_inputs(batch)

    def build_model(self, tokenizer):
        model = self.build_seq2seq(tokenizer)
        if self.recipe.model.config.get("tie_word_embeddings") is False and not self.recipe.model.name_or_path:
            untie_lm_head(model)
        return model


def untie_lm_head(model) -> None:
    """Give the LM head its own weights (T5 v1.1). transformers 5's T5Config forces
    tie_word_embeddings=True and reads `False` only as "do not scale the decoder output by
    d_model**-0.5"; the head stays tied to the input embedding. A head with its own values is
    saved as its own tensor and from_pretrained keeps it untied (it logs a warning that the saved
    head and embedding differ)."""
    import torch

    weight = torch.empty_like(model.lm_head.weight)
    # N(0, 1/d_model): Mesh TensorFlow's dense-layer default (variance scaling, fan-in) for T5 v1.1's
    # untied logits layer, so initial logits have unit scale. transformers' _init_weights would draw
    # N(0, 1): logits of std sqrt(d_model) and a first loss of ~26 instead of ~ln(vocab) at d_model 64.
    torch.nn.init.normal_(weight, std=model.config.initializer_factor * model.config.d_model ** -0.5)
    model.lm_head.weight = torch.nn.Parameter(weight)

"""T5 span corruption pretraining (Raffel et al. 2020) on AutoModelForSeq2SeqLM (T5ForConditionalGeneration).

Documents are concatenated with no separator (T5's C4 stream) and cut into raw blocks of
`tokens_length` ids (pipelines/data/packing.py PackedBlocks), the length whose corrupted encoder
input is exactly data.max_seq_length including the final </s> (compute_t5_input_and_target_lengths:
512 -> 568 raw tokens, 114 target tokens). The collator draws a fresh noise mask per batch (below),
and the task adds decoder_input_ids = labels shifted right behind <pad> (T5's start token;
tasks/shared/encoder_decoder.py), so the model is called without labels and computes no mean loss
of its own. The T5 v1.1 architecture (gated-GELU, untied embeddings, no dropout in pretraining)
is set in the recipes; untying needs help in transformers 5 (untie_lm_head below).

Span corruption itself (sec. 3.1.4 and 3.3): a packed block of `tokens_length` ids gets a noise
mask of ~15 % of its tokens in spans of mean length 3; each noise span becomes ONE sentinel in the
encoder input, and the target lists every sentinel followed by the span it replaced, then </s>:

    tokens  : Thank you for inviting me to your party last week .      (the paper's Figure 2)
    input   : Thank you <X> me to your party <Y> week . </s>
    target  : <X> for inviting <Y> last <Z> </s>

(<X>, <Y>, <Z> = <extra_id_0>, <extra_id_1>, <extra_id_2>; T5's random masks always end with
noise, so the final <Z> only appears for hand-made masks like this one.)

Hand-written because no library ships it for PyTorch (transformers has no T5 span collator;
the reference is TF code in t5.data.preprocessors, ported to numpy in transformers'
examples/flax/language-modeling/run_t5_mlm_flax.py). The mask follows
t5.data.preprocessors.random_spans_noise_mask exactly: the noise and non-noise token counts
are fixed by the length, each is cut into the same number of spans by a uniformly random
composition, and the spans interleave starting with non-noise (so it also ends with noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipelines.errors import LmforgeError
from tasks.base import register
from tasks.shared.batching import pad_stack
from tasks.shared.encoder_decoder import Seq2SeqPretraining
from tasks.shared.rng import numpy_rng


def _span_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(num_noise_tokens, num_noise_spans) for a block of `length` tokens, as T5 computes them.
    Python's round and tf.round both round half to even, so the counts match T5 bit for bit."""
    num_noise = int(round(length * noise_density))
    # T5 avoids degenerate masks: at least one noise and one non-noise token, at least one span.
    num_noise = min(max(num_noise, 1), length - 1)
    num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
    return num_noise, num_spans


def compute_t5_input_and_target_lengths(inputs_length: int, noise_density: float = 0.15,
                                        mean_noise_span_length: float = 3.0) -> tuple[int, int]:
    """(tokens_length, targets_length): the raw block length to pack so that, after corruption,
    the encoder input is exactly `inputs_length` ids including the final </s>, and the target
    length that goes with it. Same search as t5.data.preprocessors / run_t5_mlm_flax
    (512 -> (568, 114) at the defaults)."""
    if inputs_length < 2:
        raise LmforgeError(f"span corruption: inputs_length must be >= 2, got {inputs_length}")
    if not 0.0 < noise_density < 1.0 or mean_noise_span_length < 1.0:
        raise LmforgeError(f"span corruption: need 0 < noise_density < 1 and mean_noise_span_length >= 1, "
                           f"got {noise_density} and {mean_noise_span_length}")

    def lengths(tokens_length: int) -> tuple[int, int]:
        num_noise, num_spans = _span_counts(tokens_length, noise_density, mean_noise_span_length)
        # input: non-noise tokens + one sentinel per span + </s>; target: noise + sentinels + </s>
        return tokens_length - num_noise + num_spans + 1, num_noise + num_spans + 1

    # The input length grows by 0 or 1 per extra raw token, so the largest block whose input
    # fits has an input of exactly inputs_length.
    tokens_length = inputs_length
    while lengths(tokens_length + 1)[0] <= inputs_length:
        tokens_length += 1
    _, targets_length = lengths(tokens_length)
    # T5's "minor hack" at density 0.5: make the targets no longer than the (round) inputs length.
    if noise_density == 0.5 and targets_length > inputs_length:
        tokens_length -= 1
        targets_length -= 1
    return tokens_length, targets_length


def _random_segmentation(num_items: int, num_segments: int, num_rows: int,
                         rng: np.random.Generator) -> np.ndarray:
    """(num_rows, num_segments) positive segment lengths summing to num_items: a uniformly random
    composition, i.e. T5's shuffle of (num_segments - 1) "segment starts" over num_items - 1 gaps."""
    if num_segments == 1:
        return np.full((num_rows, 1), num_items, dtype=np.int64)
    keys = rng.random((num_rows, num_items - 1))
    # the num_segments-1 smallest keys pick the cut points: a uniform subset of the gaps
    cuts = np.sort(np.argpartition(keys, num_segments - 2, axis=1)[:, : num_segments - 1], axis=1) + 1
    bounds = np.concatenate([np.zeros((num_rows, 1), np.int64), cuts,
                             np.full((num_rows, 1), num_items, np.int64)], axis=1)
    return np.diff(bounds, axis=1)


def random_spans_noise_mask(length: int, noise_density: float = 0.15, mean_noise_span_length: float = 3.0,
                            generator: torch.Generator | np.random.Generator | None = None,
                            num_rows: int | None = None) -> np.ndarray:
    """Boolean noise mask of shape (length,) or, with num_rows, (num_rows, length): True = noise.

    num_noise = round(length * density) and num_spans = round(num_noise / mean_span) are the same for
    every row; only where the spans fall is random. Row starts with non-noise, ends with noise."""
    if generator is None:
        raise LmforgeError("random_spans_noise_mask needs an explicit generator (reproducibility)")
    rng = numpy_rng(generator)
    rows = 1 if num_rows is None else num_rows
    true_length = length
    length = max(length, 2)  # T5 computes a length-2 mask and cuts it for a 1-token block
    num_noise, num_spans = _span_counts(length, noise_density, mean_noise_span_length)
    noise_lengths = _random_segmentation(num_noise, num_spans, rows, rng)
    nonnoise_lengths = _random_segmentation(length - num_noise, num_spans, rows, rng)
    interleaved = np.stack([nonnoise_lengths, noise_lengths], axis=2).reshape(rows, 2 * num_spans)
    span_starts = np.cumsum(interleaved, axis=1)[:, :-1]
    indicator = np.zeros((rows, length), dtype=np.int64)
    np.put_along_axis(indicator, span_starts, 1, axis=1)  # starts are distinct within a row
    mask = (np.cumsum(indicator, axis=1) % 2 == 1)[:, :true_length]
    return mask[0] if num_rows is None else mask


def corrupt(ids, mask, sentinel_ids, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, labels) for one block (1-D) or several blocks with equal noise counts (2-D).

    Noise span k (left to right) becomes sentinel_ids[k] in the input; the labels are
    sentinel_ids[k] + span k for every span, then </s>. sentinel_ids is the list in order
    <extra_id_0>, <extra_id_1>, ...: T5 counts them DOWN from the top of the vocabulary, so the
    ids are taken as given rather than assumed to be consecutive.

    T5's random masks always end with noise. A mask ending with non-noise gets one more sentinel
    before the labels' </s>, as T5's nonnoise_span_to_unique_sentinel does (the paper's Figure 2:
    targets "<X> for inviting <Y> last <Z>")."""
    ids = np.asarray(ids, dtype=np.int64)
    mask = np.asarray(mask, dtype=bool)
    if ids.shape != mask.shape:
        raise ValueError(f"ids {ids.shape} and mask {mask.shape} differ in shape")
    if ids.ndim == 1:
        return tuple(x[0] for x in corrupt(ids[None], mask[None], sentinel_ids, eos_id))
    rows = len(ids)
    # </s> is appended as a noise position: it opens a (final) span exactly when the block
    # ends with non-noise, which gives the trailing sentinel in the labels.
    ids = np.concatenate([ids, np.full((rows, 1), eos_id, np.int64)], axis=1)
    mask = np.concatenate([mask, np.ones((rows, 1), bool)], axis=1)
    previous = np.zeros_like(mask)
    previous[:, 1:] = mask[:, :-1]
    span_start = mask & ~previous
    span_index = np.cumsum(span_start, axis=1) - 1
    num_sentinels = int(span_start.sum(axis=1).max(initial=0))
    sentinels = np.asarray(sentinel_ids, dtype=np.int64)
    if num_sentinels > len(sentinels):
        raise LmforgeError(f"span corruption: a block needs {num_sentinels} sentinels but the tokenizer has "
                           f"{len(sentinels)}: lower data.max_seq_length or raise mean_noise_span_length")
    sentinel_at = sentinels[np.clip(span_index, 0, None)] if len(sentinels) else np.zeros_like(ids)
    # Two slots per position, [sentinel if a span starts here, token]; each output keeps a subset.
    slots = np.stack([sentinel_at, ids], axis=2).reshape(rows, -1)
    keep_in = np.stack([span_start, ~mask], axis=2)
    keep_in[:, -1] = (False, True)  # the input keeps </s> and no sentinel for it
    keep_out = np.stack([span_start, mask], axis=2)
    return _select_rows(slots, keep_in.reshape(rows, -1)), _select_rows(slots, keep_out.reshape(rows, -1))


def _select_rows(slots: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """slots[keep] row by row. Rows must keep the same count (true for T5 masks of one length)."""
    counts = keep.sum(axis=1)
    if (counts != counts[0]).any():
        raise ValueError("corrupt() on a 2-D batch needs the same noise counts in every row; "
                         "call it row by row for blocks of different lengths")
    return slots[keep].reshape(len(slots), -1)


def t5_span_corruption_batch(examples, sentinel_ids, eos_id: int, pad_id: int,
                             generator: torch.Generator | np.random.Generator,
                             noise_density: float = 0.15, mean_noise_span_length: float = 3.0
                             ) -> dict[str, torch.Tensor]:
    """Corrupt a micro-batch of packed blocks (token-id lists, normally all `tokens_length` long).

    Returns LongTensors input_ids / attention_mask / labels; labels are padded with -100 (ignored by
    the loss); the task adds decoder_input_ids. Blocks of one length are corrupted in one vectorised pass."""
    rng = numpy_rng(generator)
    by_length: dict[int, list[int]] = {}
    for i, ex in enumerate(examples):
        by_length.setdefault(len(ex), []).append(i)
    inputs: list[np.ndarray] = [None] * len(examples)
    labels: list[np.ndarray] = [None] * len(examples)
    for length, rows in sorted(by_length.items()):
        ids = np.asarray([examples[i] for i in rows], dtype=np.int64).reshape(len(rows), length)
        mask = random_spans_noise_mask(length, noise_density, mean_noise_span_length, rng, num_rows=len(rows))
        inp, lab = corrupt(ids, mask, sentinel_ids, eos_id)
        for k, i in enumerate(rows):
            inputs[i], labels[i] = inp[k], lab[k]
    return {"input_ids": pad_stack(inputs, pad_id),
            "attention_mask": pad_stack([np.ones(len(x), np.int64) for x in inputs], 0),
            "labels": pad_stack(labels, -100)}


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

    def setup(self, tokenizer):
        """The tokenizer and its sentinels, which collate() needs."""
        self.tokenizer = tokenizer
        self.sentinels = sentinel_ids(tokenizer)
        if len(self.sentinels) < self.num_spans or tokenizer.eos_token_id is None:
            raise LmforgeError(f"recipe '{self.recipe.name}': task 't5-span-corruption' needs an eos token and "
                               f"{self.num_spans} sentinels <extra_id_0>.. at data.max_seq_length "
                               f"{self.recipe.data.max_seq_length}; the tokenizer has {len(self.sentinels)}")

    def prepare(self, tokenizer):
        from pipelines.data.examples import ExampleView
        from pipelines.data.packing import PackedBlocks
        from pipelines.data.prepare import splits

        self.setup_once(tokenizer)

        def view(store, ids, split):
            # train: only full blocks, so every encoder input is exactly max_seq_length; eval keeps the
            # short tail so a small held-out set still gives examples.
            blocks = PackedBlocks(store, ids, self.tokens_length, None, drop_last=split == "train")
            return ExampleView(len(blocks), lambda i: {"tokens": blocks.read(i).tolist()})

        return splits(self.recipe, tokenizer, view)

    def collate(self, examples, generator):
        tok, p = self.tokenizer, self.params
        batch = t5_span_corruption_batch([e["tokens"] for e in examples], self.sentinels, tok.eos_token_id,
                                         tok.pad_token_id, generator, p.noise_density, p.mean_noise_span_length)
        return self.with_decoder_inputs(batch)

    def build_model(self, tokenizer):
        model = self.build_seq2seq(tokenizer)
        if self.recipe.model.config.get("tie_word_embeddings") is False and not self.recipe.model.name_or_path:
            untie_lm_head(model)
        return model

    def flops_per_token(self, model):
        """Per encoder input token (tokens_in counts the encoder's attention mask): inputs of
        max_seq_length, decoder targets of targets_length (pipelines/engine/flops.py)."""
        from pipelines.engine.flops import seq2seq_flops_per_token

        return seq2seq_flops_per_token(model, self.max_length, self.targets_length)


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

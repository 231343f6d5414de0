"""BART denoising pretraining (Lewis et al. 2019) on AutoModelForSeq2SeqLM (BartForConditionalGeneration).

Examples are runs of whole sentences of one document, at most data.max_seq_length - 2 tokens
(pipelines/data/packing.py SentenceRuns, fairseq's complete_doc). The collator corrupts them afresh per
batch (below: text infilling 30 % with Poisson(3) spans and full sentence
permutation, the final BART setting; token deletion and document rotation off by default) and
the decoder reconstructs the original <s> text </s>.

Special ids follow facebook/bart-base: the decoder starts from </s> (fairseq's prev_output_tokens),
generate() forces <s> as the first token and </s> at the maximum length.

The noise (sec. 2.2; fairseq data/denoising_dataset.py)

An example is a list of sentences of token ids (no special tokens), consecutive sentences of one
document (SentenceRuns makes them). The decoder target is the original text,
<s> sentences </s>; the encoder input is the same text corrupted, in fairseq's order:

1. sentence permutation: ceil(n_sentences * ratio) sentences shuffled among their own places
   (ratio 1 = a uniformly random order, the final BART setting);
2. token deletion (optional): ceil(n * ratio) tokens chosen uniformly are removed;
3. text infilling: ceil(n * 0.3) tokens are covered by spans whose lengths are Poisson(3)
   (the last one trimmed to the budget); each span becomes ONE <mask>, and a zero-length span
   INSERTS a <mask>;
4. document rotation (optional, with probability ratio): the text starts at a uniform token.

Deliberate differences from fairseq, so the paper's numbers hold exactly: fairseq draws span
starts independently, so spans can overlap and merge (fewer than 30 % tokens masked, fewer
masks than spans); here the spans are placed without overlap, uniformly among the kept tokens,
so exactly the budget is masked and every span leaves exactly one <mask>. Spans are counted in
tokens (fairseq counts whole words for BPE vocabularies), and fairseq's --mask-random (a
random token instead of <mask>) is not implemented. Zero-length spans are capped so the input
is never longer than the target (fairseq's inserts can grow it).

Hand-written: transformers has no BART infilling collator (its run_bart_dlm_flax example is
Flax-only and also places spans independently).

The task adds decoder_input_ids = labels shifted right behind </s> (fairseq's prev_output_tokens;
tasks/shared/encoder_decoder.py), so the model is called without labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pipelines.errors import LmforgeError
from tasks.base import register
from tasks.shared.batching import pad_stack
from tasks.shared.encoder_decoder import Seq2SeqPretraining
from tasks.shared.rng import numpy_rng


@dataclass(frozen=True)
class BartNoise:
    """Noising strengths; the defaults are the final BART model's (infilling + permutation)."""

    mask_ratio: float = 0.3  # fraction of tokens covered by infilling spans
    poisson_lambda: float = 3.0  # mean span length
    permute_sentence_ratio: float = 1.0  # fraction of sentences shuffled
    deletion_ratio: float = 0.0  # fraction of tokens deleted
    rotate_ratio: float = 0.0  # probability of rotating the document

    def check(self, where: str = "BART noise") -> BartNoise:
        for name in ("mask_ratio", "permute_sentence_ratio", "deletion_ratio", "rotate_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise LmforgeError(f"{where}: {name} must be in [0, 1], got {value}")
        if self.poisson_lambda <= 0:
            raise LmforgeError(f"{where}: poisson_lambda must be > 0, got {self.poisson_lambda}")
        if self.mask_ratio + self.deletion_ratio > 1.0:
            raise LmforgeError(f"{where}: mask_ratio + deletion_ratio must be <= 1, got "
                               f"{self.mask_ratio} + {self.deletion_ratio}")
        return self


@dataclass
class NoiseRecord:
    """What was done to one example, enough to undo it (tests, debugging)."""

    order: np.ndarray  # input sentence j is original sentence order[j]
    deleted: np.ndarray  # positions removed from the permuted text (sorted)
    spans: np.ndarray  # (K, 2) [start, length] in the text after deletion, left to right; length 0 = insert
    rotation: int  # input text = t[rotation:] + t[:rotation], t = text after infilling


def permute_sentences(num_sentences: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """fairseq's permute_sentences: ceil(n * ratio) sentences, chosen uniformly, shuffled among
    their own positions. Returns order: new position j holds original sentence order[j]."""
    order = np.arange(num_sentences)
    num_to_permute = math.ceil(num_sentences * ratio)
    chosen = rng.permutation(num_sentences)[:num_to_permute]
    order[chosen] = chosen[rng.permutation(num_to_permute)]
    return order


def sample_deletions(num_tokens: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of ceil(n * ratio) tokens chosen uniformly without replacement."""
    count = math.ceil(num_tokens * ratio)
    return np.sort(rng.choice(num_tokens, size=count, replace=False)) if count else np.zeros(0, np.int64)


def _poisson_lengths(budget: int, poisson_lambda: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson span lengths drawn until they cover `budget`, the last trimmed so they sum to it
    exactly (fairseq's 'trim to masking budget')."""
    lengths = np.zeros(0, np.int64)
    while lengths.sum() < budget:
        chunk = int(budget / poisson_lambda * 1.2) + 8
        lengths = np.concatenate([lengths, rng.poisson(poisson_lambda, size=chunk)])
    cum = np.cumsum(lengths)
    last = int(np.argmax(cum >= budget))
    lengths = lengths[: last + 1].copy()
    lengths[last] = budget - (cum[last - 1] if last else 0)
    return lengths


def sample_infilling_spans(num_tokens: int, mask_ratio: float, poisson_lambda: float,
                           rng: np.random.Generator) -> np.ndarray:
    """(K, 2) non-overlapping [start, length] spans, left to right, covering exactly
    ceil(n * mask_ratio) tokens; lengths ~ Poisson(lambda), zero-length spans are inserts.

    Placement: the K spans and the n - budget kept tokens are arranged in a uniformly random
    order (K slots out of n - budget + K), with the span lengths in random order."""
    budget = math.ceil(num_tokens * mask_ratio)
    if budget == 0:
        return np.zeros((0, 2), np.int64)
    lengths = _poisson_lengths(budget, poisson_lambda, rng)
    # Each span leaves one <mask>: keep #spans <= budget so the input never outgrows the text.
    zeros = np.flatnonzero(lengths == 0)
    excess = len(lengths) - budget
    if excess > 0:
        lengths = np.delete(lengths, zeros[-excess:])
    lengths = rng.permutation(lengths)
    k = len(lengths)
    slots = np.sort(rng.choice(num_tokens - budget + k, size=k, replace=False))
    kept_before = slots - np.arange(k)
    starts = kept_before + np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.stack([starts, lengths], axis=1).astype(np.int64)


def apply_infilling(tokens: np.ndarray, spans: np.ndarray, mask_id: int) -> np.ndarray:
    """tokens with each span replaced by one mask_id (a zero-length span inserts one)."""
    starts, lengths = spans[:, 0], spans[:, 1]
    covered = np.zeros(len(tokens), dtype=bool)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    covered[np.repeat(starts, lengths) + offsets] = True
    kept_before = starts - (np.cumsum(lengths) - lengths)
    return np.insert(tokens[~covered], kept_before, mask_id)


def _truncate(sentences: list, max_tokens: int) -> list[np.ndarray]:
    """Non-empty sentences, cut so their total is at most max_tokens."""
    out, size = [], 0
    for sent in sentences:
        sent = np.asarray(sent, dtype=np.int64)[: max_tokens - size]
        if len(sent):
            out.append(sent)
            size += len(sent)
    return out


def bart_noise(sentences: list[list[int]], bos_id: int, eos_id: int, mask_id: int,
               rng: torch.Generator | np.random.Generator, noise: BartNoise = BartNoise(),
               max_length: int = 1024) -> tuple[np.ndarray, np.ndarray, NoiseRecord]:
    """(input ids, target ids, record) for one example; both ids start <s> and end </s>, the
    target is at most max_length long (sentences beyond it are cut) and the input never longer."""
    rng = numpy_rng(rng)
    sents = _truncate(sentences, max_length - 2)
    if not sents:
        raise LmforgeError("BART noise: an example has no tokens")
    target = np.concatenate([[bos_id], *sents, [eos_id]]).astype(np.int64)
    order = permute_sentences(len(sents), noise.permute_sentence_ratio, rng)
    text = np.concatenate([sents[i] for i in order])
    deleted = sample_deletions(len(text), noise.deletion_ratio, rng)
    text = np.delete(text, deleted)
    spans = sample_infilling_spans(len(text), noise.mask_ratio, noise.poisson_lambda, rng)
    text = apply_infilling(text, spans, mask_id)
    rotation = 0
    if noise.rotate_ratio > 0 and rng.random() < noise.rotate_ratio:
        # fairseq's add_rolling_noise: shift uniform in [0, len] (len and 0 both leave the text as is)
        rotation = int(rng.integers(0, len(text) + 1)) % max(len(text), 1)
        text = np.concatenate([text[rotation:], text[:rotation]])
    source = np.concatenate([[bos_id], text, [eos_id]]).astype(np.int64)
    return source, target, NoiseRecord(order, deleted, spans, rotation)


def bart_denoising_batch(examples: list[list[list[int]]], bos_id: int, eos_id: int, mask_id: int,
                         pad_id: int, max_length: int, generator: torch.Generator | np.random.Generator,
                         noise: BartNoise = BartNoise()) -> dict[str, torch.Tensor]:
    """Noise a micro-batch of examples (each a list of sentences of ids) into LongTensors
    input_ids / attention_mask / labels (labels = <s> original </s>, -100 on padding)."""
    rng = numpy_rng(generator)
    noise.check()
    sources, targets = [], []
    for sentences in examples:
        source, target, _ = bart_noise(sentences, bos_id, eos_id, mask_id, rng, noise, max_length)
        sources.append(source)
        targets.append(target)
    return {"input_ids": pad_stack(sources, pad_id),
            "attention_mask": pad_stack([np.ones(len(s), np.int64) for s in sources], 0),
            "labels": pad_stack(targets, -100)}


@register("bart-denoising")
class BartDenoising(Seq2SeqPretraining):
    Params = BartNoise  # the recipe's `objective` section is the noise; checked when the recipe loads
    loss_weights = {"denoising": 1.0}
    tokenizer_kinds = ("bpe", "wordpiece", "unigram")  # any kind with bos, eos, pad and mask tokens

    def decoder_start_id(self, tokenizer) -> int:
        return tokenizer.eos_token_id

    def setup(self, tokenizer):
        missing = [n for n in ("bos_token", "eos_token", "pad_token", "mask_token") if getattr(tokenizer, n) is None]
        if missing:
            raise LmforgeError(f"recipe '{self.recipe.name}': task 'bart-denoising' needs a tokenizer with "
                               f"{', '.join(missing)}")
        self.tokenizer = tokenizer

    def prepare(self, tokenizer):
        from pipelines.data.examples import ExampleView, cached_index
        from pipelines.data.packing import SentenceRuns, build_sentence_runs
        from pipelines.data.prepare import splits

        self.setup_once(tokenizer)
        width = self.recipe.data.max_seq_length - 2  # room for <s> ... </s>

        def view(store, ids, split):
            index = cached_index(store, "sentence-runs", {"docs": ids, "max_tokens": width},
                                 lambda: build_sentence_runs(store, ids, width))
            runs = SentenceRuns(store, ids, width, index)
            return ExampleView(len(runs), lambda i: [s.tolist() for s in runs.read(i)])

        return splits(self.recipe, tokenizer, view)

    def collate(self, examples, generator):
        tok = self.tokenizer
        batch = bart_denoising_batch(examples, tok.bos_token_id, tok.eos_token_id, tok.mask_token_id,
                                     tok.pad_token_id, self.recipe.data.max_seq_length, generator, self.params)
        return self.with_decoder_inputs(batch)

    def build_model(self, tokenizer):
        return self.build_seq2seq(tokenizer, generation={"forced_bos_token_id": tokenizer.bos_token_id,
                                                         "forced_eos_token_id": tokenizer.eos_token_id},
                                  bos_token_id=tokenizer.bos_token_id, forced_eos_token_id=tokenizer.eos_token_id)

    def flops_per_token(self, model):
        """Per encoder input token (tokens_in counts the noised input): the decoder reads the full
        <s> text </s> of max_seq_length; the input loses the deleted tokens and the infilled ones but
        one <mask> per span (~ mask_ratio / poisson_lambda of the text; the last span's trim adds a
        fraction of a span, not counted). pipelines/engine/flops.py has the count."""
        import math

        from pipelines.engine.flops import seq2seq_flops_per_token

        p, target = self.params, self.max_length
        text = target - 2
        text -= math.ceil(text * p.deletion_ratio)
        masked = math.ceil(text * p.mask_ratio)
        spans = min(masked, masked / p.poisson_lambda)
        return seq2seq_flops_per_token(model, 2 + text - masked + spans, target)

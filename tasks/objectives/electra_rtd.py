"""ELECTRA pretraining: replaced token detection (Clark et al. 2020), everything in one file.

One nn.Module, ElectraPretrainingModel, holds a small generator (ElectraForMaskedLM) and the
discriminator (ElectraForPreTraining). Its forward is the whole objective:
  1. the generator does MLM on the masked input (15 %; ELECTRA's mask(): 85 % [MASK], 15 % kept,
     no random tokens);
  2. at every masked position a token is sampled from the generator's softmax (temperature 1);
     ids are discrete and sampled under no_grad, so no gradient flows from the discriminator
     into the generator, as in the paper (the generator is trained by its MLM loss only);
  3. the discriminator reads the sampled sequence; its label is 1 iff the token differs from the
     original (a sample that equals the original is "original", label 0).
Loss = L_MLM (mean over masked tokens) + disc_weight (lambda = 50) x L_Disc (mean over all
non-padding tokens, [CLS]/[SEP] included as in ELECTRA's input_mask); both are returned as sums,
the engine divides each by its global count.

Sharing (the released code's `electra/embeddings` scope): generator and discriminator use ONE
embeddings module (token, position and token-type tables and the embedding LayerNorm, all of size
embedding_size); the smaller generator maps them to its hidden size with its own
embeddings_project, and its output layer is the same word-embedding matrix. The generator has the
discriminator's depth and 1/generator_size_divisor of its width, FFN and heads (paper Table 6:
1/4 for small and large, 1/3 for base).

Export: the engine's `final` folder is the discriminator (ElectraForPreTraining: the model to
fine-tune, `make finetune MODEL=electra-tiny` uses it), the generator goes next to it in
`final-generator` (ElectraForMaskedLM, fill-mask). Data: ELECTRA's build_pretraining_dataset.py
ExampleBuilder (electra_segments below), or with `packing: full_sentences` RoBERTa's packed rows
(for a corpus of short documents, which the ExampleBuilder would make into short, mostly padded rows).

Other encoder families (ModernBERT: modernbert-electra-cram). transformers has an ELECTRA-style
discriminator only for ELECTRA, so elsewhere the discriminator is the family's
AutoModelForTokenClassification with one label (its prediction head + a hidden -> 1 layer, the shape of
ElectraDiscriminatorPredictions) and the generator its AutoModelForMaskedLM. Such a family has no
embedding projection, so the two share their embeddings only at equal width: the generator is made
smaller by depth (`generator_num_layers`) instead of width, and its output layer is tied to the shared
token embeddings as ELECTRA's is. `final` is then the discriminator's encoder (the family's base model,
which sequence classification loads; the one-label head is not part of it), `final-generator` the
generator.
"""

from __future__ import annotations

import copy
import inspect
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.utils import ModelOutput

from pipelines.data.draws import Draws, replay
from pipelines.errors import LmforgeError, one_line
from tasks.base import Task, register, write_pretrained
from tasks.shared.batching import pad_stack
from tasks.shared.masked_lm import MaskingMixin, MlmParams
from tasks.shared.masking import IGNORE_INDEX
from tasks.shared.modeling import init_model
from tasks.shared.sparse_head import mlm_positions


@dataclass
class RtdParams(MlmParams):
    mask_replace_prob: float = 0.85  # ELECTRA's pretrain_helpers.mask: [MASK] 85 %, else kept
    random_replace_prob: float = 0.0
    disc_weight: float = 50.0  # lambda
    generator_size_divisor: float = 4.0  # generator width = discriminator's / this (base: 3)
    temperature: float = 1.0  # of the generator's softmax when sampling
    single_segment_prob: float = 0.1  # ExampleBuilder: one segment, as in classification inputs
    short_seq_prob: float = 0.05  # ExampleBuilder: a random target length in [5, max_seq_length]
    # continued pretraining (model.name_or_path = a discriminator folder): the generator's folder;
    # default: our export's "<folder>-generator"
    generator_name_or_path: str | None = None
    # the generator's depth; default the discriminator's (the paper narrows it instead). A family without
    # an embedding projection (ModernBERT) shares embeddings only at equal width: there depth makes it small
    generator_num_layers: int | None = None
    packing: str = "segments"  # segments: ELECTRA's ExampleBuilder | full_sentences: RoBERTa's packed rows

    def check(self, where: str):
        super().check(where)
        if self.packing not in PACKINGS:
            raise LmforgeError(f"{where}: packing '{self.packing}' is not one of {', '.join(PACKINGS)}")
        if self.generator_num_layers is not None and self.generator_num_layers < 1:
            raise LmforgeError(f"{where}: generator_num_layers must be >= 1, got {self.generator_num_layers}")


PACKINGS = ("segments", "full_sentences")


def electra_ranges(docs, max_length: int, rng: np.random.Generator, single_segment_prob: float = 0.1,
                   short_seq_prob: float = 0.05) -> np.ndarray:
    """(a_start, a_end, b_start, b_end) token ranges per example (b empty: one segment), ELECTRA's
    ExampleBuilder: sentences of one document are gathered until they reach the target length (or the
    document ends), then split into two segments ((target - 3) // 2 tokens for A, a sentence crossing
    that mark goes to A half the time; 10 %: one segment) and cut to max_length with room for
    [CLS] A [SEP] B [SEP]. 5 % of examples get a random target length. `docs` is a
    tasks/shared/sentence_pairs.DocumentBounds.

    One deliberate difference: once B has started, every later sentence goes to B. ELECTRA's code can
    put a later short sentence back into A, out of the text's order; here both segments stay contiguous
    text. Hand-written: no library builds ELECTRA's inputs.

    Vectorised (issue #22): the sentence bounds come in one read, the chunk's end and A's end are
    bisections of them, the random numbers numpy's own replayed (pipelines/data/draws.py); one Python
    step per example. tests/objectives/test_index_builders.py pins the array to the per-sentence loop
    this replaced (same corpus, seed and settings)."""
    bounds, first, count = docs.flat()
    out = array("q")
    target = max_length
    with replay(rng) as draws:
        for d in range(len(first)):
            c0, end = first[d], first[d] + count[d]
            while c0 < end:
                stop = bisect_left(bounds, bounds[c0] + target, c0 + 1, end)  # reaches the target, or the end
                out.extend(_segments(bounds, c0, stop, target, max_length, single_segment_prob, draws))
                c0 = stop
                target = draws.integers(5, max_length + 1) if draws.random() < short_seq_prob else max_length
    return np.frombuffer(out, np.int64).reshape(-1, 4) if len(out) else np.zeros((0, 4), np.int64)


def _segments(bounds, c0: int, stop: int, target: int, max_length: int, single_segment_prob: float,
              draws: Draws) -> tuple[int, int, int, int]:
    """(a0, a1, b0, b1) of the chunk of sentences [c0, stop): A takes whole sentences while they end
    under first_target tokens; the sentence crossing it goes to A on a coin flip (drawn only when A is
    still short of first_target), the rest to B. A always has the chunk's first sentence."""
    first_target = 100_000 if draws.random() < single_segment_prob else (target - 3) // 2
    cross = bisect_left(bounds, bounds[c0] + first_target, c0 + 2, stop + 1) - 1  # the crossing sentence
    k = stop
    if cross < stop:
        k = cross + 1 if bounds[cross] - bounds[c0] < first_target and draws.random() < 0.5 else cross
    a0 = bounds[c0]
    a1 = min(bounds[k], a0 + max_length - 2)
    return a0, a1, bounds[k], min(bounds[stop], bounds[k] + max(0, max_length - (a1 - a0) - 3))


def electra_segments(documents, max_length: int, rng: np.random.Generator, single_segment_prob: float = 0.1,
                     short_seq_prob: float = 0.05) -> list[tuple[list, list]]:
    """electra_ranges on in-memory documents of sentences of ids: (segment A, segment B or [])."""
    from pipelines.data.shards import ShardSet
    from tasks.shared.sentence_pairs import DocumentBounds

    store = ShardSet.in_memory(documents)
    rows = electra_ranges(DocumentBounds(store, np.arange(store.n_documents)), max_length, rng,
                          single_segment_prob, short_seq_prob)
    return [(store.tokens(a0, a1).tolist(), store.tokens(b0, b1).tolist()) for a0, a1, b0, b1 in rows]


def generator_config(disc_config, divisor: float, num_layers: int | None = None):
    """The generator's config: the discriminator's depth, embedding size and everything else, with
    hidden size, FFN size and attention heads divided by `divisor` (paper Table 6); `num_layers` (at
    most the discriminator's) makes it shallower instead or as well."""
    cfg = copy.deepcopy(disc_config)
    if num_layers is not None:
        if not 1 <= num_layers <= disc_config.num_hidden_layers:
            raise LmforgeError(f"objective.generator_num_layers {num_layers}: must be 1 to the discriminator's "
                               f"{disc_config.num_hidden_layers} layers")
        cfg.num_hidden_layers = num_layers
        if getattr(cfg, "layer_types", None):  # ModernBERT: one attention type per layer
            cfg.layer_types = list(cfg.layer_types[:num_layers])
    hidden = round(disc_config.hidden_size / divisor)
    heads = max(1, round(disc_config.num_attention_heads / divisor))
    if divisor < 1 or hidden < 1 or hidden % heads:
        raise LmforgeError(f"objective.generator_size_divisor {divisor}: generator hidden size {hidden} is not a "
                           f"positive multiple of its {heads} attention heads")
    cfg.hidden_size, cfg.num_attention_heads = hidden, heads
    cfg.intermediate_size = max(1, round(disc_config.intermediate_size / divisor))
    cfg.architectures = None
    cfg.num_labels = 2  # the generator is no one-label discriminator (its config's default)
    return cfg


def share_embeddings(generator, discriminator) -> None:
    """One embeddings module for both (ELECTRA: tokens, positions, token types, LayerNorm; ModernBERT:
    tokens and the embedding norm) and the generator's output layer tied to the shared word embeddings."""
    gen_table, disc_table = generator.get_input_embeddings(), discriminator.get_input_embeddings()
    if gen_table.embedding_dim != disc_table.embedding_dim:
        raise LmforgeError(f"objective: the generator's embeddings ({gen_table.embedding_dim} wide) cannot share the "
                           f"discriminator's ({disc_table.embedding_dim}): model.family "
                           f"'{discriminator.config.model_type}' has no embedding projection; set "
                           "generator_size_divisor: 1 and make the generator smaller with generator_num_layers")
    generator.base_model.embeddings = discriminator.base_model.embeddings
    generator.get_output_embeddings().weight = disc_table.weight


def sample_from_logits(logits: torch.Tensor, u: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """One token per row of logits [N, V] drawn from softmax(logits / temperature), by inverse CDF with
    the uniforms u [N]. ELECTRA adds Gumbel noise per vocabulary entry; this is the same distribution
    from one uniform per position, drawn in `collate` from the engine's (seed, step, rank) generator,
    so sampling is part of the batch: reproducible and identical after a resume. (Dropout inside the
    two models uses torch's global RNG, which the engine seeds.)"""
    cdf = torch.softmax(logits.float() / temperature, dim=-1).cumsum(-1)
    idx = torch.searchsorted(cdf, (u.float() * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    return idx.clamp_max(logits.size(-1) - 1)


@dataclass
class ElectraPretrainingOutput(ModelOutput):
    generator_logits: torch.Tensor | None = None  # [B, T, V], or [n_masked, V] with sparse prediction
    discriminator_logits: torch.Tensor | None = None  # [B, T]
    replaced: torch.Tensor | None = None  # [B, T] discriminator labels: 1 = differs from the original
    fake_input_ids: torch.Tensor | None = None  # [B, T] what the discriminator read


class ElectraPretrainingModel(nn.Module):
    """Generator + discriminator with shared embeddings; forward = ELECTRA's training graph."""

    def __init__(self, generator, discriminator, temperature: float = 1.0, sparse_prediction: bool = True):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator
        self.temperature = temperature
        self.sparse_prediction = sparse_prediction  # generator logits only at the masked positions
        share_embeddings(generator, discriminator)
        # ModernBERT reads no token types (its forward has no such argument)
        self.token_types = "token_type_ids" in inspect.signature(discriminator.forward).parameters

    def forward(self, input_ids, attention_mask, token_type_ids, mlm_labels, sample_u,
                mlm_positions=None) -> ElectraPretrainingOutput:
        """`mlm_positions`: the flat masked positions from the collator (tasks/shared/sparse_head.py);
        with them nothing here waits for the device. Without them a bool mask selects the same rows."""
        from tasks.shared.sparse_head import mlm_positions as positions_of
        from tasks.shared.sparse_head import predict_only

        selected = mlm_labels != IGNORE_INDEX
        pos = mlm_positions if mlm_positions is not None else positions_of(mlm_labels)
        types = {"token_type_ids": token_type_ids} if self.token_types else {}
        with predict_only(self.generator, pos if self.sparse_prediction else None):
            gen_logits = self.generator(input_ids=input_ids, attention_mask=attention_mask, **types).logits
        original = torch.where(selected, mlm_labels, input_ids)
        with torch.no_grad():  # a discrete sample: the discriminator's loss never reaches the generator
            masked_logits = (gen_logits if self.sparse_prediction
                             else gen_logits.reshape(-1, gen_logits.size(-1)).index_select(0, pos))
            sampled = sample_from_logits(masked_logits, sample_u.reshape(-1).index_select(0, pos), self.temperature)
            fake = original.reshape(-1).index_copy(0, pos, sampled.to(original.dtype)).view_as(original)
        disc_logits = self.discriminator(input_ids=fake, attention_mask=attention_mask, **types).logits
        if disc_logits.dim() == 3:  # a one-label token classifier: [B, T, 1]
            disc_logits = disc_logits.squeeze(-1)
        return ElectraPretrainingOutput(generator_logits=gen_logits, discriminator_logits=disc_logits,
                                        replaced=(fake != original).long(), fake_input_ids=fake)


@register("electra-rtd")
class ElectraRtd(MaskingMixin, Task):
    """ELECTRA replaced token detection on ElectraForMaskedLM (generator) + ElectraForPreTraining, or
    another WordPiece encoder family's masked LM + one-label token classifier."""

    Params = RtdParams
    tokenizer_kinds = ("wordpiece",)

    def __init__(self, recipe):
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_MASKED_LM_MAPPING_NAMES,
            MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
        )

        super().__init__(recipe)
        family = recipe.model.family
        if family != "electra" and not (family in MODEL_FOR_MASKED_LM_MAPPING_NAMES
                                        and family in MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES):
            raise LmforgeError(f"recipe '{recipe.name}': task electra-rtd needs model.family electra or an encoder "
                               f"with a masked LM and a token classifier in transformers, got '{family}'")
        self.native = family == "electra"  # ElectraForPreTraining, ELECTRA's own discriminator

    @property
    def loss_weights(self) -> dict[str, float]:
        return {"mlm": 1.0, "disc": self.params.disc_weight}  # λ = 50 by default (Clark et al. 2020)

    def prepare(self, tokenizer):
        from pipelines.data.examples import ExampleView, cached_index
        from pipelines.data.prepare import splits
        from tasks.shared.sentence_pairs import DocumentBounds

        self.setup_once(tokenizer)
        d, p = self.recipe.data, self.params

        if p.packing == "full_sentences":  # one segment per row: token types all 0 (collate)
            return self.full_sentence_splits(tokenizer)

        def view(store, ids, split):
            seed = self.recipe.training.seed + (split == "eval")
            params = {"docs": ids, "max_length": d.max_seq_length, "seed": seed,
                      "single": p.single_segment_prob, "short": p.short_seq_prob}

            def build():
                return electra_ranges(DocumentBounds(store, ids), d.max_seq_length, np.random.default_rng(seed),
                                      p.single_segment_prob, p.short_seq_prob)

            index = cached_index(store, "electra-segments", params, build)
            return ExampleView(len(index), lambda i: self.segments_example(
                store, (int(index[i][0]), int(index[i][1])), (int(index[i][2]), int(index[i][3]))))

        return splits(self.recipe, tokenizer, view)

    def collate(self, examples, generator):
        pad = self.tokenizer.pad_token_id
        input_ids = pad_stack([e["input_ids"] for e in examples], pad)
        corrupted, labels = self.masked(input_ids, examples, generator)
        return {"input_ids": corrupted, "attention_mask": (input_ids != pad).long(),
                "token_type_ids": pad_stack([e["token_type_ids"] for e in examples], 0)
                if "token_type_ids" in examples[0] else torch.zeros_like(input_ids), "labels": labels,
                "mlm_positions": mlm_positions(labels), "sample_u": torch.rand(input_ids.shape, generator=generator)}

    def build_model(self, tokenizer):
        from transformers import AutoModelForMaskedLM, AutoModelForPreTraining

        self.setup_once(tokenizer)
        p, source = self.params, self.recipe.model.name_or_path
        if self.native:
            disc = init_model(AutoModelForPreTraining, self.recipe, tokenizer, type_vocab_size=2)
        else:
            from transformers import AutoModelForTokenClassification

            disc = init_model(AutoModelForTokenClassification, self.recipe, tokenizer, num_labels=1)
        if source:  # continued pretraining from our export (or any discriminator + generator pair)
            gen_path = p.generator_name_or_path or f"{str(source).rstrip('/')}-generator"
            try:
                gen = AutoModelForMaskedLM.from_pretrained(gen_path)
            except (OSError, ValueError) as exc:
                raise LmforgeError(f"objective.generator_name_or_path: cannot load '{gen_path}': "
                                   f"{one_line(exc)}") from None
        else:
            gen = AutoModelForMaskedLM.from_config(generator_config(disc.config, p.generator_size_divisor,
                                                                    p.generator_num_layers))
        return ElectraPretrainingModel(gen, disc, p.temperature, p.sparse_prediction)

    def loss_counts(self, batch):
        return {"mlm": (batch["labels"] != IGNORE_INDEX).sum(), "disc": batch["attention_mask"].sum()}

    @staticmethod
    def _forward(model, batch) -> ElectraPretrainingOutput:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     token_type_ids=batch["token_type_ids"], mlm_labels=batch["labels"], sample_u=batch["sample_u"],
                     mlm_positions=batch.get("mlm_positions"))

    def loss(self, model, batch):
        out = self._forward(model, batch)
        disc = nn.functional.binary_cross_entropy_with_logits(
            out.discriminator_logits.float(), out.replaced.float(), weight=batch["attention_mask"].float(),
            reduction="sum")
        return {"mlm": self.mlm_loss(out.generator_logits, batch["labels"], batch.get("mlm_positions")), "disc": disc}

    @torch.no_grad()
    def eval_metrics(self, model, batches):
        """ELECTRA's own metrics: generator accuracy (argmax and sampled) on masked tokens, discriminator
        accuracy on all tokens and recall on the replaced ones."""
        n = {"masked": 0, "argmax": 0, "sampled": 0, "tokens": 0, "disc": 0, "replaced": 0, "found": 0}
        for b in batches:
            out = self._forward(model, b)
            sel, real = b["labels"] != IGNORE_INDEX, b["attention_mask"].bool()
            pred = (out.discriminator_logits > 0).long()
            n["masked"] += int(sel.sum())
            argmax = out.generator_logits.argmax(-1)
            n["argmax"] += int(((argmax[sel] if argmax.dim() == 2 else argmax) == b["labels"][sel]).sum())
            n["sampled"] += int((out.fake_input_ids[sel] == b["labels"][sel]).sum())
            n["tokens"] += int(real.sum())
            n["disc"] += int((pred == out.replaced)[real].sum())
            n["replaced"] += int(out.replaced[real].sum())
            n["found"] += int((pred * out.replaced)[real].sum())
        return {"mlm_accuracy": n["argmax"] / max(n["masked"], 1),
                "sampled_accuracy": n["sampled"] / max(n["masked"], 1),
                "disc_accuracy": n["disc"] / max(n["tokens"], 1),
                "disc_recall": n["found"] / max(n["replaced"], 1)}

    def export(self, model, tokenizer, out_dir, state_dict=None):
        """<out_dir> = the discriminator (ElectraForPreTraining; another family: its encoder),
        <out_dir>-generator = the generator (ElectraForMaskedLM, or the family's masked LM)."""
        out_dir = Path(out_dir)
        gen_dir = out_dir.with_name(f"{out_dir.name}-generator")
        disc = model.discriminator if self.native else model.discriminator.base_model
        disc_prefix = "discriminator." if self.native else f"discriminator.{model.discriminator.base_model_prefix}."
        for module, prefix, folder in ((disc, disc_prefix, out_dir), (model.generator, "generator.", gen_dir)):
            sub = None if state_dict is None else \
                {k.removeprefix(prefix): v for k, v in state_dict.items() if k.startswith(prefix)}
            write_pretrained(module, tokenizer, folder, self.recipe, state_dict=sub)
        return [out_dir, gen_dir]

    def flops_per_token(self, model):
        """Generator (vocabulary projection at the masked share with sparse prediction) + discriminator
        (pipelines/engine/flops.py)."""
        from pipelines.engine.flops import electra_flops_per_token

        p = self.params
        return electra_flops_per_token(model.generator, model.discriminator, self.max_length,
                                       p.mlm_probability if p.sparse_prediction else 1.0)

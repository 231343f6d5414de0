"""What the sentence-pair objectives share (BERT's NSP in tasks/objectives/bert_mlm_nsp.py, ALBERT's
SOP in tasks/objectives/albert_sop.py): chunking a document into pairs, BERT's truncation, the
cached pair index, and the MLM + pair-classification task.

Pairs are built from sentence OFFSETS, never from token lists: a document is its array of sentence
bounds (global token offsets of each sentence start, plus its end; pipelines/data/shards.py) and
a pair is two token ranges plus a label, one row of an int64 index [n, 5] = (a_start, a_end,
b_start, b_end, label). Truncation only drops tokens from a segment's ends, so segments stay
contiguous ranges. Follows create_instances_from_document of google-research/bert and
google-research/albert: sentences are gathered into a chunk until it reaches a target length
(max_tokens, or with probability short_seq_prob a random shorter one), the chunk is cut at a random
sentence boundary into A and B, and the pair is truncated to max_tokens by truncate_seq_pair.
Hand-written: no library builds NSP/SOP pairs (transformers removed
TextDatasetForNextSentencePrediction).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left

import numpy as np
import torch

from pipelines.data.draws import Draws
from pipelines.data.shards import ShardSet
from pipelines.errors import LmforgeError
from tasks.base import Task
from tasks.shared.batching import pad_stack
from tasks.shared.masked_lm import MaskingMixin, masked_hits
from tasks.shared.modeling import init_model
from tasks.shared.rng import numpy_rng
from tasks.shared.sparse_head import mlm_positions


class DocumentBounds:
    """The documents `doc_ids` of a store as sentence-bound arrays, read on demand."""

    def __init__(self, store: ShardSet, doc_ids: np.ndarray):
        self.store, self.doc_ids = store, doc_ids
        self._flat = None

    def __len__(self) -> int:
        return len(self.doc_ids)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.store.sentence_bounds(int(self.doc_ids[i]))

    def flat(self) -> tuple[array, list[int], list[int]]:
        """(bounds, first, count), read in one vectorised pass: document i's sentence bounds are
        bounds[first[i]:first[i] + count[i] + 1]. An array('q') is indexed about as fast as a list
        from a Python loop, and searched by bisect, at 8 bytes an entry. Read once (dupe_factor passes)."""
        if self._flat is None:
            bounds, first = self.store.bounds_of(self.doc_ids)
            self._flat = array("q", bounds.tobytes()), first[:-1].tolist(), (np.diff(first) - 1).tolist()
        return self._flat


def check_documents(store: ShardSet, doc_ids: np.ndarray, max_tokens: int, objective: str):
    """Raises unless a pair can be built (vectorised over the document index)."""
    if max_tokens < 2:
        raise LmforgeError(f"{objective}: max_tokens must be >= 2 (one token per segment), got {max_tokens}")
    if not (store.sentences_per_document()[doc_ids] >= 2).any():
        raise LmforgeError(f"{objective} needs documents of at least 2 sentences, but none of the corpus's "
                           f"{len(doc_ids)} documents has more than one: give one sentence per line with a "
                           "blank line between documents")


def truncate_range_pair(a: tuple[int, int], b: tuple[int, int], max_tokens: int, rng: np.random.Generator):
    """BERT's truncate_seq_pair on ranges: drop one token at a time from the longer segment, from its
    front or its back at random ("to add more randomness and avoid biases"), until the pair fits."""
    (a_lo, a_hi), (b_lo, b_hi) = a, b
    excess = (a_hi - a_lo) + (b_hi - b_lo) - max_tokens
    for front in (rng.random(excess) < 0.5 if excess > 0 else ()):
        if a_hi - a_lo > b_hi - b_lo:
            a_lo, a_hi = (a_lo + 1, a_hi) if front else (a_lo, a_hi - 1)
        else:
            b_lo, b_hi = (b_lo + 1, b_hi) if front else (b_lo, b_hi - 1)
    return (a_lo, a_hi), (b_lo, b_hi)


def truncate_seq_pair(tokens_a: list, tokens_b: list, max_tokens: int, rng: np.random.Generator):
    """truncate_range_pair on lists."""
    (a0, a1), (b0, b1) = truncate_range_pair((0, len(tokens_a)), (0, len(tokens_b)), max_tokens, rng)
    return tokens_a[a0:a1], tokens_b[b0:b1]


# --- the vectorised builders (issue #22) ------------------------------------------------------------
# The documents' sentence bounds come in one read (DocumentBounds.flat); a chunk's or a segment's end
# is a bisection of those offsets instead of a step per sentence; truncation is counted from the
# draws' bits; the random numbers are numpy's own, replayed by pipelines/data/draws.py. What stays a
# Python loop is one step per pair (each pair's draws depend on the previous ones), with no numpy
# call in it. tests/objectives/test_index_builders.py pins the arrays to the per-sentence loops
# they replaced (copied there).


def draw_target(max_tokens: int, short_seq_prob: float, draws: Draws) -> int:
    """BERT's target length (max_tokens, or with probability short_seq_prob a random shorter one)."""
    return draws.integers(2, max_tokens + 1) if draws.random() < short_seq_prob else max_tokens


def chunk_end(bounds, s: int, end: int, target: int) -> int:
    """Where a chunk of sentences ends, BERT-style but in one bisection: the chunk from sentence s of a
    document whose end bound is bounds[end] closes at the first boundary p >= s + 2 reaching `target`
    tokens that leaves two sentences, else at the document's end. Unlike BERT, a chunk never holds a
    lone sentence (BERT must make every lone sentence a random-next pair, which on the default corpus
    skewed NSP labels to 51-53 % random)."""
    p = bisect_left(bounds, bounds[s] + target, s + 2, end - 1)
    return end if p >= end - 1 else p


def truncated(a0: int, a1: int, b0: int, b1: int, max_tokens: int, draws: Draws) -> tuple[int, int, int, int]:
    """truncate_range_pair without a step per token: which segment loses each token follows from the
    lengths alone (the longer one, b on a tie; once even, b and a in turn), so only the number of
    front draws among each segment's steps matters."""
    la, lb = a1 - a0, b1 - b0
    excess = la + lb - max_tokens
    if excess <= 0:
        return a0, a1, b0, b1
    flags, t = draws.fronts(excess)
    run = min(excess, la - lb if la > lb else lb - la + 1)  # steps that cut the longer one only
    long_front = flags.count(1, t, t + run) + flags[t + run + 1:t + excess:2].count(1)
    long_cut = run + (excess - run) // 2
    short_front = flags[t + run:t + excess:2].count(1)
    short_cut = excess - long_cut
    if la > lb:
        return a0 + long_front, a1 - (long_cut - long_front), b0 + short_front, b1 - (short_cut - short_front)
    return a0 + short_front, a1 - (short_cut - short_front), b0 + long_front, b1 - (long_cut - long_front)


def pair_rows(out: array, width: int) -> np.ndarray:
    return np.frombuffer(out, np.int64).reshape(-1, width) if len(out) else np.zeros((0, width), np.int64)


def pair_index(builder, store: ShardSet, doc_ids: np.ndarray, max_tokens: int, passes: int, seed: int,
               **kw) -> np.ndarray:
    """int64 [n, 5] pairs of `builder` over `passes` passes (BERT's dupe_factor), one seeded rng."""
    rng = np.random.default_rng(seed)
    docs = DocumentBounds(store, doc_ids)
    return np.concatenate([builder(docs, max_tokens, rng, **kw) for _ in range(passes)]).reshape(-1, 5)


def pairs_from_lists(builder, documents, max_tokens: int, generator, objective: str,
                     **kw) -> list[tuple[list, list, bool]]:
    """A range builder run on in-memory documents of sentences of ids; pairs as token lists."""
    store = ShardSet.in_memory(documents)
    check_documents(store, np.arange(store.n_documents), max_tokens, objective)
    docs = DocumentBounds(store, np.arange(store.n_documents))
    return [(store.tokens(a0, a1).tolist(), store.tokens(b0, b1).tolist(), bool(flag))
            for a0, a1, b0, b1, flag in builder(docs, max_tokens, numpy_rng(generator), **kw)]


class PairTask(MaskingMixin, Task):
    """MLM plus a sentence-pair classification head (NSP for BERT, SOP for ALBERT). Subclasses set
    Params (MlmParams plus short_seq_prob) and pair_builder."""

    pair_term = "nsp"  # the name of the pair loss in logs: nsp | sop

    # (documents, max_tokens, rng, short_seq_prob) -> list of Pair; set by the subclass
    pair_builder = None

    def prepare(self, tokenizer):
        from pipelines.data.examples import ExampleView, cached_index
        from pipelines.data.prepare import splits

        self.setup_once(tokenizer)
        d, t = self.recipe.data, self.recipe.training
        max_tokens = d.max_seq_length - 3

        def view(store, ids, split):
            train = split == "train"
            passes, seed = (d.dupe_factor, t.seed) if train else (1, t.seed + 1)
            if train:
                check_documents(store, ids, max_tokens, self.pair_term.upper())
            if len(ids) < 2 or (not train and not (store.sentences_per_document()[ids] >= 2).any()):
                return ExampleView(0, None)
            params = {"task": self.name, "docs": ids, "max_tokens": max_tokens, "passes": passes, "seed": seed,
                      "short_seq_prob": self.params.short_seq_prob}
            index = cached_index(store, self.pair_term, params, lambda: pair_index(
                self.pair_builder, store, ids, max_tokens, passes, seed, short_seq_prob=self.params.short_seq_prob))
            return ExampleView(len(index), lambda i: self.example(store, index[i]))

        return splits(self.recipe, tokenizer, view)

    def example(self, store: ShardSet, row) -> dict:
        a0, a1, b0, b1, flag = (int(x) for x in row)
        return {**self.segments_example(store, (a0, a1), (b0, b1)), "pair_label": flag}

    def collate(self, examples, generator):
        pad = self.tokenizer.pad_token_id
        input_ids = pad_stack([e["input_ids"] for e in examples], pad)
        corrupted, labels = self.masked(input_ids, examples, generator)
        return {"input_ids": corrupted, "attention_mask": (input_ids != pad).long(),
                "token_type_ids": pad_stack([e["token_type_ids"] for e in examples], 0),
                "labels": labels, "mlm_positions": mlm_positions(labels),
                "pair_label": torch.tensor([e["pair_label"] for e in examples])}

    def build_model(self, tokenizer):
        from transformers import AutoModelForPreTraining

        self.setup_once(tokenizer)
        return init_model(AutoModelForPreTraining, self.recipe, tokenizer, type_vocab_size=2)

    def loss_counts(self, batch):
        return {"mlm": (batch["labels"] != -100).sum(), self.pair_term: torch.tensor(batch["pair_label"].numel())}

    @staticmethod
    def _pair_logits(out):
        return out.seq_relationship_logits if hasattr(out, "seq_relationship_logits") else out.sop_logits

    def loss(self, model, batch):
        from tasks.shared.losses import token_ce_sum

        out = self.mlm_output(model, batch, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              token_type_ids=batch["token_type_ids"])
        return {"mlm": self.mlm_loss(out.prediction_logits, batch["labels"], batch.get("mlm_positions")),
                self.pair_term: token_ce_sum(self._pair_logits(out), batch["pair_label"])}

    @torch.no_grad()
    def eval_metrics(self, model, batches):
        """MLM and pair accuracy from one (sparse) forward per batch."""
        n = {"pair": 0, "pairs": 0, "mlm": 0, "masked": 0}
        for b in batches:
            out = self.mlm_output(model, b, input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                  token_type_ids=b["token_type_ids"])
            n["pair"] += int((self._pair_logits(out).argmax(-1) == b["pair_label"]).sum())
            n["pairs"] += b["pair_label"].numel()
            hits, masked = masked_hits(out.prediction_logits, b["labels"])
            n["mlm"], n["masked"] = n["mlm"] + hits, n["masked"] + masked
        return {"mlm_accuracy": n["mlm"] / max(n["masked"], 1),
                f"{self.pair_term}_accuracy": n["pair"] / max(n["pairs"], 1)}

    def flops_per_token(self, model):
        """Hand count (pipelines/engine/flops.py): MLM as in MaskedLM plus the pooler and NSP/SOP head."""
        from pipelines.engine.flops import mlm_flops_per_token

        p = self.params
        return mlm_flops_per_token(model, self.max_length, p.mlm_probability if p.sparse_prediction else 1.0,
                                   pair_head=True)

"""Multiple-choice fine-tuning (SWAG as BERT reports it, RACE as RoBERTa / ALBERT / ELECTRA report it)
through AutoModelForMultipleChoice.

Every option is read as one (context, option) pair (pipelines/data/multiple_choice.py builds the
option segment); the head gives each pair one score and the options of an example compete in a
softmax. The context (RACE's article) is cut to fit max_length, never the option: the option is what
is being judged. A batch is [examples, options, tokens].

    make finetune TASK=swag MODEL=<checkpoint> DATA=<folder with train.csv, val.csv>
    make finetune TASK=race MODEL=<checkpoint> DATA=<RACE folder>

Recipes: tasks/recipes/swag.yaml and race.yaml (objective.dataset; objective.data: the folder or a Hub name).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipelines.config import check_choice
from pipelines.data.multiple_choice import DATASETS, load_multiple_choice
from pipelines.errors import warn
from tasks.base import register
from tasks.finetuning.common import gather
from tasks.finetuning.downstream import DownstreamParams, DownstreamTask
from tasks.shared.batching import attention_mask, pad_stack

# model_type -> the modules of the multiple-choice head (trained in full under LoRA); others: ("classifier",).
# BERT / RoBERTa / ALBERT score the pooled [CLS] with `classifier` (their pooler, when the checkpoint lacks
# it, is trained as a missing module by wrap_lora); ELECTRA has no pooler and summarises with its own layer.
LORA_HEADS = {"electra": ("sequence_summary", "classifier")}
CHUNK = 1000  # examples per tokenizer call: RACE's 88k questions x 4 articles are not encoded at once


@dataclass
class MultipleChoiceParams(DownstreamParams):
    dataset: str = "swag"  # swag | race: which reader `data` is read with (pipelines/data/multiple_choice.py)

    def check(self, where: str) -> None:
        super().check(where)
        check_choice(where, "dataset", self.dataset, DATASETS)


def encode(tokenizer, examples: list[dict], max_length: int) -> list[dict]:
    """Token ids of every (context, option) pair, per example: {"input_ids": [array per option],
    ["token_type_ids": ...], "label"}. Arrays, not lists: RACE holds ~350k pairs of up to 512 tokens."""
    out: list[dict] = []
    cut = 0
    for start in range(0, len(examples), CHUNK):
        chunk, n_cut = _encode_chunk(tokenizer, examples[start:start + CHUNK], max_length)
        out += chunk
        cut += n_cut
    if cut:
        warn(f"{cut} of {sum(len(e['options']) for e in examples)} options alone are longer than max_length "
             f"{max_length}; those pairs are cut on both sides (raise data.max_seq_length to keep them whole)")
    return out


def _encode_chunk(tokenizer, examples: list[dict], max_length: int) -> tuple[list[dict], int]:
    contexts = [e["context"] for e in examples for _ in e["options"]]
    options = [o for e in examples for o in e["options"]]
    # truncation="only_first" cuts the context only, and fails outright for an option that does not fit
    # even after the whole context: those (rare) pairs are cut on both sides instead
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True)
    fits = [len(ids) <= room for ids in tokenizer(options, add_special_tokens=False)["input_ids"]]
    pairs: list[dict | None] = [None] * len(options)
    for keep, truncation in ((True, "only_first"), (False, "longest_first")):
        idx = [i for i, f in enumerate(fits) if f == keep]
        if not idx:
            continue
        enc = tokenizer([contexts[i] for i in idx], [options[i] for i in idx], truncation=truncation,
                        max_length=max_length)
        keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
        for j, i in enumerate(idx):
            pairs[i] = {k: np.asarray(enc[k][j], dtype=np.int32 if k == "input_ids" else np.int8) for k in keys}
    out, at = [], 0
    for e in examples:
        mine = pairs[at:at + len(e["options"])]
        at += len(e["options"])
        out.append({**{k: [p[k] for p in mine] for k in mine[0]}, "label": e["label"]})
    return out, fits.count(False)


def choose(logits: torch.Tensor) -> torch.Tensor:
    """The predicted option of each example ([examples, options] -> [examples]); on tied scores the
    first of them (torch.argmax returns the first maximal index)."""
    return logits.float().argmax(-1)


def accuracy(rows: list[tuple[int, int]]) -> float:
    """Share of (prediction, label) rows that agree."""
    return sum(p == label for p, label in rows) / len(rows)


@register("multiple-choice")
class MultipleChoice(DownstreamTask):
    Params = MultipleChoiceParams
    auto_class = "AutoModelForMultipleChoice"
    main_metric = "accuracy"
    # peft has no multiple-choice TaskType; SEQ_CLS's wrapper passes the [examples, options, tokens] inputs
    # through to the model unchanged (tests/finetuning/test_multiple_choice.py trains and exports with it)
    lora_task_type = "SEQ_CLS"
    lora_head = ("classifier",)

    @property
    def benchmark(self) -> str:
        return self.params.dataset  # swag | race

    def prepare(self, tokenizer):
        self.setup_once(tokenizer)
        p = self.params
        train = encode(tokenizer, self.capped(load_multiple_choice(p.dataset, p.data, "train"), "train"),
                       self.max_length)
        dev = encode(tokenizer, self.capped(load_multiple_choice(p.dataset, p.data, "dev"), "dev"), self.max_length)
        if self.recipe.training.max_eval_batches == 0:
            # every example is evaluated, so the order is free: batches of similar lengths pad less. With a
            # cap, keep the first rows (sorted, the cap would pick the longest), as glue.py does
            dev.sort(key=lambda e: -_longest(e))  # stable: ties keep the file order
        return train, dev

    def example_lengths(self, train_data):
        return [_longest(e) for e in train_data]

    def collate(self, examples, generator):
        n, pad = len(examples[0]["input_ids"]), self.tokenizer.pad_token_id
        rows = [ids for e in examples for ids in e["input_ids"]]
        width = max(len(r) for r in rows)
        shape = (len(examples), n, width)
        batch = {"input_ids": pad_stack(rows, pad, width).view(shape),
                 "attention_mask": attention_mask(torch.tensor([len(r) for r in rows]), width).view(shape),
                 "labels": torch.tensor([e["label"] for e in examples])}
        if "token_type_ids" in examples[0]:
            types = [t for e in examples for t in e["token_type_ids"]]
            batch["token_type_ids"] = pad_stack(types, 0, width).view(shape)
        return batch

    def build_model(self, tokenizer):
        if self.params.peft == "lora":  # the head's modules differ by family (LORA_HEADS)
            from tasks.finetuning.common import checkpoint_config

            model_type = checkpoint_config(self.recipe.model.name_or_path).model_type
            self.lora_head = LORA_HEADS.get(model_type, type(self).lora_head)
        return super().build_model(tokenizer)

    # --- loss and evaluation ---------------------------------------------------------------------
    def loss_counts(self, batch):
        return {"loss": torch.tensor(batch["labels"].numel())}

    def _logits(self, model, batch):
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        return model(**inputs).logits  # [examples, options]

    def loss(self, model, batch):
        return _summed_loss(self._logits(model, batch), batch)

    def eval_batch(self, model, batch):
        """The loss and (predictions, labels) from one forward pass."""
        if type(self).loss is not MultipleChoice.loss:  # a subclass's own loss terms; predictions in eval_metrics
            return super().eval_batch(model, batch)
        logits = self._logits(model, batch)
        return _summed_loss(logits, batch), (choose(logits), batch["labels"])

    @torch.no_grad()
    def eval_metrics(self, model, batches, outputs=None):
        """Accuracy over every evaluated example of every rank. outputs: eval_batch's per batch; None:
        predict here (a second forward pass)."""
        rows = []
        for i in range(len(batches)):
            if outputs is not None:
                preds, labels = outputs[i]
            else:
                batch = batches[i]
                preds, labels = choose(self._logits(model, batch)), batch["labels"]
            rows += list(zip(preds.tolist(), labels.tolist()))
        rows = gather(rows)
        return {"accuracy": accuracy(rows)} if rows else {}


def _summed_loss(logits, batch) -> dict:
    return {"loss": torch.nn.functional.cross_entropy(logits.float(), batch["labels"], reduction="sum")}


def _longest(example: dict) -> int:
    return max(len(ids) for ids in example["input_ids"])

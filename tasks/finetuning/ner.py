"""Named-entity recognition (CoNLL-2003) with a token-classification head, any encoder or GPT-2,
through AutoModelForTokenClassification.

    make finetune TASK=ner MODEL=<checkpoint> DATA=<folder or Hub name>

(the folder holds CoNLL-2003's train.txt, valid.txt or dev.txt, test.txt; the recipe: tasks/recipes/ner.yaml)

Words are tokenized as given (is_split_into_words); a word's label goes on its FIRST sub-word piece
and the model's prediction there is the word's (Devlin et al. 2019, section 5.3; HF run_ner's
default); the other pieces and the special tokens are not scored (-100), unless
objective.label_all_subwords trains every piece on its word's tag (run_ner's label_all_tokens).
The dev set is scored on entities, micro precision / recall / F1 through seqeval, as conlleval does
(pipelines/data/conll.py reads the files and tells IOB1 from IOB2). The label list (the train tags)
is stored in the model config, so the export runs in transformers.pipeline("token-classification").
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from pipelines.config import check_choice
from pipelines.data.conll import SCHEMES, detect_scheme, load_conll
from pipelines.errors import warn
from tasks.base import register
from tasks.finetuning.common import gather
from tasks.finetuning.downstream import DownstreamParams, DownstreamTask
from tasks.shared.batching import attention_mask, pad_stack


@dataclass
class NerParams(DownstreamParams):
    scheme: str = "auto"  # IOB1 | IOB2 | auto (IOB1 when an I- tag of train starts an entity)
    label_all_subwords: bool = False  # train every piece of a word on its tag (B- as I-), not only the first

    def check(self, where: str) -> None:
        super().check(where)
        check_choice(where, "scheme", self.scheme, SCHEMES)


@register("ner")
class NamedEntities(DownstreamTask):
    Params = NerParams
    auto_class = "AutoModelForTokenClassification"
    main_metric = "f1"
    lora_task_type = "TOKEN_CLS"
    lora_head = ("classifier",)

    # --- data ------------------------------------------------------------------------------------
    def load_tokenizer(self):
        return with_prefix_space(super().load_tokenizer())

    def setup(self, tokenizer):
        """The train sentences, their scheme and the label list: the model's head needs the labels."""
        super().setup(tokenizer)
        self.train_rows = self.capped(load_conll(self.params.data, "train", self.params.scheme), "train")
        self.scheme = self.params.scheme if self.params.scheme != "auto" else detect_scheme(self.train_rows)
        self.labels = label_list(self.train_rows)
        self.label2id = {t: i for i, t in enumerate(self.labels)}

    def prepare(self, tokenizer):
        self.setup_once(tokenizer)
        # dev read with train's scheme: an IOB2 train and a dev whose I- tags start entities disagree
        self.eval_rows = self.capped(load_conll(self.params.data, "dev", self.scheme), "dev")
        unseen = sorted({t for r in self.eval_rows for t in r["tags"]} - set(self.labels))
        if unseen:  # scored as gold entities (recall pays), never predicted, left out of the loss
            warn(f"dev tags not in train, never predicted: {', '.join(unseen)}")
        train_data, _ = self._encode(self.train_rows)
        eval_data, self.eval_starts = self._encode(self.eval_rows)
        if self.recipe.training.max_eval_batches == 0:
            # every example is evaluated, so the order is free: similar lengths pad less (as glue.py);
            # the metric maps predictions back through each example's index
            eval_data.sort(key=lambda e: -len(e["input_ids"]))
        return train_data, eval_data

    def _encode(self, rows: list[dict]) -> tuple[list[dict], list[list[int]]]:
        """(examples, the token position of each word's first piece, -1 for a word cut off or without pieces)."""
        enc = self.tokenizer([r["tokens"] for r in rows], is_split_into_words=True, truncation=True,
                             max_length=self.max_length)
        inside = self._inside() if self.params.label_all_subwords else None
        examples, starts = [], []
        for i, row in enumerate(rows):
            word_ids = enc.word_ids(i)
            tags = [self.label2id.get(t, -100) for t in row["tags"]]
            example = {"input_ids": enc["input_ids"][i], "labels": align_labels(word_ids, tags, inside), "index": i}
            if "token_type_ids" in enc:
                example["token_type_ids"] = enc["token_type_ids"][i]
            examples.append(example)
            starts.append(first_pieces(word_ids, len(row["tokens"])))
        return examples, starts

    def _inside(self) -> dict[int, int]:
        """label id -> the id its word's other pieces get: B-X's is I-X's (when train has I-X)."""
        ids = self.label2id
        return {i: ids.get(f"I-{t[2:]}", i) if t.startswith("B-") else i for t, i in ids.items()}

    def example_lengths(self, train_data):
        return [len(e["input_ids"]) for e in train_data]

    def collate(self, examples, generator):
        input_ids = pad_stack([e["input_ids"] for e in examples], self.tokenizer.pad_token_id)
        lengths = torch.tensor([len(e["input_ids"]) for e in examples])
        batch = {"input_ids": input_ids, "attention_mask": attention_mask(lengths, input_ids.size(1)),
                 "labels": pad_stack([e["labels"] for e in examples], -100),
                 "example": torch.tensor([e["index"] for e in examples])}
        if "token_type_ids" in examples[0]:
            batch["token_type_ids"] = pad_stack([e["token_type_ids"] for e in examples], 0)
        return batch

    # --- the model -------------------------------------------------------------------------------
    def model_kwargs(self) -> dict:
        # id2label alone sets num_labels (with num_labels too, transformers warns against the checkpoint's)
        return {"id2label": dict(enumerate(self.labels)), "label2id": dict(self.label2id)}

    def _logits(self, model, batch):
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        return model(**inputs).logits

    def loss(self, model, batch):
        """Summed cross-entropy over the labelled pieces; Task.loss_counts counts them (labels != -100)."""
        return {"loss": summed_cross_entropy(self._logits(model, batch), batch["labels"])}

    # --- evaluation ------------------------------------------------------------------------------
    def eval_batch(self, model, batch):
        """The loss and the predicted label of every piece, from one forward pass."""
        logits = self._logits(model, batch)
        return {"loss": summed_cross_entropy(logits, batch["labels"])}, logits.argmax(-1)

    @torch.no_grad()
    def eval_metrics(self, model, batches, outputs=None):
        """Entity precision / recall / F1 and word accuracy over the evaluated dev sentences (all ranks)."""
        rows = []
        for i, b in enumerate(batches):
            preds = outputs[i] if outputs is not None else self._logits(model, b).argmax(-1)
            rows += [(k, self.word_tags(k, p)) for k, p in zip(b["example"].tolist(), preds.tolist())]
        predicted = dict(gather(rows))  # a dict: an example seen twice counts once
        order = sorted(predicted)
        return entity_scores([self.eval_rows[k]["tags"] for k in order], [predicted[k] for k in order], self.scheme)

    def word_tags(self, index: int, piece_labels: list[int]) -> list[str]:
        """A dev sentence's predicted tag per word: the label of its first piece. A word truncation cut
        off (or one without pieces) is predicted O, so its entity counts as missed: recall stays honest."""
        return [self.labels[piece_labels[s]] if s >= 0 else "O" for s in self.eval_starts[index]]


# --- helpers (pure functions, tested directly) ---------------------------------------------------


def label_list(rows: list[dict]) -> list[str]:
    """The tags of `rows`, O first, then sorted."""
    return ["O"] + sorted({t for r in rows for t in r["tags"]} - {"O"})


def align_labels(word_ids: list[int | None], word_labels: list[int], inside: dict[int, int] | None = None) -> list[int]:
    """Piece labels from word labels: a word's first piece gets its label; special tokens (None) and the
    other pieces get -100, or with `inside` (label id -> id) the other pieces get inside[word label]."""
    labels, previous = [], None
    for w in word_ids:
        if w is None:
            labels.append(-100)
        elif w != previous:
            labels.append(word_labels[w])
        else:
            labels.append(-100 if inside is None or word_labels[w] == -100 else inside[word_labels[w]])
        previous = w
    return labels


def first_pieces(word_ids: list[int | None], n_words: int) -> list[int]:
    """The position of each word's first piece; -1 for a word with none (cut off by truncation)."""
    starts = [-1] * n_words
    for position, w in enumerate(word_ids):
        if w is not None and starts[w] < 0:
            starts[w] = position
    return starts


def summed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100,
                                             reduction="sum")


def entity_scores(gold: list[list[str]], predicted: list[list[str]], scheme: str) -> dict[str, float]:
    """Micro entity precision / recall / F1 and word accuracy. IOB1 (CoNLL-2003's files): seqeval's
    default mode, conlleval's rules (an I- tag after O or another type starts an entity, so does B-).
    IOB2: strict mode, an entity is B-X I-X* exactly, as the scheme defines it; a predicted I- that
    starts an entity is then no entity (conlleval would count it)."""
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    kwargs = {"mode": "strict", "scheme": IOB2} if scheme == "IOB2" else {}
    # zero_division=0: no predicted (or no gold) entity scores 0, without seqeval's warning
    scores = {name: float(fn(gold, predicted, zero_division=0, **kwargs))
              for name, fn in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score))}
    return {**scores, "accuracy": float(accuracy_score(gold, predicted))}


def with_prefix_space(tokenizer):
    """A byte-level BPE tokenizer (RoBERTa, GPT-2, BART) reloaded with add_prefix_space=True: split into
    words, it would encode each word without the space before it ('Ġword'), unlike running text."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    state = (json.loads(backend.to_str()).get("pre_tokenizer") if backend is not None else None) or {}
    parts = state.get("pretokenizers", [state])
    if not any(p.get("type") == "ByteLevel" and not p.get("add_prefix_space") for p in parts):
        return tokenizer
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(tokenizer.name_or_path, add_prefix_space=True)
    if reloaded.pad_token is None:  # as DownstreamTask.load_tokenizer
        reloaded.pad_token = tokenizer.pad_token
    return reloaded

"""Extractive question answering, SQuAD v1.1 and v2.0, as BERT, RoBERTa, ALBERT, ELECTRA and BART
fine-tune it: a start and an end logit per token (AutoModelForQuestionAnswering), trained with the
mean of the two cross-entropies.

    make finetune TASK=squad    MODEL=... DATA=path/to/squad     # train-v1.1.json + dev-v1.1.json
    make finetune TASK=squad_v2 MODEL=... DATA=...               # unanswerable questions
    make predict  TASK=squad    MODEL=<fine-tuned> DATA=...      # predictions.json (+ null_odds.json)

Windows, as HF's run_qa.py and the question-answering pipeline cut them: question + context up to
data.max_seq_length, a context longer than that split into windows overlapping by
objective.doc_stride tokens (the tokenizer's `stride`; BERT's run_squad.py moves its windows by
doc_stride instead). A training window that does not hold the whole answer, and every window of an
unanswerable question, points at the [CLS] token. Prediction: in every window the n_best start and
end logits, spans inside the context, end >= start, at most max_answer_length tokens, scored
start + end; the best span over all windows of the question. v2.0: the null score is the smallest
[CLS] start + end over the windows; the question gets "" when null minus best span exceeds
objective.null_score_diff_threshold (0), and the metric also reports the threshold that is best on
dev (squad_eval.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipelines.config import check_range
from tasks.base import register
from tasks.finetuning.common import eval_tables, gather
from tasks.finetuning.downstream import DownstreamParams, DownstreamTask
from tasks.finetuning.squad_eval import SAMPLE_SIZE, prediction_table, squad_v1_scores, squad_v2_scores
from tasks.shared.batching import attention_mask, pad_stack


@dataclass
class SquadParams(DownstreamParams):
    version_2_with_negative: bool = False  # SQuAD 2.0: questions without an answer in the context
    doc_stride: int = 128  # tokens shared by consecutive windows of a long context
    max_answer_length: int = 30  # tokens, as BERT's run_squad.py
    n_best_size: int = 20  # start and end candidates per window
    null_score_diff_threshold: float = 0.0  # v2.0: predict "" when null - best span score exceeds it

    def check(self, where: str) -> None:
        super().check(where)
        check_range(where, "doc_stride", self.doc_stride, lo=0)
        check_range(where, "max_answer_length", self.max_answer_length, lo=1)
        check_range(where, "n_best_size", self.n_best_size, lo=1)
        check_range(where, "null_score_diff_threshold", self.null_score_diff_threshold)


def answer_positions(offsets: list, start_char: int, end_char: int, cls_index: int) -> tuple[int, int]:
    """(start token, end token) of the answer characters [start_char, end_char) in a window whose
    context tokens have (start, end) offsets (None elsewhere); the [CLS] index twice when the window
    does not hold the whole answer."""
    context = [i for i, o in enumerate(offsets) if o is not None]
    if not context or offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return cls_index, cls_index
    start = next(i for i in context if offsets[i][1] > start_char)
    end = next(i for i in reversed(context) if offsets[i][0] < end_char)
    return start, end


def best_span(start_logits: np.ndarray, end_logits: np.ndarray, offsets: list, n_best: int,
              max_answer_length: int) -> tuple[float, tuple[int, int]] | None:
    """(score, (start char, end char)) of the best valid span of one window, or None."""
    best = None
    starts = np.argsort(start_logits)[::-1][:n_best]
    ends = np.argsort(end_logits)[::-1][:n_best]
    for s in starts:
        if s >= len(offsets) or offsets[s] is None:
            continue
        for e in ends:
            if e >= len(offsets) or offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                continue
            score = float(start_logits[s] + end_logits[e])
            if best is None or score > best[0]:
                best = (score, (offsets[s][0], offsets[e][1]))
    return best


def postprocess(examples: list[dict], features: list[dict], logits: dict[int, tuple], p: SquadParams):
    """({id: best non-null answer text}, {id: null odds}) from each window's (start, end) logits."""
    windows: dict[str, list[int]] = {}
    for f, feature in enumerate(features):
        windows.setdefault(feature["example_id"], []).append(f)
    answers, null_odds = {}, {}
    for e in examples:
        best, null = None, None
        for f in windows.get(e["id"], []):
            if f not in logits:
                continue
            start, end = logits[f]
            cls = features[f]["cls_index"]
            null = min(null, start[cls] + end[cls]) if null is not None else start[cls] + end[cls]
            span = best_span(start, end, features[f]["offsets"], p.n_best_size, p.max_answer_length)
            if span is not None and (best is None or span[0] > best[0]):
                best = span
        answers[e["id"]] = e["context"][best[1][0]:best[1][1]] if best else ""
        # no valid span anywhere: only "" is left (v2.0 odds +inf)
        null_odds[e["id"]] = float(null - best[0]) if best and null is not None else float("inf")
    return answers, null_odds


def with_threshold(answers: dict[str, str], null_odds: dict[str, float], threshold: float) -> dict[str, str]:
    """v2.0 predictions: "" where null minus best span score exceeds `threshold`."""
    return {q: "" if null_odds[q] > threshold else a for q, a in answers.items()}


@register("squad")
class ExtractiveQA(DownstreamTask):
    Params = SquadParams
    auto_class = "AutoModelForQuestionAnswering"
    main_metric = "f1"
    lora_task_type = "QUESTION_ANS"
    lora_head = ("qa_outputs",)

    last_predictions: tuple | list = ()  # the last evaluation's first (example, answer) pairs, for trackers

    @property
    def benchmark(self) -> str:
        return "squad_v2" if self.params.version_2_with_negative else "squad"

    def tracker_tables(self, metrics: dict) -> dict[str, tuple[list[str], list[list]]]:
        return eval_tables(self.benchmark, metrics, prediction_table(self.last_predictions))

    # --- data ------------------------------------------------------------------------------------
    def prepare(self, tokenizer):
        from pipelines.data.squad import load_squad

        self.setup_once(tokenizer)
        p = self.params
        train = self.capped(load_squad(p.data, "train", p.version_2_with_negative), "train")
        self.eval_examples = self.capped(load_squad(p.data, "dev", p.version_2_with_negative), "dev")
        self.eval_features = self.features(self.eval_examples)
        return self.features(train), self.eval_features

    def features(self, examples: list[dict]) -> list[dict]:
        """Every window of every example: input ids, the context tokens' character offsets, the answer
        positions (of the first gold answer) and the example it came from."""
        if not examples:
            return []
        tok, p = self.tokenizer, self.params
        enc = tok([e["question"].lstrip() for e in examples], [e["context"] for e in examples],
                  truncation="only_second", max_length=self.max_length, stride=p.doc_stride,
                  return_overflowing_tokens=True, return_offsets_mapping=True)
        out = []
        for i, ids in enumerate(enc["input_ids"]):
            example = examples[enc["overflow_to_sample_mapping"][i]]
            sequence = enc.sequence_ids(i)
            offsets = [tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][i], sequence)]
            cls = ids.index(tok.cls_token_id) if tok.cls_token_id in ids else 0
            if example["answers"]:
                first = example["answers"][0]
                start, end = answer_positions(offsets, first["answer_start"],
                                              first["answer_start"] + len(first["text"]), cls)
            else:
                start = end = cls
            feature = {"input_ids": ids, "offsets": offsets, "cls_index": cls, "start_positions": start,
                       "end_positions": end, "example_id": example["id"], "feature": len(out)}
            if "token_type_ids" in enc:
                feature["token_type_ids"] = enc["token_type_ids"][i]
            out.append(feature)
        return out

    def example_lengths(self, train_data):
        return [len(f["input_ids"]) for f in train_data]

    def collate(self, examples, generator):
        input_ids = pad_stack([f["input_ids"] for f in examples], self.tokenizer.pad_token_id)
        lengths = torch.tensor([len(f["input_ids"]) for f in examples])
        batch = {"input_ids": input_ids, "attention_mask": attention_mask(lengths, input_ids.size(1)),
                 "start_positions": torch.tensor([f["start_positions"] for f in examples]),
                 "end_positions": torch.tensor([f["end_positions"] for f in examples]),
                 "feature": torch.tensor([f["feature"] for f in examples]), "lengths": lengths}
        if "token_type_ids" in examples[0]:
            batch["token_type_ids"] = pad_stack([f["token_type_ids"] for f in examples], 0)
        return batch

    # --- loss and metrics ------------------------------------------------------------------------
    def loss_counts(self, batch):
        return {"loss": torch.tensor(batch["input_ids"].size(0))}

    def _logits(self, model, batch):
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        out = model(**inputs)
        return out.start_logits.float(), out.end_logits.float()

    def _loss(self, start, end, batch):
        ce = torch.nn.functional.cross_entropy
        both = ce(start, batch["start_positions"], reduction="sum") + ce(end, batch["end_positions"], reduction="sum")
        return {"loss": both / 2}  # the mean of the two, as the transformers QA heads compute it

    def loss(self, model, batch):
        return self._loss(*self._logits(model, batch), batch)

    def eval_batch(self, model, batch):
        """The loss and every window's logits (trimmed to its length, on the host) from one pass."""
        start, end = self._logits(model, batch)
        rows = [(int(f), s[:n].cpu().numpy(), e[:n].cpu().numpy())
                for f, s, e, n in zip(batch["feature"].tolist(), start, end, batch["lengths"].tolist())]
        return self._loss(start, end, batch), rows

    @torch.no_grad()
    def eval_metrics(self, model, batches, outputs=None):
        if outputs is None:
            outputs = [self.eval_batch(model, b)[1] for b in batches]
        logits = {f: (s, e) for f, s, e in gather([row for rows in outputs for row in rows])}
        answers, null_odds = postprocess(self.eval_examples, self.eval_features, logits, self.params)
        seen = {self.eval_features[f]["example_id"] for f in logits}  # training.max_eval_batches may cut the set
        evaluated = [e for e in self.eval_examples if e["id"] in seen]
        v2, threshold = self.params.version_2_with_negative, self.params.null_score_diff_threshold
        final = with_threshold(answers, null_odds, threshold) if v2 else answers
        self.last_predictions = [(e, final[e["id"]]) for e in evaluated[:SAMPLE_SIZE]]
        if v2:
            return squad_v2_scores(evaluated, {e["id"]: answers[e["id"]] for e in evaluated},
                                   {e["id"]: null_odds[e["id"]] for e in evaluated}, threshold)
        return squad_v1_scores(evaluated, answers)

    # --- prediction from an export ---------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model, examples: list[dict], batch_size: int = 64, progress: bool = True):
        """({id: best span's text}, {id: null odds}) of `examples` with `model`, over every window, with a
        progress bar; v2.0 predictions are with_threshold(...) of the two."""
        from tqdm.auto import tqdm

        model.eval()
        device = next(model.parameters()).device
        features = self.features(examples)
        logits = {}
        for i in tqdm(range(0, len(features), batch_size), desc="predict", disable=not progress, unit="batch"):
            batch = {k: v.to(device) for k, v in self.collate(features[i:i + batch_size], None).items()}
            logits.update({f: (s, e) for f, s, e in self.eval_batch(model, batch)[1]})
        return postprocess(examples, features, logits, self.params)

"""SQuAD v1.1 / v2.0 the T5 way (Raffel et al. 2020, appendix D): question answering as text-to-text.

    make finetune TASK=squad    MODEL=<T5 export> DATA=path/to/squad   # picked from the model_type
    make finetune TASK=squad_v2 MODEL=<T5 export> DATA=...
    make predict  TASK=squad    MODEL=<fine-tuned T5> DATA=...         # predictions.json

Input "question: <question> context: <context>", target the first gold answer's text, as HF's
examples/pytorch/question-answering/run_seq2seq_qa.py builds them; the model is the checkpoint's
AutoModelForSeq2SeqLM with its LM head (no new parameters). The input is cut to
data.max_seq_length tokens, so the END of a long context is lost: T5 reads no windows (an answer
past the cut cannot be generated, and counts as wrong). Evaluation decodes greedily (num_beams 1)
up to max_answer_length tokens and scores the text with the official SQuAD EM / F1 (squad_eval.py).
v2.0: an unanswerable question's target is objective.no_answer_text ("unanswerable"); a generation
equal to it (after the official normalisation) is the empty prediction. A generator has no null
score, so v2.0 reports exact / f1 and the HasAns / NoAns halves, without a best threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipelines.config import check_choice, check_range
from pipelines.errors import LmforgeError
from tasks.base import register
from tasks.finetuning.common import eval_tables, gather
from tasks.finetuning.downstream import BestDevEvaluation, capped_rows, check_caps_and_best
from tasks.finetuning.squad_eval import (
    SAMPLE_SIZE,
    normalize_answer,
    prediction_table,
    squad_v1_scores,
    squad_v2_halves,
)
from tasks.finetuning.text_to_text import TextToTextFinetune

# checkpoint families that answer SQuAD by writing the answer (their LM head); others extract a span
TEXT_TO_TEXT_MODEL_TYPES = ("t5", "mt5", "umt5")


def squad_recipe_for(model_type: str) -> str:
    """The SQuAD fine-tuning recipe that suits a checkpoint of `model_type`."""
    return "squad-t5" if model_type in TEXT_TO_TEXT_MODEL_TYPES else "squad"


def t5_input(example: dict) -> str:
    return f"question: {example['question'].lstrip()} context: {example['context'].lstrip()}"


@dataclass
class SquadT5Params:
    data: str | None = None  # a folder with the official JSON files, or a Hub name
    version_2_with_negative: bool = False
    max_answer_length: int = 30  # target tokens: the training cut and the generation limit (run_seq2seq_qa.py)
    no_answer_text: str = "unanswerable"  # v2.0: the target of a question without an answer
    num_beams: int = 1
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    export_best: bool = True  # evaluate every epoch, export the best dev F1 (engine/best.py)
    early_stopping_patience: int = 0
    peft: str = "none"  # named so that objective.peft=lora gets a reason, not "no such key"

    def check(self, where: str) -> None:
        check_caps_and_best(self, where)
        check_range(where, "max_answer_length", self.max_answer_length, lo=1)
        check_range(where, "num_beams", self.num_beams, lo=1)
        if not normalize_answer(self.no_answer_text):  # it must survive normalisation to be told apart
            raise LmforgeError(f"{where}, no_answer_text: {self.no_answer_text!r} is empty once normalised "
                               "(punctuation and articles are dropped); use a word such as 'unanswerable'")
        check_choice(where, "peft", self.peft, ("none", "lora"))
        if self.peft != "none":  # LoRA is wired into the head-based tasks only
            raise LmforgeError(f"{where}, peft: '{self.peft}' is not supported by text-to-text SQuAD (squad-t5); "
                               "fine-tune the full model (objective.peft=none)")


@register("squad-t5")
class SquadTextToText(BestDevEvaluation, TextToTextFinetune):
    Params = SquadT5Params
    main_metric = "f1"

    def __init__(self, recipe):
        super().__init__(recipe)
        if not self.params.data:
            raise LmforgeError(f"recipe '{recipe.name}': no data; pass --data <folder or Hub name> "
                               "(make finetune DATA=...)")
        self.max_target_length = self.params.max_answer_length
        self.last_predictions: list[tuple[dict, str]] = []  # the last evaluation's (example, answer), for trackers

    # --- data ------------------------------------------------------------------------------------
    def target(self, example: dict) -> str:
        return example["answers"][0]["text"] if example["answers"] else self.params.no_answer_text

    def prepare(self, tokenizer):
        from pipelines.data.squad import load_squad

        self.setup_once(tokenizer)
        p, seed = self.params, self.recipe.training.seed
        train = capped_rows(load_squad(p.data, "train", p.version_2_with_negative), "train", p, seed)
        self.eval_examples = capped_rows(load_squad(p.data, "dev", p.version_2_with_negative), "dev", p, seed)
        encode = [self.encode([t5_input(e) for e in rows], [self.target(e) for e in rows], ref=list(range(len(rows))))
                  for rows in (train, self.eval_examples)]
        return encode[0], encode[1]

    def answer(self, text: str) -> str:
        """The prediction a generation stands for: "" for the no-answer text under v2.0."""
        if self.params.version_2_with_negative and normalize_answer(text) == normalize_answer(
                self.params.no_answer_text):
            return ""
        return text

    # --- evaluation ------------------------------------------------------------------------------
    def scores(self, examples: list[dict], predictions: dict[str, str]) -> dict[str, float]:
        if self.params.version_2_with_negative:
            return squad_v2_halves(examples, predictions)
        return squad_v1_scores(examples, predictions)

    @torch.no_grad()
    def eval_metrics(self, model, batches):
        rows = []
        for b in batches:
            texts, _ = self.generate(model, b, max_new_tokens=self.params.max_answer_length,
                                     num_beams=self.params.num_beams)
            rows += list(zip(b["ref"].tolist(), texts))
        rows = sorted(dict(gather(rows)).items())  # once each; training.max_eval_batches may have cut the set
        evaluated = [self.eval_examples[i] for i, _ in rows]
        predictions = {self.eval_examples[i]["id"]: self.answer(text) for i, text in rows}
        self.last_predictions = [(e, predictions[e["id"]]) for e in evaluated[:SAMPLE_SIZE]]
        return self.scores(evaluated, predictions)

    def tracker_tables(self, metrics: dict) -> dict[str, tuple[list[str], list[list]]]:
        name = "squad_v2" if self.params.version_2_with_negative else "squad"
        return eval_tables(name, metrics, prediction_table(self.last_predictions))

    # --- prediction from an export ---------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model, examples: list[dict], batch_size: int = 64, progress: bool = True) -> dict[str, str]:
        """{id: answer} ("" for no answer) of `examples`, generated by `model`, with a progress bar."""
        from tqdm.auto import tqdm

        from tasks.shared.batching import attention_mask, pad_stack

        model.eval()
        device = next(model.parameters()).device
        ids = self.tokenizer([t5_input(e) for e in examples], truncation=True, max_length=self.max_length)["input_ids"]
        out = {}
        for i in tqdm(range(0, len(ids), batch_size), desc="predict", disable=not progress, unit="batch"):
            chunk = ids[i:i + batch_size]
            input_ids = pad_stack(chunk, self.tokenizer.pad_token_id)
            lengths = torch.tensor([len(x) for x in chunk])
            batch = {"input_ids": input_ids.to(device),
                     "attention_mask": attention_mask(lengths, input_ids.size(1)).to(device)}
            texts, _ = self.generate(model, batch, max_new_tokens=self.params.max_answer_length,
                                     num_beams=self.params.num_beams)
            out.update({e["id"]: self.answer(t) for e, t in zip(examples[i:i + batch_size], texts)})
        return out


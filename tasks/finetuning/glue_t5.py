"""GLUE the T5 way (Raffel et al. 2020, section 2.4 and appendix D): every task is text-to-text.

Input: the task prefix and the named fields ('sst2 sentence: ...', 'mnli hypothesis: ... premise:
...'); target: the label word ('positive', 'entailment'), for STS-B the score rounded to 0.2 as
text ('3.8'). The model is the checkpoint's AutoModelForSeq2SeqLM with its LM head: no new
parameters. Evaluation decodes greedily and maps the text back to a label with t5_parse_target.

Generations that are no label (the paper: "considered wrong") are counted and reported as
`unparsable` (share of eval examples), and scored as wrong: for classification the prediction
becomes a class other than the reference, (ref + 1) % num_labels (any wrong class gives the same
accuracy and, for the binary tasks, the only wrong class is also what F1 and Matthews must see;
an id like -1 would make scikit-learn's binary F1 refuse the multiclass input). For STS-B an
unparsable or non-finite output becomes the mean training score, the guess without information.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pipelines.config import check_range
from pipelines.errors import LmforgeError
from tasks.base import register
from tasks.finetuning.common import gather
from tasks.finetuning.glue import GlueParams, load_glue_splits, split_metrics
from tasks.finetuning.text_to_text import TextToTextFinetune

# Slack for max_new_tokens beyond the longest label target: output that runs on past a label
# is kept visible (and unparsable) instead of being cut back to a valid label.
_EXTRA_TOKENS = 2
# Checkpoint families fine-tuned on GLUE as text-to-text (their LM head writes the label word);
# every other family gets a classification head (recipe "glue").
TEXT_TO_TEXT_MODEL_TYPES = ("t5",)


def glue_recipe_for(model_type: str) -> str:
    """The GLUE fine-tuning recipe that suits a checkpoint of `model_type`."""
    return "glue-t5" if model_type in TEXT_TO_TEXT_MODEL_TYPES else "glue"


@dataclass
class GlueT5Params(GlueParams):
    max_new_tokens: int | None = None  # None: the longest label target + 2 tokens
    export_best: bool = False  # text-to-text exports the last step (the keeper lives in glue.py's task)

    def check(self, where: str) -> None:
        # the classification task's features, refused here before GlueParams.check ties them together
        for name, value in (("export_best", self.export_best), ("early_stopping_patience",
                                                                 self.early_stopping_patience),
                            ("init_from", self.init_from)):
            if value:
                raise LmforgeError(f"{where}, {name}: not supported by text-to-text GLUE (glue-t5); it needs "
                                   "a classification head (--recipe glue)")
        super().check(where)
        check_range(where, "max_new_tokens", self.max_new_tokens, lo=1)
        if self.peft != "none":  # LoRA is wired into the classification head task only
            raise LmforgeError(f"{where}, peft: '{self.peft}' is not supported by text-to-text GLUE (glue-t5); "
                               "use --recipe glue (T5ForSequenceClassification) for LoRA")


@register("glue-t5")
class GlueTextToText(TextToTextFinetune):
    Params = GlueT5Params

    def __init__(self, recipe):
        super().__init__(recipe)
        from pipelines.data.glue import get_glue_task

        self.spec = get_glue_task(self.params.glue_task)

    def label_words(self) -> list[str]:
        from pipelines.data.glue import t5_target

        if self.spec.is_regression:
            return [t5_target(self.spec.name, i / 5) for i in range(26)]  # 0.0, 0.2, ..., 5.0
        return [t5_target(self.spec.name, i) for i in range(self.spec.num_labels)]

    def setup(self, tokenizer):
        super().setup(tokenizer)
        words = tokenizer(text_target=self.label_words())["input_ids"]
        self.max_target_length = max(len(w) for w in words)
        self.max_new_tokens = self.params.max_new_tokens or self.max_target_length + _EXTRA_TOKENS

    def prepare(self, tokenizer):
        from pipelines.data.glue import t5_input, t5_target

        self.setup_once(tokenizer)
        name = self.spec.name
        train, evals = load_glue_splits(self.params, self.recipe.training.seed)
        # STS-B's fallback for unparsable output; the label column is float there
        self.mean_label = float(sum(train["label"]) / len(train)) if self.spec.is_regression else None

        def encode(rows, split_id):
            return self.encode([t5_input(name, r) for r in rows], [t5_target(name, r["label"]) for r in rows],
                               split=[split_id] * len(rows), label=list(rows["label"]))

        return encode(train, 0), [e for split_id, rows in evals for e in encode(rows, split_id)]

    def parse(self, text: str, reference) -> tuple[int | float, bool]:
        """(prediction for the metric, whether the text was a valid label)."""
        from pipelines.data.glue import t5_parse_target

        value = t5_parse_target(self.spec.name, text)
        if self.spec.is_regression:
            ok = value is not None and math.isfinite(value)
            return (value if ok else self.mean_label), ok
        if value is None:
            return (int(reference) + 1) % self.spec.num_labels, False
        return value, True

    @torch.no_grad()
    def eval_metrics(self, model, batches):
        rows = []
        for b in batches:
            texts, _ = self.generate(model, b, max_new_tokens=self.max_new_tokens, num_beams=1)
            for text, split, ref in zip(texts, b["split"].tolist(), b["label"].tolist()):
                pred, ok = self.parse(text, ref)
                rows.append((split, pred, ref, ok))
        rows = gather(rows)
        out = split_metrics(self.spec, [(s, p, r) for s, p, r, _ in rows])
        out["unparsable"] = sum(not ok for *_, ok in rows) / max(len(rows), 1)
        return out

"""What every downstream task fine-tuned from a checkpoint shares (extractive QA, multiple choice,
NER): the checkpoint loaded through one transformers `AutoModelFor...` head class (or the same
architecture from random init, the baseline pretraining must beat), LoRA, the best dev evaluation
exported on the task's main metric, early stopping, example caps for quick runs, and the input
length the checkpoint supports. A task file says only what makes its task what it is: the reader,
the features, the loss and the metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pipelines.config import check_choice, check_range
from pipelines.errors import LmforgeError, one_line
from tasks.base import Task
from tasks.finetuning.common import eval_tables, fit_max_length
from tasks.finetuning.lora import LoraParams


@dataclass
class DownstreamParams:
    data: str | None = None  # a local folder / file in the task's official format, or a Hub dataset name
    max_train_examples: int | None = None  # cap for quick runs (a seeded random subset)
    max_eval_examples: int | None = None  # the first rows of the dev set, so every run scores the same
    random_init: bool = False  # same architecture, fresh weights: the baseline pretraining must beat
    export_best: bool = True  # evaluate every epoch and export the best dev evaluation (engine/best.py)
    early_stopping_patience: int = 0  # stop after this many evaluations without a better one; 0: off
    peft: str = "none"  # none | lora (tasks/finetuning/lora.py)
    lora: LoraParams = field(default_factory=LoraParams)

    def check(self, where: str) -> None:
        check_fine_tuning(self, where)


def check_fine_tuning(p, where: str) -> None:
    """The settings every fine-tuning params class shares (GLUE's too): caps, best export and early
    stopping, LoRA."""
    check_caps_and_best(p, where)
    check_choice(where, "peft", p.peft, ("none", "lora"))
    if p.peft == "lora" and p.random_init:  # frozen random weights cannot be rebuilt from an adapter
        raise LmforgeError(f"{where}: random_init and peft=lora together: LoRA needs pretrained weights")
    p.lora.check(where)


def check_caps_and_best(p, where: str) -> None:
    """Example caps, best export and early stopping (also the text-to-text tasks' settings)."""
    for name in ("max_train_examples", "max_eval_examples"):
        check_range(where, name, getattr(p, name), lo=1)
    check_range(where, "early_stopping_patience", p.early_stopping_patience, lo=0)
    if p.early_stopping_patience and not p.export_best:  # as HF Trainer's load_best_model_at_end
        raise LmforgeError(f"{where}, early_stopping_patience: {p.early_stopping_patience} needs "
                           "export_best=true (stopping on no gain and exporting the last, worse, weights)")


def capped_rows(rows: list, split: str, p, seed: int) -> list:
    """p.max_train_examples (a subset drawn with the run's seed) or p.max_eval_examples (the first rows,
    so every run scores the same)."""
    import random

    if split == "train" and p.max_train_examples and len(rows) > p.max_train_examples:
        return random.Random(seed).sample(rows, p.max_train_examples)
    if split != "train" and p.max_eval_examples:
        return rows[: p.max_eval_examples]
    return rows


class BestDevEvaluation:
    """The evaluation schedule of a task with objective.export_best and early_stopping_patience (the
    downstream heads, SQuAD on T5): the best dev evaluation on `main_metric` is exported."""

    main_metric: ClassVar[str] = ""  # the dev metric the best evaluation is chosen by

    def keep_best(self) -> tuple[str, int] | None:
        return (self.main_metric, self.params.early_stopping_patience) if self.params.export_best else None

    def eval_every(self, steps_per_epoch: int) -> int:
        """training.eval_steps when set; otherwise every epoch while the best evaluation is kept."""
        return self.recipe.training.eval_steps or (steps_per_epoch if self.keep_best() else 0)


class DownstreamTask(BestDevEvaluation, Task):
    """A checkpoint fine-tuned through `auto_class`; subclasses set the class attributes below and
    write prepare / collate / loss / eval_metrics."""

    Params = DownstreamParams
    auto_class: ClassVar[str] = ""  # transformers name, e.g. "AutoModelForTokenClassification"
    lora_task_type: ClassVar[str] = "SEQ_CLS"  # peft TaskType name
    lora_head: ClassVar[tuple[str, ...]] = ("classifier",)  # head modules trained in full under LoRA

    def __init__(self, recipe):
        super().__init__(recipe)
        self.where = f"recipe '{recipe.name}'"
        if not recipe.model.name_or_path:
            raise LmforgeError(f"{self.where}: fine-tuning needs model.name_or_path (a checkpoint; "
                               "make finetune MODEL=<folder>)")
        if not self.params.data:
            raise LmforgeError(f"{self.where}: no data; pass --data <folder or Hub name> (make finetune DATA=...)")

    def load_tokenizer(self):
        tok = super().load_tokenizer()
        if tok.pad_token is None:  # GPT-2 style tokenizers have none; end-of-text pads (never attended)
            tok.pad_token = tok.eos_token
        return tok

    def setup(self, tokenizer):
        super().setup(tokenizer)
        self.max_length = fit_max_length(self.recipe, tokenizer)

    # --- the model -------------------------------------------------------------------------------
    def model_kwargs(self) -> dict:
        """Config changes the head needs (label maps for token classification); none by default."""
        return {}

    def build_model(self, tokenizer):
        import transformers

        from tasks.shared.modeling import check_vocab

        auto = getattr(transformers, self.auto_class)
        path = self.recipe.model.name_or_path
        # model.config changes the checkpoint's config, as in GlueTask.build_model
        kwargs = {"pad_token_id": tokenizer.pad_token_id, **self.model_kwargs(), **self.recipe.model.config}
        missing: list[str] = []
        try:
            if self.params.random_init:
                model = auto.from_config(transformers.AutoConfig.from_pretrained(path, **kwargs))
            else:
                model, info = auto.from_pretrained(path, output_loading_info=True, **kwargs)
                missing = list(info["missing_keys"])
        except (OSError, ValueError) as exc:
            raise LmforgeError(f"--model {path}: cannot load with {self.auto_class}: {one_line(exc)}") from None
        check_vocab(model, tokenizer, f"--model {path}")
        if self.params.peft == "lora":
            from tasks.finetuning.lora import wrap_lora

            model = wrap_lora(model, self.params.lora, f"{self.where}, section 'objective'", missing,
                              head=self.lora_head, task_type=self.lora_task_type)
        return model

    def export(self, model, tokenizer, out_dir: Path, state_dict: dict | None = None) -> list[Path]:
        from tasks.finetuning.lora import export_lora, is_peft

        if is_peft(model):  # the merged model in out_dir, the adapter next to it
            return export_lora(model, tokenizer, Path(out_dir), self.recipe)
        return super().export(model, tokenizer, out_dir, state_dict=state_dict)

    # --- the trackers' tables --------------------------------------------------------------------
    @property
    def benchmark(self) -> str:
        """The benchmark's name in tables and cards (squad_v2, race, ...); the task's name by default."""
        return self.name

    def tracker_tables(self, metrics: dict) -> dict[str, tuple[list[str], list[list]]]:
        return eval_tables(self.benchmark, metrics)

    # --- helpers for prepare ---------------------------------------------------------------------
    def capped(self, rows: list, split: str) -> list:
        return capped_rows(rows, split, self.params, self.recipe.training.seed)

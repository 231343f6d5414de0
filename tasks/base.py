"""The Task contract: everything that differs between objectives lives behind this interface.

The engine (pipelines/engine/loop.py) knows nothing about model families. A task builds the model,
turns documents into examples, corrupts a batch (the collator), and returns its loss terms
as SUMS with the number of units each term averages over. The engine divides every term
by its count over the whole global batch (all micro-batches, all ranks), so
bs 32 x GA 1 and bs 8 x GA 4 give the same loss and the same gradients.

Call order: Task(recipe) (checks the objective parameters) -> load_tokenizer -> setup(tokenizer)
(everything collate needs) -> prepare (examples) -> build_model -> collate / loss per step ->
export. A task reads the recipe and never writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from pipelines.config import Recipe, validate_params
from pipelines.errors import LmforgeError


@dataclass
class NoParams:
    """Tasks without objective parameters."""


class Task:
    """Base class; subclasses register with @register("name")."""

    name: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    # name -> weight of each loss term; total = sum(weight * term_sum / term_count)
    loss_weights: ClassVar[dict[str, float]] = {"loss": 1.0}
    # the tokenizer kinds this task can use: wordpiece | bpe | unigram
    tokenizer_kinds: ClassVar[tuple[str, ...]] = ("wordpiece", "bpe", "unigram")

    def __init__(self, recipe: Recipe):
        # the recipe is read, never written: values a task derives (a length the checkpoint
        # supports, ...) live on the task, so recipe.json records what the user asked for
        self.recipe = recipe
        self.params = validate_params(self.Params, recipe.objective, f"recipe '{recipe.name}', section 'objective'")
        # the longest input the task builds; setup() may lower it (fine-tuning: the checkpoint's limit)
        self.max_length: int = recipe.data.max_seq_length
        if recipe.training.group_by_length and type(self).example_lengths is Task.example_lengths:
            # refused before any data is prepared: a setting that silently did nothing would be a bug
            raise LmforgeError(f"recipe '{recipe.name}', training.group_by_length: task '{self.name}' has no "
                               "per-example lengths to group by (its examples are packed to one length); set "
                               "training.group_by_length=false")

    # --- data -------------------------------------------------------------------------
    def load_tokenizer(self):
        """The recipe's tokenizer, or one built from the corpus for the model family."""
        from tasks.shared.tokenizer import load_or_build_tokenizer

        return load_or_build_tokenizer(self.recipe, self.tokenizer_kinds)

    def setup(self, tokenizer) -> None:
        """Called once by the engine after load_tokenizer and before prepare/build_model/collate;
        sets everything collate() needs (the tokenizer, label maps, lengths, ...)."""
        self.tokenizer = tokenizer

    def setup_once(self, tokenizer) -> None:
        """setup(tokenizer) unless it already ran with this tokenizer. A prepare() that depends on
        setup calls this, so it also works when called directly (tests) without setup."""
        if getattr(self, "tokenizer", None) is not tokenizer:
            self.setup(tokenizer)

    def prepare(self, tokenizer) -> tuple[Any, Any]:
        """(train examples, eval examples): sequences of dicts the collator accepts."""
        raise NotImplementedError

    def example_lengths(self, train_data) -> list[int] | None:
        """The length of each training example, for training.group_by_length (pipelines/data/sampler.py);
        None: the examples have one length (packed pretraining blocks), there is nothing to group."""
        return None

    def collate(self, examples: list[dict], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Pad and corrupt one micro-batch. All randomness comes from `generator`, which the engine
        seeds from (seed, step, micro-step, rank): runs and resumes are reproducible."""
        raise NotImplementedError

    # --- model ------------------------------------------------------------------------
    def build_model(self, tokenizer) -> torch.nn.Module:
        raise NotImplementedError

    def loss_counts(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Units each loss term is averaged over (known before the forward pass)."""
        return {"loss": (batch["labels"] != -100).sum()}

    def loss(self, model, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Summed (not averaged) loss of each term in loss_weights. Call the model only through
        its top-level forward (`model(...)`): DDP's gradient hooks and accelerate's autocast
        live there, so family logic that needs several submodules belongs in a module's forward."""
        raise NotImplementedError

    def tokens_in(self, batch: dict[str, torch.Tensor]) -> int:
        """Real (non-padding) input tokens of a batch, for tokens/s."""
        mask = batch.get("attention_mask")
        return int(mask.sum()) if mask is not None else batch["input_ids"].numel()

    def loss_metrics(self, means: dict[str, float]) -> dict[str, float]:
        """Metrics derived from the per-term eval losses (already averaged over all ranks),
        e.g. perplexity; no extra forward pass."""
        return {}

    def eval_batch(self, model, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Any]:
        """(loss terms as in loss(), outputs for eval_metrics) of one eval batch, from ONE forward pass:
        a task whose metrics need the model's outputs (GLUE's predictions) returns them here instead of
        running the model again in eval_metrics. Default: loss() and no outputs."""
        return self.loss(model, batch), None

    def eval_metrics(self, model, batches, outputs: list | None = None) -> dict[str, float]:
        """Extra metrics beyond the per-term losses the engine computes (accuracy, F1, ...). `outputs`:
        eval_batch's outputs per batch; the engine passes them only when eval_batch returned some, so
        an override without the argument keeps working."""
        return {}

    def eval_every(self, steps_per_epoch: int) -> int:
        """Optimizer steps between evaluations during training; 0: only the final one."""
        return self.recipe.training.eval_steps

    def keep_best(self) -> tuple[str, int] | None:
        """(dev metric, patience) to export the best evaluation on that metric instead of the last step,
        stopping after `patience` evaluations without gain (0: never); None (default): the last step.
        The engine keeps the best weights (pipelines/engine/best.py)."""
        return None

    def tracker_tables(self, metrics: dict) -> dict[str, tuple[list[str], list[list]]]:
        """Tables for the run's trackers when it ends (a W&B Table each): name -> (columns, rows).
        `metrics`: the evaluation the export holds, without the 'eval/' prefix. Default: none."""
        return {}

    # --- export -----------------------------------------------------------------------
    def export(self, model, tokenizer, out_dir: Path, state_dict: dict | None = None) -> list[Path]:
        """save_pretrained folders that load with the right AutoModelFor... class. `state_dict` is the
        gathered full state (ZeRO-3 / FSDP); None means the model's own parameters."""
        write_pretrained(model, tokenizer, Path(out_dir), self.recipe, state_dict=state_dict)
        return [Path(out_dir)]

    def flops_per_token(self, model) -> float | None:
        """Training FLOPs per token (6N + attention) for MFU; None when unknown."""
        from pipelines.engine.flops import transformer_flops_per_token

        return transformer_flops_per_token(model, self.max_length)


def write_pretrained(model, tokenizer, out_dir: Path, recipe: Recipe | None = None, card: str | None = None,
                     state_dict: dict | None = None):
    """save_pretrained (safetensors) + tokenizer + model card, published atomically: a folder
    that exists under its final name is complete."""
    from pipelines.atomic import atomic_folder
    from pipelines.runs.model_card import model_card

    with atomic_folder(out_dir) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict)  # safetensors is the default
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(card or model_card(model, recipe), encoding="utf-8")


_REGISTRY: dict[str, type[Task]] = {}


def register(name: str):
    def wrap(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _discover() -> None:
    """Import every module of tasks/objectives, tasks/finetuning and tasks/distillation: each registers
    its tasks with @register. Modules are discovered, not listed: a new file is picked up, and a
    module that fails to import fails loudly instead of being skipped."""
    import importlib
    import pkgutil

    for package in ("objectives", "finetuning", "distillation"):
        pkg = importlib.import_module(f"tasks.{package}")
        for info in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"tasks.{package}.{info.name}")


def get_task(name: str) -> type[Task]:
    _discover()
    if name not in _REGISTRY:
        raise LmforgeError(f"unknown task '{name}' (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]


def task_names() -> list[str]:
    _discover()
    return sorted(_REGISTRY)

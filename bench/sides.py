"""The shapes of the suite: a Comparison is a list of Sides (lmforge runs and a baseline), each a
command for a fresh process plus how to read what it measured. The lmforge sides are the real CLI
(`python -m pipelines pretrain|finetune ...`), read back from the run's own metrics.jsonl."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    child_command,
    lmforge_command,
    losses_at,
    read_metrics,
    steady_from_metrics,
    steady_from_step_ends,
)


@dataclass
class Context:
    """One invocation's settings and inputs, shared by every comparison."""

    work: Path
    corpus: Path | None  # WikiText-2 valid+test, one file (None: absent)
    tokenizers: dict[str, str]  # family -> tokenizer folder trained in this invocation
    steps: int  # optimizer steps of each pretraining run
    warmup: int  # steady window starts after this step
    log_every: int
    seed: int
    glue: dict = field(default_factory=dict)  # task, dir, model, examples, epochs, lr, batch, precision, ...


@dataclass
class Side:
    name: str  # key in the JSON: lmforge, lmforge-compile, hf-trainer, nanogpt
    label: str  # what the markdown table says
    command: Callable[[Path, int], list[str]]  # (scratch folder, rep) -> argv
    read: Callable[[dict, Path], dict]  # (run_child's result, scratch folder) -> measured fields
    lmforge: bool = True
    recipe: tuple[str, list[str]] | None = None  # lmforge pretraining: (recipe, overrides), for FLOPs/token


@dataclass
class Comparison:
    name: str
    title: str
    sides: list[Side]
    unit: str = "tokens"  # the throughput unit compared: tokens | samples
    baseline: str | None = None  # the side the ratios divide by
    target: float | None = None  # lmforge / baseline must reach this
    losses: bool = False  # a loss-at-equal-steps table and plot


def pretrain_baseline(ctx: Context, child: str, recipe: str, family: str, name: str, label: str) -> Side:
    """A baseline pretraining process (`python -m bench --child CHILD SPEC`) on the bench corpus
    and tokenizer, read back as steady throughput and the loss of each logged step (and, when it
    reports one, the seconds to its first step)."""
    def command(scratch: Path, rep: int) -> list[str]:
        return child_command(child, {"recipe": recipe, "file": str(ctx.corpus), "tokenizer": ctx.tokenizers[family],
                                     "steps": ctx.steps, "log_every": ctx.log_every, "seed": ctx.seed,
                                     "out": str(scratch / "out")})

    def read(result: dict, scratch: Path) -> dict:
        out = {"steady": steady_from_step_ends(result.get("step_ends", []), ctx.warmup, tokens=result.get("tokens")),
               "losses": {int(k): v for k, v in result.get("losses", {}).items()}}
        if "first_step_s" in result:
            out["first_step_s"] = result["first_step_s"]
        return out

    return Side(name, label, command, read, lmforge=False)


def pretrain_side(ctx: Context, recipe: str, family: str, name: str = "lmforge", label: str | None = None,
                  extra: tuple[str, ...] = ()) -> Side:
    """`python -m pipelines pretrain RECIPE` on the bench corpus with the bench tokenizer, no
    intermediate evaluation or checkpoint; the final evaluation reads 1 batch, the export is kept."""
    overrides = [f"data.corpus={ctx.corpus}", f"tokenizer.name_or_path={ctx.tokenizers[family]}",
                 f"training.max_steps={ctx.steps}", f"training.logging_steps={ctx.log_every}",
                 "training.eval_steps=0", "training.save_steps=0", "training.max_eval_batches=1",
                 f"training.seed={ctx.seed}", *extra]

    def command(scratch: Path, rep: int) -> list[str]:
        return lmforge_command("pretrain", recipe, *overrides, f"training.output_dir={scratch / 'out'}")

    def read(result: dict, scratch: Path) -> dict:
        records = read_metrics(scratch / "out" / "metrics.jsonl")
        config = scratch / "out" / "final" / "config.json"
        return {"steady": steady_from_metrics(records, ctx.warmup), "losses": losses_at(records),
                "model_config": json.loads(config.read_text()) if config.is_file() else None}

    return Side(name, label or f"lmforge `pretrain {recipe}`", command, read, recipe=(recipe, overrides))


def glue_side(ctx: Context, name: str = "lmforge", label: str | None = None, extra: tuple[str, ...] = ()) -> Side:
    """`python -m pipelines finetune --task glue/<task>` with the same hyperparameters as the
    Trainer baseline; best-epoch export and mid-run evaluation off (one evaluation at the end, as
    the baseline does). `extra`: overrides of this side (training.padding_free=...)."""
    g = ctx.glue

    def command(scratch: Path, rep: int) -> list[str]:
        overrides = [f"training.num_train_epochs={g['epochs']}", f"training.per_device_train_batch_size={g['batch']}",
                     f"training.learning_rate={g['lr']}", f"training.warmup_ratio={g['warmup_ratio']}",
                     "training.weight_decay=0.01", "training.lr_scheduler_type=linear",
                     f"training.mixed_precision={g['precision']}", f"data.max_seq_length={g['max_length']}",
                     f"training.logging_steps={ctx.log_every}", "training.eval_steps=0", "objective.export_best=false",
                     f"training.seed={ctx.seed + rep}"]
        # length grouping (off in glue.yaml): the suite sets both sides alike (--glue-grouping), so the
        # row compares equal batching (the Trainer's switch: bench/glue.py)
        overrides += [f"training.group_by_length={str(g.get('group_by_length', True)).lower()}"]
        overrides += [f"objective.max_train_examples={g['examples']}"] if g.get("examples") else []
        overrides += [f"objective.max_eval_examples={g['eval_examples']}"] if g.get("eval_examples") else []
        overrides += list(extra)
        return lmforge_command("finetune", "--task", f"glue/{g['task']}", "--model", g["model"],
                               "--glue_dir", str(g["dir"]), "--output_dir", str(scratch / "out"), *overrides)

    def read(result: dict, scratch: Path) -> dict:
        found = sorted((scratch / "out").rglob("metrics.jsonl"))
        records = read_metrics(found[0]) if found else []
        evals = [r for r in records if any(k.startswith("eval/") for k in r)]
        metrics = {k.removeprefix("eval/"): v for k, v in (evals[-1] if evals else {}).items()
                   if k.startswith("eval/") and k != "eval/loss"}
        return {"steady": steady_from_metrics(records, ctx.warmup, batch=g["batch"]), "dev": metrics}

    return Side(name, label or f"lmforge `finetune --task glue/{g['task']}`", command, read)

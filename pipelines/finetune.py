"""`finetune`: run a checkpoint through every requested GLUE task (or a seq2seq task) with the
one training engine, write each task's results JSON and print the GLUE summary table."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pipelines.config import load_recipe
from pipelines.errors import LmforgeError

# model_type -> the fine-tuning recipe that suits it (text-to-text for T5, a head for the rest)
_GLUE_RECIPE = {"t5": "glue-t5"}


def resolve_model(model: str) -> str:
    """A checkpoint folder, a pretrain recipe name whose export exists (runs/<name>/final), or a Hub name."""
    if Path(model).is_dir():
        if not (Path(model) / "config.json").exists():
            raise LmforgeError(f"--model {model}: folder has no config.json (not a save_pretrained folder)")
        return model
    exported = Path("runs") / model / "final"
    if (exported / "config.json").exists():
        return str(exported)
    if Path(model).suffix or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise LmforgeError(f"--model {model}: no such checkpoint folder")
    return model  # a Hub name: from_pretrained reports it if it cannot be had


def glue_task_list(spec: str, glue_dir: str | None) -> list[str]:
    from tasks.finetuning.glue_data import GLUE_TASKS, get_glue_task, glue_tasks_present

    if spec.startswith("glue/"):
        return [get_glue_task(spec.split("/", 1)[1]).name]
    if glue_dir:
        if not Path(glue_dir).is_dir():
            raise LmforgeError(f"--glue_dir {glue_dir}: no such folder")
        found = glue_tasks_present(glue_dir)
        if not found:
            raise LmforgeError(f"--glue_dir {glue_dir}: no GLUE task folder with train.tsv and dev.tsv")
        return found
    return list(GLUE_TASKS)


def model_type(path: str) -> str:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path).model_type
    except (OSError, ValueError) as exc:
        raise LmforgeError(f"--model {path}: cannot read its config: {' '.join(str(exc).split())[:200]}") from None


def run_finetune(task: str, model: str, glue_dir=None, data=None, recipe_name=None, overrides=(), output_dir=None):
    from pipelines.engine import train
    from tasks.base import get_task

    path = resolve_model(model)
    if task == "summarization" or task.startswith("seq2seq"):
        from pipelines.seq2seq_finetune import run_seq2seq

        return run_seq2seq(task, path, data, recipe_name, list(overrides), output_dir)
    if task != "glue" and not task.startswith("glue/"):
        raise LmforgeError(f"--task {task}: expected glue, glue/<task> or summarization")
    names = glue_task_list(task, glue_dir)
    recipe_name = recipe_name or _GLUE_RECIPE.get(model_type(path), "glue")
    root = Path(output_dir or Path("runs") / "finetune" / Path(path).name)
    summary = {}
    for name in names:
        fixed = [f"objective.glue_task={name}", f"model.name_or_path={path}",
                 f"training.output_dir={root / name}", f"name={recipe_name}-{name}"]
        if glue_dir:
            fixed.append(f"objective.glue_dir={os.path.abspath(glue_dir)}")
        recipe = load_recipe(recipe_name, fixed + list(overrides))
        result = train(get_task(recipe.task)(recipe), recipe)
        metrics = {k.removeprefix("eval/"): v for k, v in result.eval_metrics.items() if not k.startswith("eval/loss")}
        summary[name] = metrics
        write_json(root / name / "eval_results.json", {"task": name, "model": path, **metrics})
    write_json(root / "glue_results.json", summary)
    print(summary_table(summary))
    return summary


def write_json(path: Path, obj) -> None:
    """Atomic: a results file that exists is complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def summary_table(summary: dict[str, dict]) -> str:
    lines = [f"{'task':8s} {'metrics'}", "-" * 60]
    for task, metrics in summary.items():
        lines.append(f"{task:8s} " + "  ".join(f"{k}={100 * v:.2f}" for k, v in metrics.items()))
    return "\n".join(lines)

"""`finetune`: run a checkpoint through every requested GLUE task, or a summarization / translation
task, with the one training engine; write each run's results JSON and print the scores.

    python -m pipelines finetune --task glue --model runs/bert-tiny/final --glue_dir GLUE
    python -m pipelines finetune --task summarization --model runs/t5-tiny/final --data news.jsonl
    make finetune TASK=summarization MODEL=runs/bart-tiny/final DATA=news.jsonl

Which recipe suits a checkpoint is the tasks' decision (tasks/finetuning/glue_t5.py: text-to-text
for T5, a classification head otherwise); the driver only reads the checkpoint's model_type.

Default output: runs/finetune/<model label>/<task>, where a local folder is labelled by its parent,
its own name and a short hash of its absolute path (runs/bert-tiny/final ->
runs/finetune/bert-tiny-final-<hash>), so two models in folders of the same name (every export is
called `final`) never share an output folder; a Hub name is labelled org--name.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pipelines.atomic import atomic_write_json
from pipelines.config import load_recipe
from pipelines.errors import LmforgeError

SEQ2SEQ_RECIPE = "summarization"


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


def default_output_root(model: str) -> Path:
    """runs/finetune/<label> for a checkpoint folder or Hub name (see the module docstring)."""
    folder = Path(model)
    if folder.is_dir():
        absolute = folder.resolve()
        digest = hashlib.sha256(str(absolute).encode()).hexdigest()[:8]
        label = "-".join(part for part in (absolute.parent.name, absolute.name) if part)
        return Path("runs") / "finetune" / f"{label}-{digest}"
    return Path("runs") / "finetune" / model.replace("/", "--")


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


def run_finetune(task: str, model: str, glue_dir=None, data=None, recipe_name=None, overrides=(), output_dir=None):
    """Fine-tune `model` on `task` (glue, glue/<name>, summarization, seq2seq...); return the metrics."""
    path = resolve_model(model)
    if task == "summarization" or task.startswith("seq2seq"):
        return run_seq2seq(task, path, data, recipe_name, list(overrides), output_dir)
    if task != "glue" and not task.startswith("glue/"):
        raise LmforgeError(f"--task {task}: expected glue, glue/<task> or summarization")
    return run_glue(task, path, glue_dir, recipe_name, list(overrides), output_dir)


def run_glue(task: str, path: str, glue_dir=None, recipe_name=None, overrides=(), output_dir=None) -> dict:
    """One run per GLUE task; writes <task>/eval_results.json and glue_results.json, prints the table."""
    from tasks.finetuning.common import checkpoint_config
    from tasks.finetuning.glue_t5 import glue_recipe_for

    names = glue_task_list(task, glue_dir)
    recipe_name = recipe_name or glue_recipe_for(checkpoint_config(path).model_type)
    root = Path(output_dir or default_output_root(path))
    summary = {}
    for name in names:
        fixed = [f"objective.glue_task={name}", f"model.name_or_path={path}",
                 f"training.output_dir={root / name}", f"name={recipe_name}-{name}"]
        if glue_dir:
            fixed.append(f"objective.glue_dir={os.path.abspath(glue_dir)}")
        metrics = _train(load_recipe(recipe_name, fixed + list(overrides)))
        summary[name] = {k: v for k, v in metrics.items() if not k.startswith("loss")}
        atomic_write_json(root / name / "eval_results.json", {"task": name, "model": path, **summary[name]})
    atomic_write_json(root / "glue_results.json", summary)
    print(glue_table(summary))
    print(f"results: {root}")
    return summary


def run_seq2seq(task: str, path: str, data: str | None, recipe_name: str | None = None, overrides=(),
                output_dir: str | None = None) -> dict:
    """Train `path` on `data` (local file or Hub dataset name); writes eval_results.json, prints ROUGE / BLEU."""
    recipe_name = recipe_name or SEQ2SEQ_RECIPE
    root = Path(output_dir or default_output_root(path) / task.replace("/", "-"))
    fixed = [f"model.name_or_path={path}", f"training.output_dir={root}", f"name={recipe_name}"]
    if data:
        # absolute, so the recipe.json of the run still points at the file from any directory
        fixed.append(f"objective.dataset={os.path.abspath(data) if Path(data).exists() else data}")
    recipe = load_recipe(recipe_name, fixed + list(overrides))
    if not recipe.objective.get("dataset"):
        raise LmforgeError(f"--task {task}: no data; pass --data <file.jsonl|.csv|.json or Hub dataset name> "
                           "(make finetune ... DATA=<file>)")
    metrics = _train(recipe)
    atomic_write_json(root / "eval_results.json", {"task": task, "model": path, "data": recipe.objective["dataset"],
                                                   **metrics})
    print(scores_line(task, metrics))
    print(f"results: {root}")
    return metrics


def _train(recipe) -> dict:
    """The final eval metrics of one engine run, without the 'eval/' prefix."""
    from pipelines.engine import train
    from tasks.base import get_task

    result = train(get_task(recipe.task)(recipe), recipe)
    return {k.removeprefix("eval/"): v for k, v in result.eval_metrics.items()}


def glue_table(summary: dict[str, dict]) -> str:
    lines = [f"{'task':8s} {'metrics'}", "-" * 60]
    for task, metrics in summary.items():
        lines.append(f"{task:8s} " + "  ".join(f"{k}={100 * v:.2f}" for k, v in metrics.items()))
    return "\n".join(lines)


def scores_line(task: str, metrics: dict) -> str:
    """ROUGE as percentages (its 0..1 F-measure x 100), BLEU on its own 0..100 scale."""
    parts = [f"{k}={100 * metrics[k]:.2f}" for k in ("rouge1", "rouge2", "rougeL", "rougeLsum") if k in metrics]
    parts += [f"{k}={metrics[k]:.2f}" for k in ("bleu", "gen_len", "loss") if k in metrics]
    return f"{task}: " + "  ".join(parts)

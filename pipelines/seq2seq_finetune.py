"""`finetune --task summarization`: fine-tune an encoder-decoder checkpoint on (source, target)
pairs with the one training engine, then write eval_results.json and print ROUGE / BLEU.

    python -m pipelines finetune --task summarization --model runs/t5-tiny/final --data news.jsonl
    make finetune TASK=summarization MODEL=runs/bart-tiny/final DATA=news.jsonl
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.config import load_recipe
from pipelines.errors import LmforgeError

DEFAULT_RECIPE = "summarization"


def run_seq2seq(task: str, path: str, data: str | None, recipe_name: str | None = None, overrides=(),
                output_dir: str | None = None) -> dict:
    """Train `path` on `data` (local file or Hub dataset name) and return the final eval metrics."""
    from pipelines.engine import train
    from pipelines.finetune import write_json
    from tasks.base import get_task

    recipe_name = recipe_name or DEFAULT_RECIPE
    root = Path(output_dir or Path("runs") / "finetune" / Path(path).name / task.replace("/", "-"))
    fixed = [f"model.name_or_path={path}", f"training.output_dir={root}", f"name={recipe_name}"]
    if data:
        # absolute, so the recipe.json of the run still points at the file from any directory
        fixed.append(f"objective.dataset={os.path.abspath(data) if Path(data).exists() else data}")
    recipe = load_recipe(recipe_name, fixed + list(overrides))
    if not recipe.objective.get("dataset"):
        raise LmforgeError(f"--task {task}: no data; pass --data <file.jsonl|.csv|.json or Hub dataset name> "
                           "(make finetune ... DATA=<file>)")
    result = train(get_task(recipe.task)(recipe), recipe)
    metrics = {k.removeprefix("eval/"): v for k, v in result.eval_metrics.items()}
    write_json(root / "eval_results.json", {"task": task, "model": path, "data": recipe.objective["dataset"],
                                            **metrics})
    print(scores_line(task, metrics))
    return metrics


def scores_line(task: str, metrics: dict) -> str:
    """ROUGE as percentages (its 0..1 F-measure x 100), BLEU on its own 0..100 scale."""
    parts = [f"{k}={100 * metrics[k]:.2f}" for k in ("rouge1", "rouge2", "rougeL", "rougeLsum") if k in metrics]
    parts += [f"{k}={metrics[k]:.2f}" for k in ("bleu", "gen_len", "loss") if k in metrics]
    return f"{task}: " + "  ".join(parts)

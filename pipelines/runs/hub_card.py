"""The model card (README.md) a Hub push publishes: YAML metadata the Hub reads (license,
library_name, tags for the objective, datasets, and a `model-index` with the GLUE results in the
Hub's format) and a body with the recipe, tokens seen, hardware and the W&B run.

The figures come from the results files, unrounded: results.json of the run that made the export and
glue_results.json of its GLUE fine-tuning, so the card says what those files say.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.errors import LmforgeError
from pipelines.runs.card_parts import (
    DOWNSTREAM_CARD,
    OBJECTIVE_TAGS,
    downstream_eval_results,
    glue_eval_results,
    is_local,
    pipeline_tag,
    public_name,
)


def export_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LmforgeError(f"push: {path} is not a readable model config ({exc})") from None
    if not isinstance(config, dict):
        raise LmforgeError(f"push: {path} is not a model config (a JSON object expected)")
    return config


def _hub_dataset(corpus: str | None) -> str | None:
    """The pretraining corpus where it is a Hub dataset name (not 'default', not a local path)."""
    if not corpus or corpus == "default" or Path(corpus).exists() or corpus.startswith(("/", ".", "~")):
        return None
    return corpus


def card_data(repo_id: str, config: dict, run: dict | None, glue: dict | None, license: str | None,
              downstream: dict | None = None):
    from huggingface_hub import ModelCardData


    recipe = (run or {}).get("recipe_config") or {}
    task = (run or {}).get("task") or recipe.get("task")
    tags = ["lmforge", *([task] if task else []), *OBJECTIVE_TAGS.get(task, []),
            *([config["model_type"]] if config.get("model_type") else [])]
    datasets = [d for d in (_hub_dataset((recipe.get("data") or {}).get("corpus")),) if d]
    eval_results = None
    if glue:
        from pipelines.data.glue import HUB_DATASET

        datasets.append(HUB_DATASET)
        eval_results = glue_eval_results(glue)
    if downstream:
        datasets.append(DOWNSTREAM_CARD[downstream["task"]][2])
        eval_results = (eval_results or []) + downstream_eval_results(downstream)
    base = (recipe.get("model") or {}).get("name_or_path")
    arch = (config.get("architectures") or [""])[0]
    return ModelCardData(license=license, library_name="transformers", tags=list(dict.fromkeys(tags)),
                         pipeline_tag=pipeline_tag(arch), base_model=None if is_local(base) else base,
                         datasets=datasets or None, eval_results=eval_results,
                         model_name=repo_id.split("/")[-1] if eval_results else None)  # the model-index's name


def without_local_paths(value):
    """The recipe with every local path replaced by its last part: a published card names no folder of
    the machine that trained it."""
    if isinstance(value, dict):
        return {k: without_local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_local_paths(v) for v in value]
    return public_name(value) if isinstance(value, str) and is_local(value) else value


def _training_lines(run: dict) -> list[str]:
    hw, pk = run.get("hardware") or {}, run.get("packages") or {}
    lines = [f"- recipe: `{run['recipe']}` (task `{run.get('task', '?')}`)", f"- tokens seen: {run['tokens']:,}",
             f"- steps: {run['steps']}, global batch {run.get('global_batch')}, {run.get('world_size')} process(es)"]
    if isinstance(run.get("wall_time_s"), (int, float)):
        lines.append(f"- wall time: {run['wall_time_s']:.0f} s" + (
            f", {run['tokens_per_sec']:,.0f} tokens/s" if isinstance(run.get("tokens_per_sec"), (int, float)) else ""))
    if hw:
        device = hw.get("gpu_name") or hw.get("device_name") or hw.get("device")
        lines.append(f"- hardware: {device} x {hw.get('num_processes', 1)} ({hw.get('cpu_count')} CPUs), "
                     f"precision {hw.get('mixed_precision')}")
    if pk:
        lines.append("- packages: " + ", ".join(f"{k} {v}" for k, v in pk.items() if v))
    if run.get("git_commit"):
        lines.append(f"- lmforge commit: `{run['git_commit']}`" + (" (modified tree)" if run.get("git_dirty") else ""))
    wb = run.get("wandb")
    if wb:
        where = f"[{wb.get('name') or wb.get('id')}]({wb['url']})" if wb.get("url") else (
            f"offline run `{wb.get('id')}` (project `{wb.get('project')}`; upload it with `wandb sync`)")
        lines.append(f"- Weights & Biases: {where}")
    return lines


def _glue_table(glue: dict) -> list[str]:
    from pipelines.runs.report.glue import column_title, glue_average, reported_metrics, task_score

    scores = {t: task_score(t, reported_metrics(e)) for t, e in glue.items()}
    lines = ["| task | score | metrics |", "|---|---|---|"]
    for task, entry in glue.items():
        metrics = ", ".join(f"{k} {100 * v:.2f}" for k, v in reported_metrics(entry).items()
                            if isinstance(v, (int, float)) and not k.startswith("loss"))  # scores x 100, not losses
        seeds = f" (median of {len(entry['seeds'])} seeds)" if "seeds" in entry else ""
        lines.append(f"| {column_title(task)} | {scores[task]:.2f} | {metrics}{seeds} |")
    lines.append(f"| **GLUE average** ({len(scores)} tasks) | **{glue_average(scores):.2f}** | |")
    return lines


def model_card_text(repo_id: str, folder: Path, run: dict | None, glue: dict | None,
                    license: str | None = None, downstream: dict | None = None) -> str:
    config = export_config(folder)
    data = card_data(repo_id, config, run, glue, license, downstream)
    arch = ", ".join(config.get("architectures") or []) or config.get("model_type", "model")
    body = [f"# {repo_id.split('/')[-1]}", "", f"`{arch}` trained with lmforge.", ""]
    if run:
        body += ["## Training", "", *_training_lines(run), ""]
    if glue:
        body += ["## GLUE (dev)", "", *_glue_table(glue), ""]
    if downstream:
        from pipelines.runs.report.downstream import shown_metrics

        values, seeds = shown_metrics(downstream["task"], downstream)
        name = DOWNSTREAM_CARD[downstream["task"]][3]
        body += [f"## {name} (dev)", "", "| metric | score |", "|---|---|",
                 *[f"| {k} | {100 * v:.2f} |" for k, v in values.items()],
                 *(["", f"Median of {seeds} seeds."] if seeds > 1 else []), ""]
    if run and run.get("recipe_config"):
        body += ["## Recipe", "", "```json", json.dumps(without_local_paths(run["recipe_config"]), indent=2), "```", ""]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)

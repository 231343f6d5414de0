"""One machine-readable results file per run: `<output_dir>/results.json`, written by engine.finish().

It holds what a reader needs to compare runs and reproduce one: the final metrics, the recipe,
tokens seen, wall time, throughput, hardware, package versions and the git commit. The report
(`python -m pipelines report`), the notebook and the Hub card read it. The first keys (recipe,
steps, tokens, world_size, global_batch and the flat eval metrics) are the file's original layout.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

FORMAT = "lmforge-results/1"
RESULTS_FILE = "results.json"
PACKAGES = ("torch", "transformers", "accelerate", "datasets", "tokenizers", "lmforge")
# tasks that start from a pretrained checkpoint; distillation tasks carry "distil" in their name
FINETUNE_TASKS = frozenset({"glue", "glue-t5", "seq2seq", "squad", "squad-t5", "multiple-choice", "ner"})


def run_kind(task: str) -> str:
    if "distil" in task:
        return "distill"
    return "finetune" if task in FINETUNE_TASKS else "pretrain"


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):  # no git, a hung filesystem
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_state() -> dict:
    """The commit checked out in the working directory (None outside a git checkout) and whether
    tracked files differ from it: a run from a modified tree is not reproducible from the commit."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"git_commit": None, "git_dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(accelerator) -> dict:
    import torch

    device, cpu = accelerator.device, _cpu_name()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"device": str(device), "device_name": gpu or cpu, "gpu_name": gpu,
            "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
            "cpu_name": cpu, "cpu_count": os.cpu_count(), "num_processes": accelerator.num_processes,
            "distributed_type": str(accelerator.distributed_type).rsplit(".", 1)[-1],
            "mixed_precision": str(accelerator.mixed_precision), "platform": platform.platform(),
            "python": platform.python_version()}


def throughput(records: list[dict]) -> dict:
    """Training time and tokens/s from the logged windows: each training record holds the tokens so
    far and the tokens/s of the window since the previous one, so window time = Δtokens / tokens/s.
    Read from metrics.jsonl, a resumed run counts the steps of every session once."""
    seconds, window_tokens, previous, last = 0.0, 0, 0, {}
    for r in records:
        if "tokens_per_sec" not in r or "tokens" not in r:
            continue
        delta = r["tokens"] - previous
        previous = r["tokens"]
        if r["tokens_per_sec"] and delta > 0:
            seconds += delta / r["tokens_per_sec"]
            window_tokens += delta
        last = r
    return {"train_time_s": seconds or None,
            "tokens_per_sec": window_tokens / seconds if seconds else None,
            "last_tokens_per_sec": last.get("tokens_per_sec"), "mfu": last.get("mfu")}


def read_records(path: Path) -> list[dict]:
    """metrics.jsonl records; a torn line (a killed run's last write) is skipped."""
    records = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def wandb_run(accelerator) -> dict | None:
    """The W&B run this run logged to (id, project, url; url is None for an offline run until `wandb sync`)."""
    for tracker in accelerator.trackers:
        if tracker.name == "wandb":
            run = tracker.tracker
            return {"id": run.id, "project": run.project, "name": run.name, "url": run.url,
                    "offline": bool(run.offline), "dir": str(Path(run.dir).parent)}
    return None


def wall_time(run) -> float | None:
    """Seconds since engine.setup() began (tokenizer, data preparation, model, training, evaluation;
    a resumed run counts from the resume)."""
    started = getattr(run, "started", None)
    return None if started is None else time.time() - started


def time_budget(run) -> dict:
    """What ended the run, and under training.time_budget the budget and the training time it used
    (resumes included: pipelines/engine/time_budget.py)."""
    out = {"ended_by": getattr(run, "ended_by", "max_steps")}
    budget = getattr(run, "budget", None)
    if budget is not None:
        out.update(time_budget_s=budget.seconds, elapsed_s=budget.elapsed(run.max_steps))
    return out


def exported_evaluation(run) -> dict:
    """When the export is the best dev evaluation (pipelines/engine/best.py), not the last step: which
    one and its scores, next to the final evaluation's metrics (which describe the last step)."""
    best = getattr(run, "best", None)
    if best is None or best.metrics is None:
        return {}
    return {"exported_metrics": dict(best.metrics), "exported_evaluation": best.summary(run.max_steps)}


def build_results(run, final_metrics: dict, export_dirs: list[Path], records: list[dict]) -> dict:
    """The results of an engine run (see the module docstring)."""
    from pipelines.config import recipe_to_dict

    t, acc = run.recipe.training, run.accelerator
    world = acc.num_processes
    return {
        "recipe": run.recipe.name, "steps": run.max_steps, "tokens": run.state["tokens"], "world_size": world,
        "global_batch": t.per_device_train_batch_size * t.gradient_accumulation_steps * world,
        **final_metrics,
        "format": FORMAT, "kind": run_kind(run.recipe.task), "task": run.recipe.task,
        "output_dir": str(run.out), "exports": [str(d) for d in export_dirs],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_time_s": wall_time(run),
        "metrics": dict(final_metrics), **exported_evaluation(run), **time_budget(run), **throughput(records),
        "hardware": hardware(acc), "packages": package_versions(), **git_state(), "wandb": wandb_run(acc),
        "recipe_config": recipe_to_dict(run.recipe),
    }


def results_table(results: dict) -> list[list]:
    """(field, value) rows of the scalar results: the final table a tracker shows."""
    keys = ["steps", "tokens", "wall_time_s", "train_time_s", "tokens_per_sec", "mfu", *results["metrics"]]
    return [[k, results[k]] for k in keys if isinstance(results.get(k), (int, float))]


def log_results(accelerator, results: dict, tables: dict | None = None) -> None:
    """The final results table, and the task's own tables ({name: (columns, rows)}: a fine-tuning's dev
    scores, a sample of QA predictions vs gold), into the run's trackers: W&B Tables (and the run
    summary), TensorBoard text entries."""
    rows = results_table(results)
    every = {"results": (["field", "value"], rows), **(tables or {})}
    for tracker in accelerator.trackers:
        for name, (columns, data) in every.items():
            if tracker.name == "wandb":
                tracker.log_table(name, columns=columns, data=data, step=results["steps"])
            elif tracker.name == "tensorboard":
                tracker.log({name: markdown_table(columns, data)}, step=results["steps"])
        if tracker.name == "wandb":
            tracker.tracker.summary.update({f"results/{k}": v for k, v in rows})


def markdown_table(columns: list[str], rows: list[list]) -> str:
    """A table as TensorBoard's text plugin renders it ('|' inside a cell escaped)."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def write_results(run, final_metrics: dict, export_dirs: list[Path], log) -> dict:
    """Build results.json for the finished run, log its tables to the trackers, write it atomically."""
    from pipelines.atomic import atomic_write_json

    results = build_results(run, final_metrics, export_dirs, read_records(Path(log.path)))
    held = results.get("exported_metrics") or {k.removeprefix("eval/"): v for k, v in final_metrics.items()
                                                if not k.startswith("eval/loss")}
    log_results(run.accelerator, results, run.task.tracker_tables(held) if run.accelerator.trackers else None)
    atomic_write_json(run.out / RESULTS_FILE, results)
    return results

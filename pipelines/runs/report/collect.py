"""Find and read the results under a runs folder: every engine run's results.json (+ metrics.jsonl)
and every GLUE fine-tuning summary (glue_results.json). Each file is checked as it is read; a bad
one is one LmforgeError naming the file, the field and the value."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.errors import LmforgeError
from pipelines.runs.report.paths import run_label

# folders an output folder holds that never contain results of their own: skipped while walking,
# as are hidden (temp) folders and saved models (exports, a push's staging folder)
SKIP_DIRS = frozenset({"checkpoints", "tokenizer", "wandb"})
KIND = re.compile(r"[A-Za-z0-9_-]{1,40}")  # a run's kind names its plots' PNG files


@dataclass
class RunResult:
    """One engine run: its results.json and the training records of its metrics.jsonl."""

    label: str  # the folder relative to the runs folder
    path: Path
    results: dict
    records: list[dict] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.results.get("kind", "run")  # results.json files of older versions have no kind

    @property
    def train_records(self) -> list[dict]:
        return [r for r in self.records if "loss" in r and "step" in r]

    @property
    def eval_records(self) -> list[dict]:
        return [r for r in self.records if "step" in r and any(k.startswith("eval/") for k in r)]


@dataclass
class GlueResult:
    """One model's GLUE fine-tuning (glue_results.json): {task: metrics} or, with several seeds,
    {task: {"median", "mean", "std", "seeds": {seed: metrics}}}."""

    label: str
    path: Path
    model: str | None
    tasks: dict[str, dict]


@dataclass
class DownstreamResult:
    """One SQuAD / SWAG / RACE / NER fine-tuning (its eval_results.json, written by `finetune`)."""

    label: str
    path: Path
    task: str
    model: str | None
    entry: dict  # the metrics, or {"median", "mean", "std", "seeds"} with several seeds


@dataclass
class Collected:
    root: Path
    runs: list[RunResult]
    glue: list[GlueResult]
    downstream: list[DownstreamResult] = field(default_factory=list)
    experiment: dict | None = None  # the comparison of an `experiment` folder (experiment.json)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise LmforgeError(f"{path}: cannot be read ({exc})") from None
    except ValueError as exc:
        raise LmforgeError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise LmforgeError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_metrics_log(path: Path) -> list[dict]:
    """metrics.jsonl; only the last line may be torn (a killed run's last write)."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if n == len(lines):
                break
            raise LmforgeError(f"{path}:{n}: not a JSON record ({line[:60]!r})") from None
        if not isinstance(record, dict):
            raise LmforgeError(f"{path}:{n}: expected a JSON object, found {type(record).__name__}")
        records.append(record)
    return records


def check_results(path: Path, results: dict) -> dict:
    for key in ("recipe", "steps", "tokens"):
        if key not in results:
            raise LmforgeError(f"{path}: no '{key}' field (not an lmforge results.json)")
    if not isinstance(results["recipe"], str):
        raise LmforgeError(f"{path}: recipe is {results['recipe']!r}, expected a name")
    for key in ("steps", "tokens"):
        if not isinstance(results[key], int) or isinstance(results[key], bool) or results[key] < 0:
            raise LmforgeError(f"{path}: {key} is {results[key]!r}, expected a non-negative integer")
    for key, value in results.get("metrics", {}).items():
        if value is not None and not _is_number(value):
            raise LmforgeError(f"{path}: metrics.{key} is {value!r}, expected a number")
    kind = results.get("kind", "run")
    if not isinstance(kind, str) or not KIND.fullmatch(kind):
        raise LmforgeError(f"{path}: kind is {kind!r}, expected a name such as pretrain, finetune or distill")
    return results


def eval_key_order(key: str) -> tuple:
    """Sort key of evaluation metrics: task metrics (accuracy, f1, ...) first, then the total loss, then
    its terms; a report that shows only a few never hides the accuracies behind the losses."""
    name = key.removeprefix("eval/")
    return (0 if "loss" not in name else 1 if name == "loss" else 2, name)


def _check_metrics(path: Path, where: str, metrics) -> None:
    if not isinstance(metrics, dict) or not metrics:
        raise LmforgeError(f"{path}: {where} is {metrics!r}, expected an object of metric values")
    for key, value in metrics.items():
        if value is not None and not _is_number(value):
            raise LmforgeError(f"{path}: {where}.{key} is {value!r}, expected a number")
        if _is_number(value) and not math.isfinite(value):
            raise LmforgeError(f"{path}: {where}.{key} is {value}, expected a finite number")


def check_glue(path: Path, data: dict) -> dict:
    from pipelines.runs.report.glue import GLUE_TASKS, task_metrics

    if not data:
        raise LmforgeError(f"{path}: no GLUE task in it")
    for task, entry in data.items():
        if task not in GLUE_TASKS:
            raise LmforgeError(f"{path}: '{task}' is not a GLUE task (known: {', '.join(GLUE_TASKS)})")
        if isinstance(entry, dict) and "seeds" in entry:
            _check_metrics(path, f"{task}.median", entry.get("median"))
            seeds = entry["seeds"]
            if not isinstance(seeds, dict) or not seeds:
                raise LmforgeError(f"{path}: {task}.seeds is {seeds!r}, expected an object of per-seed metrics")
            for seed, metrics in seeds.items():
                _check_metrics(path, f"{task}.seeds.{seed}", metrics)
                task_metrics(task, metrics, f"{path}: {task} seed {seed}")
        else:
            _check_metrics(path, task, entry)
        task_metrics(task, entry.get("median", entry), f"{path}: {task}")  # the task's metrics are all there
    return data


def _model_of(root: Path, tasks: dict) -> str | None:
    """The checkpoint that was fine-tuned, as its <task>/eval_results.json names it."""
    for task in tasks:
        path = root / task / "eval_results.json"
        if path.is_file():
            model = read_json(path).get("model")
            if isinstance(model, str):
                return model
    return None


def collect_runs(root: str | Path, skip: Path | None = None) -> Collected:
    """All results under `root` (a folder of output folders, or one output folder); `skip` (the report's
    own folder) is not read. No result at all is an error: a report of nothing hides a wrong path."""
    root = Path(root)
    if not root.exists():
        raise LmforgeError(f"runs folder {root}: no such folder")
    if not root.is_dir():
        raise LmforgeError(f"runs folder {root}: not a folder")
    skip = skip.resolve() if skip is not None else None
    from pipelines.runs.report.downstream import SHOWN

    runs, glue, downstream = [], [], []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not (d.startswith(".") or d in SKIP_DIRS
                                                or (here / d / "config.json").is_file()
                                                or (skip is not None and (here / d).resolve() == skip)))
        if "results.json" in files:
            path = here / "results.json"
            runs.append(RunResult(run_label(here, root), here, check_results(path, read_json(path)),
                                  read_metrics_log(here / "metrics.jsonl")))
        if "glue_results.json" in files:
            path = here / "glue_results.json"
            tasks = check_glue(path, read_json(path))
            glue.append(GlueResult(run_label(here, root), here, _model_of(here, tasks), tasks))
        if "eval_results.json" in files:
            path = here / "eval_results.json"
            entry = read_json(path)
            if entry.get("task") in SHOWN:  # GLUE's per-task files are in glue_results.json already
                _check_metrics(path, "median" if "median" in entry else "metrics",
                               entry.get("median", {k: v for k, v in entry.items() if k in SHOWN[entry["task"]]}))
                model = entry.get("model")
                downstream.append(DownstreamResult(run_label(here, root), here, entry["task"],
                                                   model if isinstance(model, str) else None, entry))
    if not runs and not glue and not downstream:
        raise LmforgeError(f"runs folder {root}: no lmforge results in it (no results.json, glue_results.json or "
                           "eval_results.json below it); point it at the folder that holds the runs' output folders")
    experiment = root / "experiment.json"
    comparison = read_json(experiment).get("comparison") if experiment.is_file() else None
    return Collected(root, runs, glue, downstream, comparison if isinstance(comparison, dict) else None)

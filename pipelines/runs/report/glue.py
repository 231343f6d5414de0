"""GLUE scores as the papers compute them, from the metrics lmforge's fine-tuning writes.

A task's score is its metric, or the unweighted mean of its metrics where it has two (MRPC and QQP:
accuracy and F1; STS-B: Pearson and Spearman; MNLI: matched and mismatched accuracy), and the GLUE
score is the mean of the task scores (Wang et al. 2019, the GLUE benchmark paper). CoLA's metric is
Matthews correlation. Scores are on the papers' 0-100 scale.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from pipelines.data.glue import GLUE_TASKS  # the nine tasks and their metrics: one table
from pipelines.errors import LmforgeError

METRIC_NAMES = {"accuracy": "Acc", "f1": "F1", "matthews_correlation": "MCC", "pearson": "Pearson",
                "spearmanr": "Spearman"}


def metric_keys(task: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the metrics of the task's first eval split, those of its other splits) as fine-tuning names them
    (MNLI: ('accuracy',), ('mismatched/accuracy',))."""
    spec = GLUE_TASKS[task]
    others = tuple(f"{split.removeprefix('validation_')}/{m}" for split in spec.eval_splits[1:] for m in spec.metrics)
    return spec.metrics, others


def task_metrics(task: str, metrics: dict, where: str) -> dict[str, float]:
    """The metrics that make `task`'s score, read from `metrics`. The first split's are required; a
    second split's (MNLI mismatched) count where it was evaluated."""
    main, others = metric_keys(task)
    missing = [k for k in main if not isinstance(metrics.get(k), (int, float))]
    if missing:
        raise LmforgeError(f"{where}: no value for {', '.join(missing)} (a GLUE {task} result has "
                           f"{', '.join(main + others)})")
    return {k: float(metrics[k]) for k in main + others if isinstance(metrics.get(k), (int, float))}


def task_score(task: str, metrics: dict, where: str = "") -> float:
    """The task's GLUE score (0-100): the mean of its metrics."""
    return 100 * statistics.fmean(task_metrics(task, metrics, where or task).values())


def reported_metrics(entry: dict) -> dict:
    """The metrics fine-tuning reports for a task: the median over seeds where there were several."""
    return entry["median"] if "seeds" in entry else entry


def seed_scores(task: str, entry: dict) -> list[float]:
    """Each seed's task score (one value without several seeds)."""
    if "seeds" not in entry:
        return [task_score(task, entry)]
    return [task_score(task, m, f"{task} seed {s}") for s, m in entry["seeds"].items()]


def glue_average(scores: dict[str, float]) -> float | None:
    return statistics.fmean(scores.values()) if scores else None


def column_title(task: str) -> str:
    """'MRPC (F1/Acc)': the task as the papers' tables name it, with what its score averages."""
    main, others = metric_keys(task)
    names = "/".join(METRIC_NAMES.get(k, k) for k in main)
    if others:
        names = "m/mm " + names
    return f"{GLUE_TASKS[task].dir_name} ({names})"


@dataclass
class BoardRow:
    label: str
    model: str | None
    scores: dict[str, float]  # task -> score (0-100)
    seeds: dict[str, int] = field(default_factory=dict)  # task -> number of seeds

    @property
    def average(self) -> float | None:
        return glue_average(self.scores)


def leaderboard(glue_results) -> tuple[list[str], list[BoardRow]]:
    """(the tasks any model has, in GLUE's order; one row per model, best GLUE average first)."""
    rows = []
    for g in glue_results:
        scores = {t: task_score(t, reported_metrics(e), f"{g.path / 'glue_results.json'}: {t}")
                  for t, e in g.tasks.items()}
        seeds = {t: len(e["seeds"]) if "seeds" in e else 1 for t, e in g.tasks.items()}
        rows.append(BoardRow(g.label, g.model, scores, seeds))
    tasks = [t for t in GLUE_TASKS if any(t in r.scores for r in rows)]
    rows.sort(key=lambda r: (r.average is None, -(r.average or 0.0), r.label))
    return tasks, rows

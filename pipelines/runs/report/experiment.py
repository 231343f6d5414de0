"""The comparison an `experiment` ends with: per GLUE task, the pretrained model against the same
architecture from random init (and a distilled student), each the median over seeds with the seeds'
spread, the gain, and what Google's published checkpoints of that size reach.

Scores are the GLUE paper's task scores (report/glue.py: the mean of a task's metrics, 0-100); the
average is over the tasks the experiment ran. The reference rows are quoted, not measured here: GLUE
TEST-set scores of the BERT miniatures (Turc et al. 2019, "Well-Read Students Learn Better", the
google-research/bert README), fine-tuned 4 epochs with the best of 5 batch sizes x 4 learning rates;
our numbers are dev-set medians, so the rows show how far a laptop budget goes, not a like-for-like test.
"""

from __future__ import annotations

import statistics
from html import escape

from pipelines.data.glue import GLUE_TASKS
from pipelines.runs.report.glue import column_title, reported_metrics, seed_scores, task_score

# (layers, hidden) -> (name, {task: test score}); MRPC = mean(F1, acc), STS-B = mean(Pearson, Spearman)
REFERENCE = {
    (2, 128): ("BERT-Tiny", {"cola": 0.0, "sst2": 83.2, "mrpc": (81.1 + 71.1) / 2, "stsb": (74.3 + 73.6) / 2,
                             "rte": 57.2, "wnli": 62.3, "qnli": 81.5}),
    (4, 256): ("BERT-Mini", {"cola": 0.0, "sst2": 85.9, "mrpc": (81.1 + 71.8) / 2, "stsb": (75.4 + 73.3) / 2,
                             "rte": 57.9, "wnli": 62.3, "qnli": 84.1}),
    (4, 512): ("BERT-Small", {"cola": 27.8, "sst2": 89.7, "mrpc": (83.4 + 76.2) / 2, "stsb": (78.8 + 77.0) / 2,
                              "rte": 61.8, "wnli": 62.3, "qnli": 86.4}),
    (8, 512): ("BERT-Medium", {"cola": 38.0, "sst2": 89.6, "mrpc": (86.6 + 81.6) / 2, "stsb": (80.4 + 78.4) / 2,
                               "rte": 62.2, "wnli": 62.3, "qnli": 87.7}),
}
REFERENCE_NOTE = ("Google's checkpoint of the same shape, GLUE test set (Turc et al. 2019), quoted from the "
                  "literature, not measured here")


def arm_scores(summary: dict[str, dict]) -> dict[str, dict]:
    """{task: {"score": median task score, "std": spread of the seeds' scores, "seeds": n, "metrics": {...}}}
    from an arm's glue_results.json content."""
    out = {}
    for task, entry in summary.items():
        per_seed = seed_scores(task, entry)
        out[task] = {"score": task_score(task, reported_metrics(entry)), "seeds": len(per_seed),
                     "std": statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0,
                     "metrics": {k: 100 * v for k, v in reported_metrics(entry).items()}}
    return out


def comparison(arms: dict[str, dict[str, dict]], shape: tuple[int, int] | None) -> dict:
    """arms: {arm name: glue summary}. The table as data (experiment.json "comparison")."""
    scored = {arm: arm_scores(summary) for arm, summary in arms.items()}
    tasks = [t for t in GLUE_TASKS if all(t in s for s in scored.values()) and scored]
    averages = {arm: statistics.fmean(s[t]["score"] for t in tasks) if tasks else None for arm, s in scored.items()}
    result = {"tasks": tasks, "arms": scored, "average": averages}
    if "pretrained" in scored and "random_init" in scored and tasks:
        result["gain"] = {t: scored["pretrained"][t]["score"] - scored["random_init"][t]["score"] for t in tasks}
        result["gain"]["average"] = averages["pretrained"] - averages["random_init"]
    if shape in REFERENCE:
        name, ref = REFERENCE[shape]
        result["reference"] = {"name": name, "scores": {t: ref[t] for t in tasks if t in ref},
                               "note": REFERENCE_NOTE}
    return result


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "–"
    spread = f" ± {entry['std']:.2f}" if entry["seeds"] > 1 else ""
    return f"{entry['score']:.2f}{spread}"


def comparison_rows(comp: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows) shared by the markdown and the HTML table."""
    tasks = comp["tasks"]
    header = ["model", *(column_title(t) for t in tasks), "GLUE average"]
    rows = []
    for arm, scores in comp["arms"].items():
        seeds = max((e["seeds"] for e in scores.values()), default=1)
        avg = comp["average"][arm]
        rows.append([f"{arm} (median of {seeds} seeds ± std)", *(_cell(scores.get(t)) for t in tasks),
                     "–" if avg is None else f"{avg:.2f}"])
    if "gain" in comp:
        rows.append(["gain: pretrained - random init", *(f"{comp['gain'][t]:+.2f}" for t in tasks),
                     f"{comp['gain']['average']:+.2f}"])
    if "reference" in comp:
        ref = comp["reference"]
        shown = [ref["scores"].get(t) for t in tasks]
        avg = statistics.fmean(v for v in shown if v is not None) if all(v is not None for v in shown) else None
        rows.append([f"{ref['name']} (Google, test set)", *("–" if v is None else f"{v:.2f}" for v in shown),
                     "–" if avg is None else f"{avg:.2f}"])
    return header, rows


def comparison_markdown(comp: dict) -> str:
    header, rows = comparison_rows(comp)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if "reference" in comp:
        lines.append(f"\n{comp['reference']['name']}: {comp['reference']['note']}.")
    return "\n".join(lines)


def comparison_html(comp: dict) -> str:
    header, rows = comparison_rows(comp)
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    note = f'<p class="muted">{escape(comp["reference"]["note"])}.</p>' if "reference" in comp else ""
    return (f'<table id="experiment"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            '<p class="muted">Dev-set task scores (0-100; a task with two metrics counts with their mean), median '
            f"over seeds ± the seeds' standard deviation.</p>{note}")

"""The report's table of the papers' other benchmarks (SQuAD, SWAG, RACE, NER): which metrics of each
task's eval_results.json it shows, in the order the papers report them."""

from __future__ import annotations

from html import escape
from pathlib import Path

from pipelines.runs.report.paths import shown_path

SHOWN = {  # task -> metrics shown (fractions in the file, x 100 on the page)
    "squad": ("exact_match", "f1"),
    "squad_v2": ("exact", "f1", "best_f1", "HasAns_f1", "NoAns_f1"),
    "swag": ("accuracy",),
    "race": ("accuracy",),
    "ner": ("precision", "recall", "f1"),
}


def shown_metrics(task: str, entry: dict) -> tuple[dict[str, float], int]:
    """({metric: value} of the reported metrics, seed count); several seeds: the median."""
    metrics = entry.get("median", entry) if isinstance(entry.get("median"), dict) else entry
    seeds = len(entry["seeds"]) if isinstance(entry.get("seeds"), dict) else 1
    return {k: metrics[k] for k in SHOWN[task] if isinstance(metrics.get(k), (int, float))}, seeds


def downstream_html(results, root: Path) -> str:
    """The table; a model path shows relative to the runs folder `root` or as its last parts."""
    if not results:
        return '<p class="muted">No SQuAD, SWAG, RACE or NER results (eval_results.json) in this folder.</p>'
    rows = []
    for r in results:
        values, seeds = shown_metrics(r.task, r.entry)
        cells = "  ".join(f"{escape(k)} <b>{100 * v:.2f}</b>" for k, v in values.items())
        note = f' <span class="muted">(median of {seeds} seeds)</span>' if seeds > 1 else ""
        model = f'<br><span class="muted">{escape(shown_path(r.model, root))}</span>' if r.model else ""
        rows.append(f'<tr class="downstream-row"><td>{escape(r.label)}{model}</td><td class="text">{escape(r.task)}'
                    f'</td><td class="text">{cells or "–"}{note}</td></tr>')
    return ('<table id="downstream"><thead><tr><th>run</th><th>task</th><th>dev scores (0-100)</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')

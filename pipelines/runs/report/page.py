"""The dashboard's HTML: a GLUE leaderboard, a table of runs and the plots (PNG files next to it).
Static and self-contained: no script, no network, opens from the file system."""

from __future__ import annotations

from html import escape

from pipelines.runs.report.collect import Collected, RunResult
from pipelines.runs.report.downstream import downstream_html
from pipelines.runs.report.glue import column_title, leaderboard

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
thead { background: #f3f3f3; }
figure { margin: 1.5rem 0; }
figcaption { color: #555; font-size: 0.9rem; }
img { max-width: 100%; border: 1px solid #eee; }
.muted { color: #777; }
"""


def _num(value, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def leaderboard_html(collected: Collected) -> str:
    tasks, rows = leaderboard(collected.glue)
    if not rows:
        return '<p class="muted">No GLUE fine-tuning results (glue_results.json) in this folder.</p>'
    head = "".join(f"<th>{escape(column_title(t))}</th>" for t in tasks)
    body = []
    for row in rows:
        cells = "".join(f"<td>{_num(row.scores.get(t))}"
                        + (f' <span class="muted">({row.seeds[t]} seeds)</span>' if row.seeds.get(t, 1) > 1 else "")
                        + "</td>" for t in tasks)
        model = f'<br><span class="muted">{escape(row.model)}</span>' if row.model else ""
        body.append(f'<tr class="model-row" data-label="{escape(row.label)}"><td>{escape(row.label)}{model}</td>'
                    f"{cells}<td><b>{_num(row.average)}</b></td><td>{len(row.scores)}</td></tr>")
    return (f'<table id="leaderboard"><thead><tr><th>model</th>{head}<th>GLUE average</th><th>tasks</th></tr>'
            f'</thead><tbody>{"".join(body)}</tbody></table>'
            '<p class="muted">Dev-set scores (0-100); several seeds: the median. A task with two metrics counts '
            "with their mean; the average is the mean over the tasks a model has (compare rows with equal "
            "task counts).</p>")


def _hardware(run: RunResult) -> str:
    hw = run.results.get("hardware") or {}
    device = hw.get("gpu_name") or hw.get("device_name") or hw.get("device")
    n = hw.get("num_processes")
    return f"{device} x {n}" if device and n and n > 1 else (device or "–")


def _main_metric(run: RunResult) -> str:
    metrics = run.results.get("metrics") or {k: v for k, v in run.results.items() if k.startswith("eval/")}
    shown = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and "/" in k][:3]
    return ", ".join(f"{escape(k)}={v:.4g}" for k, v in shown) or "–"


def runs_html(collected: Collected) -> str:
    if not collected.runs:
        return '<p class="muted">No engine run (results.json) in this folder.</p>'
    rows = []
    for run in collected.runs:
        r = run.results
        commit = r.get("git_commit")
        rows.append(f'<tr class="run-row"><td>{escape(run.label)}</td><td class="text">{escape(str(r["recipe"]))}</td>'
                    f'<td class="text">{escape(run.kind)}</td><td>{_num(r["steps"])}</td><td>{_num(r["tokens"])}</td>'
                    f'<td>{_num(r.get("wall_time_s"), 1)}</td><td>{_num(r.get("tokens_per_sec"), 0)}</td>'
                    f'<td class="text">{escape(_hardware(run))}</td><td class="text">{_main_metric(run)}</td>'
                    f'<td class="text">{escape(commit[:10]) if isinstance(commit, str) else "–"}</td></tr>')
    return ('<table id="runs"><thead><tr><th>run</th><th>recipe</th><th>kind</th><th>steps</th><th>tokens</th>'
            "<th>wall time (s)</th><th>tokens / s</th><th>hardware</th><th>final eval</th><th>commit</th></tr>"
            f'</thead><tbody>{"".join(rows)}</tbody></table>')


def page_html(collected: Collected, figures: dict[str, str], generated: str) -> str:
    """The page; `figures` maps each PNG file name to its caption."""
    figs = "".join(f'<figure><img src="{escape(name)}" alt="{escape(caption)}"><figcaption>{escape(caption)}'
                   "</figcaption></figure>" for name, caption in figures.items())
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>lmforge report</title>"
            f"<style>{STYLE}</style></head><body><h1>lmforge report</h1>"
            f'<p class="muted">{escape(str(collected.root))}: {len(collected.runs)} runs, {len(collected.glue)} GLUE '
            f"results; generated {escape(generated)}</p>"
            f"<h2>GLUE leaderboard</h2>{leaderboard_html(collected)}"
            f"<h2>QA, multiple choice and NER</h2>{downstream_html(collected.downstream)}"
            f"<h2>Runs</h2>{runs_html(collected)}"
            f"<h2>Plots</h2>{figs or '<p class=muted>Nothing to plot.</p>'}</body></html>")

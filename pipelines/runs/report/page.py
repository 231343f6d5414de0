"""The dashboard's HTML: a GLUE leaderboard, a table of runs and the plots (PNG files next to it).
Static and self-contained: no script, no network, opens from the file system."""

from __future__ import annotations

from html import escape

from pipelines.runs.report.collect import Collected, RunResult, eval_key_order
from pipelines.runs.report.downstream import downstream_html
from pipelines.runs.report.experiment import comparison_html
from pipelines.runs.report.glue import column_title, leaderboard
from pipelines.runs.report.paths import shown_path

FINAL_EVAL_SHOWN = 4  # the runs table's "final eval" cell; the cell's tooltip holds them all

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
        model = f'<br><span class="muted">{escape(shown_path(row.model, collected.root))}</span>' if row.model else ""
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


def final_eval(run: RunResult) -> list[tuple[str, float]]:
    """(metric, value) of the run's last evaluation, task metrics (accuracy, f1, ...) before losses."""
    metrics = run.results.get("metrics") or {k: v for k, v in run.results.items() if k.startswith("eval/")}
    shown = [(k, v) for k, v in metrics.items()
             if k.startswith("eval/") and isinstance(v, (int, float)) and not isinstance(v, bool)]
    return [(k.removeprefix("eval/"), v) for k, v in sorted(shown, key=lambda kv: eval_key_order(kv[0]))]


def _final_eval_cell(run: RunResult) -> str:
    metrics = [f"{name}={value:.4f}" for name, value in final_eval(run)]
    if not metrics:
        return '<td class="text">–</td>'
    more = f", … (+{len(metrics) - FINAL_EVAL_SHOWN})" if len(metrics) > FINAL_EVAL_SHOWN else ""
    return (f'<td class="text final-eval" title="{escape(", ".join(metrics))}">'
            f"{escape(', '.join(metrics[:FINAL_EVAL_SHOWN]))}{more}</td>")


def runs_html(collected: Collected) -> str:
    if not collected.runs:
        return '<p class="muted">No engine run (results.json) in this folder.</p>'
    rows = []
    for run in collected.runs:
        r = run.results
        commit, recipe = r.get("git_commit"), shown_path(r["recipe"], collected.root)
        rows.append(f'<tr class="run-row"><td>{escape(run.label)}</td><td class="text">{escape(recipe)}</td>'
                    f'<td class="text">{escape(run.kind)}</td><td>{_num(r["steps"])}</td><td>{_num(r["tokens"])}</td>'
                    f'<td>{_num(r.get("wall_time_s"), 1)}</td><td>{_num(r.get("tokens_per_sec"), 0)}</td>'
                    f'<td class="text">{escape(_hardware(run))}</td>{_final_eval_cell(run)}'
                    f'<td class="text">{escape(commit[:10]) if isinstance(commit, str) else "–"}</td></tr>')
    return ('<table id="runs"><thead><tr><th>run</th><th>recipe</th><th>kind</th><th>steps</th><th>tokens</th>'
            "<th>wall time (s)</th><th>tokens / s</th><th>hardware</th><th>final eval</th><th>commit</th></tr>"
            f'</thead><tbody>{"".join(rows)}</tbody></table>')


def plots_html(plots) -> str:
    """The plots (plots.Plot; the PNG <name>.png is beside the page), each section under its heading."""
    parts, section = [], None
    for plot in plots:
        if plot.section != section:
            section = plot.section
            parts.append(f"<h3>{escape(section)}</h3>")
        parts.append(f'<figure><img src="{escape(plot.name)}.png" alt="{escape(plot.caption)}">'
                     f"<figcaption>{escape(plot.caption)}</figcaption></figure>")
    return "".join(parts) or '<p class="muted">Nothing to plot.</p>'


def page_html(collected: Collected, plots, generated: str) -> str:
    """The page; `plots` are the Plots whose PNGs are written beside it. The runs folder shows as its name:
    a page is shared, the machine's folders are not."""
    where = collected.root.resolve().name or "/"
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>lmforge report</title>"
            f"<style>{STYLE}</style></head><body><h1>lmforge report</h1>"
            f'<p class="muted">{escape(where)}: {len(collected.runs)} runs, {len(collected.glue)} GLUE results, '
            f"{len(collected.downstream)} other benchmark results; generated {escape(generated)}</p>"
            + (f"<h2>Experiment: pretrained vs random init</h2>{comparison_html(collected.experiment)}"
               if collected.experiment else "")
            + f"<h2>GLUE leaderboard</h2>{leaderboard_html(collected)}"
            f"<h2>QA, multiple choice and NER</h2>{downstream_html(collected.downstream, collected.root)}"
            f"<h2>Runs</h2>{runs_html(collected)}"
            f"<h2>Plots</h2>{plots_html(plots)}</body></html>")

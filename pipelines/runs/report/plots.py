"""The report's plots as matplotlib Figures (built without pyplot: no global state, no display; PNGs
come from matplotlib's Agg renderer, and a notebook shows the same Figure objects). A builder returns
None when the runs hold nothing to plot, so the page shows only plots with data.

Curves come one figure set per run kind (pretraining, distillation, fine-tuning): their losses,
learning rates and speeds differ by orders of magnitude, so they never share axes."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from pipelines.runs.report.collect import Collected, RunResult, eval_key_order
from pipelines.runs.report.glue import GLUE_TASKS, leaderboard, reported_metrics, seed_scores, task_score

MAX_EVAL_PANELS = 6
PANEL_COLUMNS = 3  # more panels wrap onto a new row: a wide PNG shrinks to unreadable on a page
# run kinds as results.json records them (pipelines/runs/results.py), in page order; results of older
# versions have none ("run")
KINDS = {"pretrain": "Pretraining", "distill": "Distillation", "finetune": "Fine-tuning"}
TRAIN_PANELS = (("loss", "training loss"), ("lr", "learning rate"), ("grad_norm", "grad norm"))


@dataclass
class Plot:
    name: str  # the PNG is <name>.png
    section: str  # the page's heading over it
    caption: str
    figure: object  # a matplotlib Figure


def kind_title(kind: str) -> str:
    return KINDS.get(kind) or ("Runs without a kind" if kind == "run" else f"Kind '{kind}'")


def _figure(width: float, height: float, panels: int = 1):
    """A figure of `width` x `height` inches (per row of panels) and its first `panels` axes."""
    from matplotlib.figure import Figure

    rows, cols = -(-panels // PANEL_COLUMNS), min(panels, PANEL_COLUMNS)
    fig = Figure(figsize=(width, height * rows), dpi=100, layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for spare in axes[panels:]:
        spare.remove()
    return fig, axes[:panels]


def _panel_width(panels: int, each: float) -> float:
    return each * min(panels, PANEL_COLUMNS) + 0.6


def _steps_axis(ax, steps: set | None = None) -> None:
    ax.set_xlabel("step")
    if steps and len(steps) <= 3:
        ax.set_xticks(sorted(steps))  # the locator would tick fractions around one or two steps
    else:
        ax.xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers
    ax.grid(alpha=0.3)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def points(records: list[dict], key: str) -> tuple[list, list]:
    """(steps, values) of the records that logged `key` as a finite number."""
    pts = [(r["step"], r[key]) for r in records if _finite(r.get("step")) and _finite(r.get(key))]
    return [s for s, _ in pts], [v for _, v in pts]


def _draw(ax, xs: list, ys: list, color, label: str, markers: bool = False) -> None:
    """One run's curve; a single point is a marker, since a one-point line draws nothing."""
    single = len(xs) == 1
    ax.plot(xs, ys, color=color, label=label, marker="o" if markers or single else None,
            markersize=6 if single else 3)


def _legend(fig, axes) -> None:
    """One legend under the panels: every panel's runs share one colour each."""
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center",
                   ncols=min(4, len(handles)), fontsize="small")


def run_colors(runs: list[RunResult]) -> dict:
    """label -> colour, the same in every figure of a kind."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(runs) <= 10 else "tab20"]
    return {run.label: cmap(i % cmap.N) for i, run in enumerate(runs)}


def kind_groups(collected: Collected) -> dict[str, list[RunResult]]:
    """The runs by kind, known kinds first."""
    groups: dict[str, list[RunResult]] = {}
    for run in collected.runs:
        groups.setdefault(run.kind, []).append(run)
    rank = {k: i for i, k in enumerate(KINDS)}
    return {k: groups[k] for k in sorted(groups, key=lambda k: (rank.get(k, len(rank)), k))}


def _curve_panels(fig, axes, runs: list[RunResult], keys: list[tuple[str, str]], colors: dict,
                  markers: bool = False) -> None:
    for ax, (key, title) in zip(axes, keys):
        steps = set()
        for run in runs:
            xs, ys = points(run.records, key)
            if xs:
                _draw(ax, xs, ys, colors[run.label], run.label, markers)
                steps.update(xs)
        ax.set_title(title)
        _steps_axis(ax, steps)
    _legend(fig, axes)


def training_figure(runs: list[RunResult], title: str, colors: dict | None = None):
    """Training loss, learning rate and grad norm per logged step."""
    panels = [(k, t) for k, t in TRAIN_PANELS if any(points(r.records, k)[0] for r in runs)]
    if not panels:
        return None
    fig, axes = _figure(_panel_width(len(panels), 4.2), 4, len(panels))
    _curve_panels(fig, axes, runs, panels, colors or run_colors(runs))
    fig.suptitle(f"{title}: training")
    return fig


def eval_keys(runs: list[RunResult]) -> list[str]:
    """The evaluation metrics the runs logged, task metrics before losses (at most MAX_EVAL_PANELS)."""
    keys = {k for run in runs for r in run.records if "step" in r for k in r if k.startswith("eval/")}
    return sorted(keys, key=eval_key_order)[:MAX_EVAL_PANELS]


def eval_figure(runs: list[RunResult], title: str, colors: dict | None = None):
    """Each evaluation metric per evaluated step (markers: evaluations are few)."""
    keys = [k for k in eval_keys(runs) if any(points(r.records, k)[0] for r in runs)]
    if not keys:
        return None
    fig, axes = _figure(_panel_width(len(keys), 4.2), 3.6, len(keys))
    _curve_panels(fig, axes, runs, [(k, k) for k in keys], colors or run_colors(runs), markers=True)
    fig.suptitle(f"{title}: evaluation")
    return fig


def _nothing(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.5")
    ax.set_axis_off()


def throughput_figure(runs: list[RunResult], title: str, colors: dict | None = None):
    """Tokens/s per logged step and each run's average, both from 0 (a zoomed axis exaggerates jitter)."""
    colors = colors or run_colors(runs)
    curves = [r for r in runs if points(r.records, "tokens_per_sec")[0]]
    averages = [r for r in runs if _finite(r.results.get("tokens_per_sec"))]
    if not curves and not averages:
        return None
    fig, axes = _figure(11, max(4.0, 1.5 + 0.25 * len(averages)), 2)
    if curves:
        _curve_panels(fig, axes[:1], curves, [("tokens_per_sec", "tokens / s per logged step")], colors)
        axes[0].set_ylim(bottom=0)
    else:
        _nothing(axes[0], "no tokens_per_sec in metrics.jsonl")
    if averages:
        _average_bars(axes[1], averages, colors)
    else:
        _nothing(axes[1], "no tokens_per_sec in results.json")
    fig.suptitle(f"{title}: throughput")
    return fig


def _average_bars(ax, runs: list[RunResult], colors: dict) -> None:
    ax.barh(range(len(runs)), [r.results["tokens_per_sec"] for r in runs], color=[colors[r.label] for r in runs])
    ax.set_yticks(range(len(runs)), [r.label for r in runs], fontsize="x-small")
    ax.invert_yaxis()
    ax.set_xlim(left=0)
    ax.set(title="average tokens / s per run", xlabel="tokens / s")
    ax.grid(alpha=0.3, axis="x")


def glue_figure(collected: Collected):
    """Each model's task scores side by side."""
    tasks, rows = leaderboard(collected.glue)
    if not rows:
        return None
    fig, (ax,) = _figure(max(6.0, 1.1 * len(tasks) + 2), 4)
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        xs = [j + i * width for j, t in enumerate(tasks) if t in row.scores]
        ax.bar(xs, [row.scores[t] for t in tasks if t in row.scores], width, label=row.label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], [GLUE_TASKS[t].dir_name for t in tasks])
    ax.set(title="GLUE dev scores", ylabel="score")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    return fig


def seed_figure(collected: Collected):
    """Every seed's task score and the median fine-tuning reports: how much a task swings."""
    entries = [(g, t, e) for g in collected.glue for t, e in g.tasks.items() if "seeds" in e and len(e["seeds"]) > 1]
    if not entries:
        return None
    tasks = [t for t in GLUE_TASKS if any(t == task for _, task, _ in entries)]
    models = list(dict.fromkeys(g.label for g, _, _ in entries))
    fig, (ax,) = _figure(max(6.0, 1.2 * len(tasks) + 2), 4)
    step = 0.6 / max(len(models), 1)
    for g, task, entry in entries:
        x = tasks.index(task) + models.index(g.label) * step
        scores = seed_scores(task, entry)
        ax.scatter([x] * len(scores), scores, s=18, alpha=0.7, color=f"C{models.index(g.label)}")
        ax.hlines(task_score(task, reported_metrics(entry)), x - step / 3, x + step / 3,
                  color=f"C{models.index(g.label)}")
    for i, label in enumerate(models):
        ax.scatter([], [], color=f"C{i}", label=label)
    ax.set_xticks([j + 0.3 - step / 2 for j in range(len(tasks))], [GLUE_TASKS[t].dir_name for t in tasks])
    ax.set(title="Seed spread (points: seeds; line: median)", ylabel="score")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    return fig


# the curves of each kind: (name suffix, builder, caption)
CURVES = (
    ("training", training_figure, "training loss, learning rate and grad norm per logged step"),
    ("eval", eval_figure, "evaluation metrics per evaluated step"),
    ("throughput", throughput_figure, "tokens / s per logged step and each run's average (axes from 0)"),
)


def kind_plots(kind: str, runs: list[RunResult]) -> list[Plot]:
    title, colors = kind_title(kind), run_colors(runs)
    built = [(f"{kind}-{suffix}", build(runs, title, colors), caption) for suffix, build, caption in CURVES]
    return [Plot(name, title, f"{title}: {caption}", fig) for name, fig, caption in built if fig is not None]


def all_plots(collected: Collected) -> list[Plot]:
    """Every plot the runs have data for: GLUE's, then each kind's curves."""
    glue = [Plot("glue", "GLUE", "GLUE dev score per task and model", glue_figure(collected)),
            Plot("seeds", "GLUE", "Seed spread of the GLUE task scores", seed_figure(collected))]
    curves = [p for kind, runs in kind_groups(collected).items() for p in kind_plots(kind, runs)]
    return [p for p in glue if p.figure is not None] + curves


def to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()

"""The report's plots as matplotlib Figures (built without pyplot: no global state, no display; PNGs
come from matplotlib's Agg renderer, and a notebook shows the same Figure objects). A function
returns None when the runs hold nothing to plot, so the page shows only plots with data."""

from __future__ import annotations

import io

from pipelines.runs.report.collect import Collected, RunResult
from pipelines.runs.report.glue import GLUE_TASKS, leaderboard, reported_metrics, seed_scores, task_score

MAX_EVAL_PANELS = 6


def _figure(width: float, height: float, panels: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def _steps_axis(ax) -> None:
    ax.set_xlabel("step")
    ax.xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers
    ax.grid(alpha=0.3)


def training_runs(collected: Collected) -> list[RunResult]:
    """Pretraining and distillation runs: the ones whose curves are worth a look (a GLUE sweep has
    dozens of short fine-tuning runs, summarised by the leaderboard instead)."""
    return [r for r in collected.runs if r.kind != "finetune" and r.train_records]


def loss_figure(collected: Collected):
    runs = training_runs(collected)
    if not runs:
        return None
    fig, (ax,) = _figure(8, 4)
    for run in runs:
        recs = run.train_records
        ax.plot([r["step"] for r in recs], [r["loss"] for r in recs], label=run.label)
    ax.set(title="Training loss", ylabel="loss")
    _steps_axis(ax)
    ax.legend(fontsize="small")
    return fig


def _eval_keys(runs: list[RunResult]) -> list[str]:
    keys = sorted({k for run in runs for r in run.eval_records for k in r if k.startswith("eval/")})
    keys.sort(key=lambda k: (k != "eval/loss", k))  # the total loss first
    return keys[:MAX_EVAL_PANELS]


def eval_figure(collected: Collected):
    runs = [r for r in training_runs(collected) if r.eval_records]
    keys = _eval_keys(runs)
    if not keys:
        return None
    fig, axes = _figure(3.2 * len(keys) + 1, 3.4, len(keys))
    for ax, key in zip(axes, keys):
        for run in runs:
            pts = [(r["step"], r[key]) for r in run.eval_records if isinstance(r.get(key), (int, float))]
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=3, label=run.label)
        ax.set_title(key)
        _steps_axis(ax)
    axes[0].legend(fontsize="small")
    return fig


def throughput_figure(collected: Collected):
    """Tokens/s over the steps of the training runs, and each run's average (every run with one)."""
    runs = [r for r in collected.runs if isinstance(r.results.get("tokens_per_sec"), (int, float))]
    curves = [r for r in training_runs(collected) if any("tokens_per_sec" in t for t in r.train_records)]
    if not runs and not curves:
        return None
    fig, axes = _figure(11, 4, 2)
    for run in curves:
        recs = [t for t in run.train_records if "tokens_per_sec" in t]
        axes[0].plot([t["step"] for t in recs], [t["tokens_per_sec"] for t in recs], label=run.label)
    axes[0].set(title="Training throughput", ylabel="tokens / s")
    _steps_axis(axes[0])
    if curves:
        axes[0].legend(fontsize="small")
    labels = [r.label for r in runs]
    axes[1].barh(range(len(runs)), [r.results["tokens_per_sec"] for r in runs])
    axes[1].set_yticks(range(len(runs)), labels, fontsize="x-small")
    axes[1].invert_yaxis()
    axes[1].set(title="Average tokens / s per run", xlabel="tokens / s")
    return fig


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


# name -> (builder, caption); the PNG of each is <name>.png
FIGURES = {
    "glue": (glue_figure, "GLUE dev score per task and model"),
    "seeds": (seed_figure, "Seed spread of the GLUE task scores"),
    "loss": (loss_figure, "Training loss of the pretraining runs"),
    "eval": (eval_figure, "Evaluation metrics during pretraining"),
    "throughput": (throughput_figure, "Throughput"),
}


def all_figures(collected: Collected) -> dict:
    """name -> Figure for every plot the runs have data for."""
    built = {name: build(collected) for name, (build, _) in FIGURES.items()}
    return {name: fig for name, fig in built.items() if fig is not None}


def to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()

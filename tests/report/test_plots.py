"""The report's curves as drawn (pipelines/runs/report/plots.py): the Figures' axes hold one line per run with
exactly the logged steps and values; pretraining and fine-tuning runs never share a figure; a one-point run is
a visible marker; throughput axes start at 0."""

import json
import math
from pathlib import Path

import pytest
from report_samples import SAMPLE_PLOTS, sample_runs

from pipelines.runs.report.collect import collect_runs
from pipelines.runs.report.plots import all_plots, kind_plots, to_png

PRETRAIN, SEEDS = ["bert-tiny"], ["finetune/tiny-sst2/sst2/seed-42", "finetune/tiny-sst2/sst2/seed-43"]


@pytest.fixture(scope="module")
def plots():
    return {p.name: p for p in all_plots(collect_runs(sample_runs()))}


def logged(label: str, key: str) -> tuple[list, list]:
    """(steps, values) of `key` in the run's metrics.jsonl."""
    lines = (sample_runs() / label / "metrics.jsonl").read_text().splitlines()
    records = [r for r in map(json.loads, lines) if key in r]
    return [r["step"] for r in records], [r[key] for r in records]


def curves(ax) -> dict[str, tuple[list, list]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def has_marker(line) -> bool:
    return line.get_marker() not in (None, "None", "", " ") and line.get_markersize() > 0


def test_one_figure_set_per_kind_and_never_both_kinds_on_one(plots):
    assert [f"{name}.png" for name in plots] == SAMPLE_PLOTS
    for name, runs in (("pretrain", PRETRAIN), ("finetune", SEEDS)):
        for suffix in ("training", "eval", "throughput"):
            plot = plots[f"{name}-{suffix}"]
            assert plot.section == {"pretrain": "Pretraining", "finetune": "Fine-tuning"}[name]
            drawn = {label for ax in plot.figure.axes for label in curves(ax)}
            assert drawn == set(runs), (plot.name, drawn)
        bars = plots[f"{name}-throughput"].figure.axes[1]
        assert [t.get_text() for t in bars.get_yticklabels()] == runs


@pytest.mark.parametrize("name, runs", [("pretrain-training", PRETRAIN), ("finetune-training", SEEDS)])
def test_training_curves_hold_every_logged_step(plots, name, runs):
    axes = plots[name].figure.axes
    assert [ax.get_title() for ax in axes] == ["training loss", "learning rate", "grad norm"]
    for ax, key in zip(axes, ("loss", "lr", "grad_norm")):
        drawn = curves(ax)
        assert list(drawn) == runs
        for run in runs:
            assert drawn[run] == logged(run, key)
    assert len(logged(runs[0], "loss")[0]) == {"pretrain-training": 4, "finetune-training": 3}[name]


def test_eval_curves_put_accuracies_first_and_a_single_evaluation_is_a_marker(plots):
    pretrain = plots["pretrain-eval"].figure.axes
    assert [ax.get_title() for ax in pretrain] == ["eval/mlm_accuracy", "eval/nsp_accuracy", "eval/loss",
                                                   "eval/loss/mlm", "eval/loss/nsp"]
    for ax in pretrain:
        assert curves(ax) == {"bert-tiny": logged("bert-tiny", ax.get_title())} and len(curves(ax)["bert-tiny"][0]) == 2
    finetune = plots["finetune-eval"].figure.axes
    assert [ax.get_title() for ax in finetune] == ["eval/accuracy", "eval/loss"]
    for ax in finetune:
        for line in ax.get_lines():  # each seed evaluated once, at its last step: one point, drawn as a marker
            assert list(line.get_xdata()) == [3] and has_marker(line), line.get_label()
        assert [t for t in ax.get_xticks()] == [3]  # not fractions of a step around it


def test_throughput_axes_start_at_zero_and_bars_are_the_averages(plots):
    for kind, runs in (("pretrain", PRETRAIN), ("finetune", SEEDS)):
        steps, bars = plots[f"{kind}-throughput"].figure.axes
        assert steps.get_ylim()[0] == 0 and bars.get_xlim()[0] == 0
        assert curves(steps) == {run: logged(run, "tokens_per_sec") for run in runs}
        averages = [json.loads((sample_runs() / r / "results.json").read_text())["tokens_per_sec"] for r in runs]
        assert [p.get_width() for p in bars.patches] == pytest.approx(averages)
        assert [t.get_text() for t in bars.get_yticklabels()] == runs


def run(label: str, records: list[dict], **results):
    from pipelines.runs.report.collect import RunResult

    return RunResult(label, Path(label), {"recipe": "r", "steps": 1, "tokens": 1, **results}, records)


def test_a_single_logged_point_is_a_visible_marker_and_non_finite_values_are_skipped():
    one = run("one", [{"step": 5, "loss": 2.0, "lr": 1e-4, "grad_norm": 0.5, "tokens_per_sec": 10.0},
                      {"step": 6, "loss": math.nan, "lr": None, "grad_norm": math.inf},  # a skipped bad step
                      {"step": 5, "eval/accuracy": 0.7}], tokens_per_sec=10.0)
    many = run("many", [{"step": s, "loss": 3.0 - s / 10, "lr": 1e-4, "grad_norm": 1.0, "tokens_per_sec": 9.0}
                        for s in range(1, 11)])
    built = {p.name: p.figure for p in kind_plots("pretrain", [one, many])}
    assert list(built) == ["pretrain-training", "pretrain-eval", "pretrain-throughput"]
    for fig in built.values():
        for ax in fig.axes:
            for line in ax.get_lines():
                points = len(line.get_xdata())
                assert points == {"one": 1, "many": 10}[line.get_label()]
                assert has_marker(line) == (points == 1), (ax.get_title(), line.get_label())
        assert to_png(fig)[:4] == b"\x89PNG"
    assert built["pretrain-throughput"].axes[0].get_ylim()[0] == 0


def test_runs_with_nothing_logged_draw_nothing():
    assert kind_plots("finetune", [run("bare", [{"step": 1, "note": "x"}])]) == []
    only_average = kind_plots("finetune", [run("avg", [], tokens_per_sec=5.0)])
    assert [p.name for p in only_average] == ["finetune-throughput"]

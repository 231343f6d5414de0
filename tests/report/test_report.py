"""`python -m pipelines report RUNS_DIR`: the GLUE score as the papers compute it, the page and its plots
from real runs, and one clear error line for every bad input."""

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import REPO
from report_samples import NINE_TASK_AVERAGE, NINE_TASKS, RTE_SEEDS, SAMPLE_PLOTS, sample_runs

from pipelines.commands.cli import build_parser, run_command
from pipelines.errors import LmforgeError
from pipelines.runs.report import build_report
from pipelines.runs.report.glue import glue_average, leaderboard, seed_scores, task_score

PNG = b"\x89PNG\r\n\x1a\n"


class Rows(HTMLParser):
    """The rows of each table on the page: table id -> [(tr attributes, [cell texts])]."""

    def __init__(self, html: str):
        super().__init__()
        self.tables, self._table, self._cell = {}, None, None
        self.images = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append((attrs, []))
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(attrs)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1][1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def report_cli(*args) -> tuple[int, str, str]:
    """`python -m pipelines report ...` in this process (main() minus its exit): code, stdout, stderr."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_command(lambda a: a.func(a), build_parser().parse_args(["report", *map(str, args)]))
    return code, out.getvalue(), err.getvalue()


def assert_one_error(code, err, *words):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("lmforge: error:"), err
    for w in words:
        assert str(w) in lines[0], lines[0]


def test_glue_score_averages_two_metric_tasks_as_the_papers_do():
    for task, (metrics, expected) in NINE_TASKS.items():
        assert task_score(task, metrics) == pytest.approx(expected), task
    scores = {t: task_score(t, m) for t, (m, _) in NINE_TASKS.items()}
    assert glue_average(scores) == pytest.approx(NINE_TASK_AVERAGE) == pytest.approx(665 / 9)
    assert task_score("mnli", {"accuracy": 0.8}) == pytest.approx(80.0)  # mismatched not evaluated
    with pytest.raises(LmforgeError, match="mrpc: no value for f1"):
        task_score("mrpc", {"accuracy": 0.8})


def test_leaderboard_rows_and_seed_scores():
    from pipelines.runs.report.collect import collect_runs

    collected = collect_runs(sample_runs())
    tasks, rows = leaderboard(collected.glue)
    assert tasks == list(NINE_TASKS)  # GLUE's order
    by_label = {r.label: r for r in rows}
    assert set(by_label) == {"finetune/paper-like", "finetune/tiny-sst2"}
    paper = by_label["finetune/paper-like"]
    assert paper.average == pytest.approx(NINE_TASK_AVERAGE) and paper.model == "paper/bert-like"
    assert paper.seeds["rte"] == 3 and paper.scores["rte"] == pytest.approx(60.0)  # the median seed
    tiny = by_label["finetune/tiny-sst2"]
    saved = json.loads((sample_runs() / "finetune/tiny-sst2/glue_results.json").read_text())["sst2"]
    assert list(tiny.scores) == ["sst2"] and tiny.scores["sst2"] == pytest.approx(100 * saved["median"]["accuracy"])
    assert tiny.seeds == {"sst2": 2}
    assert [r.average for r in rows] == sorted((r.average for r in rows), reverse=True)
    rte = json.loads((sample_runs() / "finetune/paper-like/glue_results.json").read_text())["rte"]
    assert sorted(seed_scores("rte", rte)) == pytest.approx([100 * m["accuracy"] for m in RTE_SEEDS.values()])


def test_report_page_from_real_runs(tmp_path):
    code, out, err = report_cli(sample_runs(), "--out", tmp_path / "report")
    assert code == 0, err
    index = tmp_path / "report" / "index.html"
    assert out.strip() == f"report: {index}"
    page = Rows(index.read_text())
    board = page.tables["leaderboard"]
    assert board[0][1][0] == "model" and board[0][1][-2:] == ["GLUE average", "tasks"]
    assert "MRPC (F1/Acc)" in board[0][1] and "MNLI (m/mm Acc)" in board[0][1]
    labels = [attrs["data-label"] for attrs, _ in board[1:]]
    assert sorted(labels) == ["finetune/paper-like", "finetune/tiny-sst2"]
    paper = next(cells for attrs, cells in board[1:] if attrs["data-label"] == "finetune/paper-like")
    assert paper[-2:] == [f"{NINE_TASK_AVERAGE:.2f}", "9"]
    runs = [cells[0] for attrs, cells in page.tables["runs"][1:]]
    assert runs == ["bert-tiny", "finetune/tiny-sst2/sst2/seed-42", "finetune/tiny-sst2/sst2/seed-43"]
    shown = [img["src"] for img in page.images]
    assert shown == SAMPLE_PLOTS
    for name in shown:
        assert (tmp_path / "report" / name).read_bytes()[:8] == PNG
    marker = json.loads((tmp_path / "report" / "report.json").read_text())
    assert marker["plots"] == shown and marker["runs"] == runs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temp folder left


def machine_paths(html: str) -> list[str]:
    """Strings on the page that start with "/" and name a file or folder of this machine."""
    found = [s.rstrip(":,;.)") for s in re.findall(r"(?:^|(?<=[\s\"'>(=]))/[^\s\"'<>]+", html)]

    def exists(s: str) -> bool:
        try:
            return len(s) > 1 and Path(s).exists()
        except OSError:  # a name too long for the file system
            return False

    return [s for s in found if exists(s)]


def test_the_page_names_no_local_path(tmp_path):
    html = build_report(sample_runs(), tmp_path / "report").read_text()
    assert machine_paths(html) == []
    for local in (tmp_path, sample_runs().parent, REPO):
        assert str(local) not in html
    assert machine_paths(f"<p>{sample_runs()}: 3 runs</p><td>x/bin</td>") == [str(sample_runs())]  # it sees one
    page = Rows(html)
    tiny = next(cells for attrs, cells in page.tables["leaderboard"][1:] if attrs["data-label"] == "finetune/tiny-sst2")
    assert tiny[0].endswith("…/inputs/tiny-bert")  # the fine-tuned checkpoint, outside the runs folder
    assert "runs: 3 runs, 2 GLUE results" in html  # the runs folder by its name


def test_final_eval_shows_task_metrics_before_losses(tmp_path):
    page = Rows(build_report(sample_runs(), tmp_path / "report").read_text())
    head, *rows = page.tables["runs"]
    column = head[1].index("final eval")
    shown = {cells[0]: cells[column] for _, cells in rows}
    m = json.loads((sample_runs() / "bert-tiny" / "results.json").read_text())["metrics"]
    assert shown["bert-tiny"] == (f"mlm_accuracy={m['eval/mlm_accuracy']:.4f}, "
                                  f"nsp_accuracy={m['eval/nsp_accuracy']:.4f}, loss={m['eval/loss']:.4f}, "
                                  f"loss/mlm={m['eval/loss/mlm']:.4f}, … (+1)")
    for seed in (42, 43):
        label = f"finetune/tiny-sst2/sst2/seed-{seed}"
        m = json.loads((sample_runs() / label / "results.json").read_text())["metrics"]
        assert shown[label] == f"accuracy={m['eval/accuracy']:.4f}, loss={m['eval/loss']:.4f}"


def test_final_eval_never_hides_an_accuracy_behind_losses():
    from pipelines.runs.report.collect import Collected, RunResult
    from pipelines.runs.report.page import runs_html

    metrics = {"eval/loss": 1.0, "eval/loss/a": 0.5, "eval/loss/b": 0.25, "eval/loss/c": 0.125, "eval/f1": 0.5,
               "eval/accuracy": 0.875, "eval/rtd_accuracy": 0.9}
    run = RunResult("x", Path("x"), {"recipe": "r", "steps": 1, "tokens": 1, "metrics": metrics})
    cells = Rows(runs_html(Collected(Path("."), [run], []))).tables["runs"][1][1]
    assert cells[-2] == "accuracy=0.8750, f1=0.5000, rtd_accuracy=0.9000, loss=1.0000, … (+3)"
    old = RunResult("y", Path("y"), {"recipe": "r", "steps": 1, "tokens": 1, "eval/loss": 2.0, "eval/accuracy": 0.5})
    cells = Rows(runs_html(Collected(Path("."), [old], []))).tables["runs"][1][1]
    assert cells[-2] == "accuracy=0.5000, loss=2.0000"  # results.json of older versions: flat eval keys


def test_default_out_is_inside_the_runs_folder_and_is_replaced_not_read(tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(sample_runs() / "finetune" / "paper-like", runs / "paper-like")
    for _ in range(2):  # the second time the report folder exists: replaced, and not taken for results
        assert build_report(runs) == runs / "report" / "index.html"
    assert json.loads((runs / "report" / "report.json").read_text())["glue"] == ["paper-like"]
    assert sorted(p.name for p in (runs / "report").iterdir()) == ["glue.png", "index.html", "report.json",
                                                                  "seeds.png"]


def test_a_failed_write_keeps_the_previous_report(tmp_path, monkeypatch):
    import pipelines.runs.report.plots as plots

    runs = tmp_path / "runs"
    (runs / "m").mkdir(parents=True)
    (runs / "m" / "glue_results.json").write_text(json.dumps({"sst2": {"accuracy": 0.9}}))
    build_report(runs)
    before = (runs / "report" / "index.html").read_text()

    def broken(fig):
        raise RuntimeError("disk full")

    monkeypatch.setattr(plots, "to_png", broken)
    (runs / "m" / "glue_results.json").write_text(json.dumps({"sst2": {"accuracy": 0.5}}))
    with pytest.raises(RuntimeError, match="disk full"):
        build_report(runs)
    assert (runs / "report" / "index.html").read_text() == before
    assert [p.name for p in runs.iterdir() if p.name.startswith(".")] == []


RESULTS = '{"recipe": "x", "steps": 1, "tokens": 1}'


@pytest.mark.parametrize("files, words", [
    ({}, ["no lmforge results"]),
    ({"a/results.json": "{nope"}, ["a/results.json", "not valid JSON"]),
    ({"a/results.json": "[1, 2]"}, ["a/results.json", "expected a JSON object, found list"]),
    ({"a/results.json": '{"recipe": "x", "steps": "ten", "tokens": 1}'}, ["a/results.json", "steps is 'ten'"]),
    ({"a/results.json": '{"steps": 1, "tokens": 1}'}, ["a/results.json", "no 'recipe' field"]),
    ({"a/results.json": '{"recipe": "x", "steps": 1, "tokens": 1, "kind": "../up"}'},
     ["a/results.json", "kind is '../up'"]),
    ({"a/results.json": RESULTS, "a/metrics.jsonl": '{"step": 1}\n{torn\n{"step": 2}\n'},
     ["a/metrics.jsonl:2", "not a JSON record"]),
    ({"g/glue_results.json": '{"sst3": {"accuracy": 0.9}}'}, ["g/glue_results.json", "'sst3' is not a GLUE task"]),
    ({"g/glue_results.json": '{"sst2": {"accuracy": "high"}}'}, ["g/glue_results.json", "sst2.accuracy is 'high'"]),
    ({"g/glue_results.json": '{"mrpc": {"accuracy": 0.8}}'}, ["g/glue_results.json", "mrpc: no value for f1"]),
    ({"g/glue_results.json": '{"rte": {"median": {"accuracy": 0.6}, "seeds": {"1": {"accuracy": null}}}}'},
     ["g/glue_results.json", "rte seed 1: no value for accuracy"]),
])
def test_bad_runs_folders_are_one_error_line(tmp_path, files, words):
    runs = tmp_path / "runs"
    runs.mkdir()
    for name, text in files.items():
        (runs / name).parent.mkdir(parents=True, exist_ok=True)
        (runs / name).write_text(text)
    code, _, err = report_cli(runs)
    assert_one_error(code, err, *words)
    assert not (runs / "report").exists()


def test_a_torn_last_metrics_line_is_a_killed_run_not_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(RESULTS)
    (tmp_path / "a" / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    code, _, err = report_cli(tmp_path, "--out", tmp_path / "out")
    assert code == 0, err
    assert "run-training.png" in (tmp_path / "out" / "index.html").read_text()  # no kind: an older results.json


def test_missing_folder_and_unsafe_out_are_refused(tmp_path):
    code, _, err = report_cli(tmp_path / "nowhere")
    assert_one_error(code, err, "nowhere", "no such folder")
    runs = tmp_path / "runs"
    (runs / "m").mkdir(parents=True)
    (runs / "m" / "glue_results.json").write_text(json.dumps({"sst2": {"accuracy": 0.9}}))
    code, _, err = report_cli(runs, "--out", runs)  # would replace the runs themselves
    assert_one_error(code, err, "--out", "holds the runs folder")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    code, _, err = report_cli(runs, "--out", tmp_path / "notes")
    assert_one_error(code, err, "notes", "not an lmforge report")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_cli_process_exit_code_and_single_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipelines", "report", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"lmforge: error: runs folder {tmp_path}: no lmforge results in it "
                                                "(no results.json, glue_results.json or eval_results.json below it); "
                                                "point it at the "
                                                "folder that holds the runs' output folders"]

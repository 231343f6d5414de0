"""notebooks/dashboard.ipynb executes (nbclient, a real ipykernel) on sample results, so it never rots:
it reads the runs folder from LMFORGE_RUNS and shows the leaderboard, the runs and every plot."""

import nbformat
from conftest import REPO
from nbclient import NotebookClient
from report_samples import NINE_TASK_AVERAGE, SAMPLE_PLOTS, sample_runs

from pipelines.runs.report.collect import collect_runs
from pipelines.runs.report.plots import all_plots

NOTEBOOK = REPO / "notebooks" / "dashboard.ipynb"


def _outputs(nb, kind: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if kind in o.get("data", {})]


def test_dashboard_notebook_runs_on_sample_results(monkeypatch):
    runs = sample_runs()
    monkeypatch.setenv("LMFORGE_RUNS", str(runs))  # the kernel inherits this process's environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()  # raises on a cell error

    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert f"{runs}: 3 runs, 2 GLUE results" in text
    html = "".join("".join(o["data"]["text/html"]) for o in _outputs(nb, "text/html"))
    assert 'id="leaderboard"' in html and 'data-label="finetune/paper-like"' in html
    assert 'data-label="finetune/tiny-sst2"' in html and f"<b>{NINE_TASK_AVERAGE:.2f}</b>" in html
    assert html.count('class="run-row"') == 3 and "No SQuAD, SWAG, RACE or NER results" in html  # none in the samples
    pngs = _outputs(nb, "image/png")
    assert len(pngs) == len(all_plots(collect_runs(runs))) == len(SAMPLE_PLOTS)
    assert "GLUE average" in html  # the DataFrame of the leaderboard

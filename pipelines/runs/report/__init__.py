"""`python -m pipelines report RUNS_DIR [--out FOLDER]` (`make report RUNS=runs`): a static dashboard of
every result under a runs folder: one index.html with a GLUE leaderboard, a table of runs and PNG plots
(GLUE scores and seed spread; per run kind: loss, learning rate, grad norm, eval and throughput curves).
notebooks/dashboard.ipynb shows the same from these functions.

    collect.py     find and check results.json / metrics.jsonl / glue_results.json / eval_results.json
    glue.py        GLUE task scores and average, the leaderboard rows
    downstream.py  the SQuAD / SWAG / RACE / NER table
    plots.py       the matplotlib figures: GLUE's, and per run kind the training, eval and throughput curves
    paths.py       how a folder or model path is named on the page (never an absolute local path)
    page.py        the HTML
"""

from __future__ import annotations

import time
from pathlib import Path

from pipelines.errors import LmforgeError

MARKER = "report.json"  # written into every report folder: only such a folder is ever replaced


def _check_out(out: Path, root: Path) -> None:
    """The report folder replaces `out` whole: never a runs folder or anything that is not a report."""
    o, r = out.resolve(), root.resolve()
    if o == r or o in r.parents:
        raise LmforgeError(f"--out {out}: it holds the runs folder {root}, which writing the report would replace; "
                           "choose a folder of its own (default: RUNS_DIR/report)")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise LmforgeError(f"--out {out}: exists and is not an lmforge report (no {MARKER}); choose a new or "
                           "empty folder")


def build_report(runs_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the dashboard for `runs_dir` into `out` (default runs_dir/report), atomically; returns index.html."""
    from pipelines.atomic import atomic_folder, atomic_write_json
    from pipelines.runs.report.collect import collect_runs
    from pipelines.runs.report.page import page_html
    from pipelines.runs.report.plots import all_plots, to_png

    root = Path(runs_dir)
    out = Path(out) if out is not None else root / "report"
    _check_out(out, root)
    collected = collect_runs(root, skip=out)
    plots = all_plots(collected)
    generated = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    with atomic_folder(out) as tmp:
        for plot in plots:
            (tmp / f"{plot.name}.png").write_bytes(to_png(plot.figure))
        (tmp / "index.html").write_text(page_html(collected, plots, generated), encoding="utf-8")
        atomic_write_json(tmp / MARKER, {"runs_dir": str(root), "generated": generated,
                                         "runs": [r.label for r in collected.runs],
                                         "glue": [g.label for g in collected.glue],
                                         "plots": [f"{p.name}.png" for p in plots]})
    return out / "index.html"

"""`python -m pipelines report RUNS_DIR [--out FOLDER]` (`make report RUNS=runs`): a static dashboard of
every result under a runs folder: one index.html with a GLUE leaderboard, a table of runs and PNG plots
(seed spread, pretraining loss and eval curves, throughput). notebooks/dashboard.ipynb shows the same
from these functions.

    collect.py  find and check results.json / metrics.jsonl / glue_results.json
    glue.py     GLUE task scores and average, the leaderboard rows
    plots.py    the matplotlib figures
    page.py     the HTML
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
    from pipelines.runs.report.plots import FIGURES, all_figures, to_png

    root = Path(runs_dir)
    out = Path(out) if out is not None else root / "report"
    _check_out(out, root)
    collected = collect_runs(root, skip=out)
    figures = all_figures(collected)
    generated = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    with atomic_folder(out) as tmp:
        for name, fig in figures.items():
            (tmp / f"{name}.png").write_bytes(to_png(fig))
        captions = {f"{name}.png": FIGURES[name][1] for name in figures}
        (tmp / "index.html").write_text(page_html(collected, captions, generated), encoding="utf-8")
        atomic_write_json(tmp / MARKER, {"runs_dir": str(root), "generated": generated,
                                         "runs": [r.label for r in collected.runs],
                                         "glue": [g.label for g in collected.glue], "plots": list(captions)})
    return out / "index.html"

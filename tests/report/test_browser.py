"""The report page in a real browser: headless Chromium (Debian's package; .ci/run installs it) driven by
Playwright renders the page built from real runs; every plot loads, the leaderboard has one row per
model, and a screenshot is saved (LMFORGE_SCREENSHOT=<path> keeps a copy)."""

import os
import shutil

import pytest
from report_samples import NINE_TASK_AVERAGE, SAMPLE_PLOTS, sample_runs

from pipelines.runs.report import build_report

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_binary() -> str | None:
    explicit = os.environ.get("LMFORGE_CHROMIUM")
    return explicit if explicit and os.path.exists(explicit) else next(
        (path for path in map(shutil.which, CANDIDATES) if path), None)


@pytest.fixture(scope="module")
def browser():
    binary = chromium_binary()
    if binary is None:
        pytest.skip(f"no Chromium binary ({', '.join(CANDIDATES)} on PATH, or LMFORGE_CHROMIUM): "
                    "apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) is not installed")
    with sync_api.sync_playwright() as p:
        # Playwright's own browser download needs the internet; the system browser does not
        b = p.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        yield b
        b.close()


def test_page_renders_with_every_plot_loaded(browser, tmp_path):
    index = build_report(sample_runs(), tmp_path / "report")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(index.as_uri(), wait_until="load")
    images = page.evaluate("Array.from(document.images).map(i => ({src: i.getAttribute('src'), "
                           "done: i.complete, w: i.naturalWidth, h: i.naturalHeight}))")
    assert [i["src"] for i in images] == SAMPLE_PLOTS
    broken = [i["src"] for i in images if not (i["done"] and i["w"] > 0 and i["h"] > 0)]
    assert broken == [], f"images that did not load: {broken}"

    rows = page.locator("#leaderboard tbody tr.model-row")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.label)")) == ["finetune/paper-like",
                                                                              "finetune/tiny-sst2"]
    paper = page.locator('#leaderboard tr[data-label="finetune/paper-like"] td')
    assert paper.nth(-2).inner_text() == f"{NINE_TASK_AVERAGE:.2f}" and paper.nth(-1).inner_text() == "9"
    assert page.locator("#runs tbody tr").count() == 3
    assert page.title() == "lmforge report"

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("LMFORGE_SCREENSHOT"):
        shutil.copy(shot, os.environ["LMFORGE_SCREENSHOT"])
    page.close()

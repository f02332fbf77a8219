"""A real Chromium lays out the iteration page: chart labels inside their charts, every one of
them shown, and long log lines wrapped inside the log box."""

from __future__ import annotations

import pytest

from labelapp.models import Iteration
from tests.labelapp.browser.conftest import BROWSER_MARKS, SCREENSHOTS, log_in
from tests.labelapp.factories import make_dataset

pytestmark = BROWSER_MARKS


def _finished_iteration(dataset) -> Iteration:
    edges = [round(i / 20, 4) for i in range(21)]
    metrics = {
        "pool": {"P": 2, "U": 18},
        "positives": 2,
        "unlabeled": 18,
        "reliable_negatives": 10,
        "spies": 1,
        "spy_threshold": 0.2099,
        "selection_threshold": 1.2e-05,
        "selection_threshold_rule": "the score at the top 1% of all cases",
        "n_features": 3,
        "score_histogram": {"edges": edges, "counts": [9000, 700, 80, 9, 3] + [0] * 13 + [2, 19]},
        "batch_size": 10,
        "batch_by_cluster": {"-1": 3, "0": 2, "1": 2, "2": 1, "3": 1, "4": 1},
        "stopping": {"suggest_stop": False, "reason": "keep going", "confirmations_per_batch": []},
        "top_features": [{"name": "amount", "gain": 12.5}],
        "stage_seconds": {"load": 0.5},
    }
    long_line = "feature matrix (1169723, 93): " + ",".join(f"emb_{i}" for i in range(120))
    return Iteration.objects.create(
        dataset=dataset,
        number=1,
        status="done",
        metrics=metrics,
        log=f"[10:00:00] stage features\n[10:00:01] {long_line}\n[10:00:02] done\n",
    )


def test_chart_labels_fit_and_log_lines_wrap(live_server, browser, admin_user):
    dataset = make_dataset(name="browser-charts", n_cases=20)
    _finished_iteration(dataset)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, live_server.url, admin_user.username, f"/datasets/{dataset.name}/iterations/1/")
    page.wait_for_selector("svg.chart")
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "iteration_charts.png"), full_page=True)
    charts = page.evaluate(
        """() => [...document.querySelectorAll("svg.chart")].map(svg => {
            const box = svg.getBoundingClientRect();
            const texts = [...svg.querySelectorAll("text")].map(t => {
                const r = t.getBoundingClientRect();
                return {text: t.textContent, left: r.left - box.left, right: box.right - r.right,
                        top: r.top - box.top, bottom: box.bottom - r.bottom};
            });
            return {label: svg.getAttribute("aria-label"),
                    bars: svg.querySelectorAll("rect").length,
                    ticks: svg.querySelectorAll("text.tick").length, texts};
        })"""
    )
    by_label = {chart["label"]: chart for chart in charts}
    histogram = by_label["Score histogram (all cases)"]
    clusters = by_label["Batch by cluster"]
    # Every bar has its label (the histogram showed 3 of 20, the cluster chart 3 of 6).
    assert histogram["ticks"] == histogram["bars"] == 20
    assert clusters["ticks"] == clusters["bars"] == 6
    ticks = {t["text"] for t in clusters["texts"]}
    assert {"top score", "cluster 0", "cluster 4"} <= ticks
    for chart in (histogram, clusters):
        for text in chart["texts"]:
            clipped = {side: text[side] for side in ("left", "right", "top", "bottom")}
            assert min(clipped.values()) >= -1, (chart["label"], text["text"], clipped)

    log = page.evaluate(
        """() => { const pre = document.getElementById("log");
                   const card = pre.closest(".card").getBoundingClientRect();
                   const box = pre.getBoundingClientRect();
                   return {scroll: pre.scrollWidth, client: pre.clientWidth,
                           overhang: box.right - card.right,
                           page: document.documentElement.scrollWidth - window.innerWidth}; }"""
    )
    assert log["scroll"] <= log["client"] + 1, log  # wrapped, no sideways scrolling
    assert log["overhang"] <= 0 and log["page"] <= 0, log
    page.close()


@pytest.mark.parametrize("path", ["/favicon.ico"])
def test_the_favicon_loads(live_server, browser, admin_user, path):
    page = browser.new_page()
    response = page.goto(f"{live_server.url}{path}")
    assert response.status == 200 and response.headers["content-type"] in (
        "image/x-icon",
        "image/vnd.microsoft.icon",
    )
    page.close()

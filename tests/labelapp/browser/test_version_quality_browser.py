"""A real Chromium shows model quality across versions on the dataset page: a point per version,
inside the chart; the compare page puts two versions side by side; the rules page reads."""

from __future__ import annotations

from tests.labelapp.browser.conftest import BROWSER_MARKS, SCREENSHOTS, log_in
from tests.labelapp.loop_data import make_loop_dataset
from tests.labelapp.version_data import answer_batch, loop_in_process, run_iteration

pytestmark = BROWSER_MARKS


def test_the_version_chart_has_a_point_per_version(
    live_server, browser, admin_user, expert_user, settings, tmp_path
):
    loop_in_process(settings, tmp_path)
    dataset, cases = make_loop_dataset("browser-quality", tmp_path / "snapshots", n_cases=1500)
    versions = []
    for _ in range(3):
        versions.append(run_iteration(dataset))
        answer_batch(versions[-1], cases, expert_user)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log_in(page, live_server.url, admin_user.username, f"/datasets/{dataset.name}/")
    page.wait_for_selector("#version-quality svg.chart")
    SCREENSHOTS.mkdir(exist_ok=True)
    page.locator("#version-quality").screenshot(path=str(SCREENSHOTS / "version_quality.png"))
    chart = page.evaluate(
        """() => { const svg = document.querySelector("#version-quality svg.chart");
                   const box = svg.getBoundingClientRect();
                   return {label: svg.getAttribute("aria-label"),
                           points: [...svg.querySelectorAll("circle")].map(c => {
                               const r = c.getBoundingClientRect();
                               return {x: c.dataset.x, series: c.dataset.series,
                                       title: c.querySelector("title").textContent,
                                       inside: r.left >= box.left && r.right <= box.right
                                               && r.top >= box.top && r.bottom <= box.bottom};
                           }),
                           rows: document.querySelectorAll("#version-quality-table tbody tr")
                                     .length}; }"""
    )
    assert chart["label"] == "Model quality across versions"
    confirm_rate = [p for p in chart["points"] if p["series"] == "0"]
    assert sorted(int(p["x"]) for p in confirm_rate) == sorted(v.pk for v in versions)
    assert all(p["inside"] for p in chart["points"]), chart["points"]
    assert {p["title"].split(":")[1].split(",")[0].strip() for p in confirm_rate} == {
        f"v{v.pk}" for v in versions
    }
    shared = {int(p["x"]) for p in chart["points"] if p["series"] == "2"}
    assert shared == {versions[1].pk, versions[2].pk}  # the first version has no parent
    assert chart["rows"] == len(versions)

    page.goto(f"{live_server.url}/datasets/{dataset.name}/models/compare/")
    page.select_option("select[name=a]", str(versions[0].pk))
    page.select_option("select[name=b]", str(versions[2].pk))
    with page.expect_navigation():
        page.click("form.card button[type=submit]")
    rows = page.locator("#quality-compare tbody tr")
    assert rows.count() == 4 and "of" in rows.first.inner_text()
    page.locator("#quality-compare").screenshot(path=str(SCREENSHOTS / "version_compare.png"))

    page.goto(f"{live_server.url}/models/{versions[2].pk}/")
    assert page.locator("#quality tbody tr").count() == 4
    page.locator("#quality").screenshot(path=str(SCREENSHOTS / "model_quality.png"))
    with page.expect_navigation():
        page.click("#rules-link")
    page.wait_for_selector("#rules tbody tr")
    assert "amount" in page.locator("#rules tbody tr").first.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "model_rules.png"), full_page=True)
    page.close()
